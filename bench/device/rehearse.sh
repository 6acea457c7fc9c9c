#!/usr/bin/env bash
# The GPU benchmark, rehearsed on CPU: its Python 3.12 environment (bench/device/image.txt, and
# nothing that environment lacks), the wheels installed with `pip install --no-deps --target` as on
# the GPU machine, then bench/device/run.sh with the tiny architecture.
# It passes when every variant ran (none skipped, none failed).
#   make device-rehearsal          # or: bash bench/device/rehearse.sh [run.py options]
set -euo pipefail
cd "$(dirname "$0")/../.."
find_python312() {
    for c in "${PYTHON312:-}" python3.12 "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12; do
        if [[ -n "$c" ]] && "$c" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
            echo "$c"; return
        fi
    done
    echo "rehearse.sh: no Python 3.12 found; set PYTHON312=/path/to/python3.12" >&2
    exit 2
}
VENV=build/device/venv
if [[ ! -x $VENV/bin/python ]] || ! cmp -s bench/device/image.txt $VENV/.image.txt; then
    rm -rf $VENV
    "$(find_python312)" -m venv $VENV
    $VENV/bin/pip install -q -r bench/device/image.txt
    # Remove what the environment does not hold (pulled in as dependencies here).
    extra=$($VENV/bin/python -I - <<'PY'  # -I: not this checkout's own egg-info
import re
from importlib import metadata
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
image = {norm(n) for n in open("bench/device/image-packages.txt").read().split()}
print(" ".join(sorted({norm(d.metadata["Name"]) for d in metadata.distributions()} - image)))
PY
)
    if [[ -n $extra ]]; then $VENV/bin/pip uninstall -q -y $extra; fi
    cp bench/device/image.txt $VENV/.image.txt
fi
rm -rf build/device/site build/device/rehearsal
# Small NFE and batches keep it short on a CPU; batch 3 exercises padding to a captured batch size (4).
PYTHON=$VENV/bin/python SITE=build/device/site DEVICE=cpu ARCH=tiny OUT=build/device/rehearsal \
    bash bench/device/run.sh --nfe 2 --batches 1 3 4 --budget-s 3600 "$@"
$VENV/bin/python - <<'PY'
import json, sys
report = json.load(open("build/device/rehearsal/device_table.json"))
ran = sorted({r["variant"] for r in report["rows"]})
if report["skipped"]:
    sys.exit(f"rehearsal FAILED: skipped or failed: {report['skipped']}")
print(f"rehearsal passed: {len(report['rows'])} cells, variants {', '.join(ran)}, "
      f"{report['phases']['total_s']:.0f} s; build/device/rehearsal/device_table.{{json,md,png}}")
PY
