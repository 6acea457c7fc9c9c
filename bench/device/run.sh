#!/usr/bin/env bash
# The GPU benchmark: install the wheels beside the environment's packages, then bench/device/run.py.
# On the GPU machine, in a checkout holding build/device/wheels (bench/device/README.md):
#   bash bench/device/run.sh
# The rehearsal (bench/device/rehearse.sh) calls it with PYTHON, SITE, DEVICE, ARCH and OUT set.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
SITE=${SITE:-/tmp/site}
WHEELS=${WHEELS:-build/device/wheels}
OUT=${OUT:-build/device/out}
mkdir -p "$OUT"
if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    echo "run.sh: no wheels in $WHEELS: run \`make device-wheels\` and carry build/device/wheels" >&2
    exit 2
fi
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl
export PYTHONPATH="$SITE:$PWD" PYTHONUNBUFFERED=1
"$PY" -m bench.device.run --arch "${ARCH:-F5TTS_v1_Base}" --device "${DEVICE:-cuda}" --output "$OUT" "$@" 2>&1 \
    | grep --line-buffered -v -e '^gen_text ' -e '^$'
