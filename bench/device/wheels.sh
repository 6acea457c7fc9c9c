#!/usr/bin/env bash
# Download (or, for the pure-Python packages PyPI has no wheel of, build) the wheels listed in
# bench/device/wheels.txt into build/device/wheels: what the GPU benchmark's environment lacks.
#   bash bench/device/wheels.sh            # = make device-wheels
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}  # any Python with pip: the platform and version are named below
DEST=build/device/wheels
mkdir -p "$DEST"
list=bench/device/wheels.txt
binary=$(grep -v '^#' "$list" | grep -v '# build' | sed 's/#.*//' | xargs)
built=$(grep '# build' "$list" | sed 's/#.*//' | xargs)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d "$DEST" $binary
"$PY" -m pip wheel -q --no-deps -w "$DEST" $built
# Exactly the listed set (an older download of another version would be installed beside it).
expected=$(( $(echo $binary | wc -w) + $(echo $built | wc -w) ))
found=$(ls "$DEST"/*.whl | wc -l)
if [[ $found -ne $expected ]]; then
    echo "wheels.sh: $DEST holds $found wheels, $list names $expected; empty $DEST and run again" >&2
    exit 1
fi
du -cb "$DEST"/*.whl | tail -1 | awk '{printf "wheels.sh: %d wheels, %.1f MiB in '"$DEST"'\n", '"$found"', $1 / 1048576}'
