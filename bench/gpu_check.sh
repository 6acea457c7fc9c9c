#!/usr/bin/env bash
# One prepared run for a GPU machine (the device tool): F5TTS_v1_Base architecture (random
# weights run at the speed of trained ones), NFE 32 and 16, a ~10 s target with a ~5 s
# reference, batches 1/4/16, our pipeline vs f5-tts infer_process. Target: <= 8 minutes.
# Wheels the device lacks travel with the working tree in wheels/ (installed below); results land in $OUT.
#   bash bench/gpu_check.sh            # on the device
#   ARCH=tiny DEVICE=cpu PYTHON=.venv/bin/python bash bench/gpu_check.sh   # verified on CPU
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build/gpu_check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
if [[ -d wheels ]]; then "$PY" -m pip install -q --no-index --find-links wheels --no-deps wheels/*.whl; fi
"$PY" -m bench.pipeline --arch "${ARCH:-F5TTS_v1_Base}" --device "${DEVICE:-cuda}" --nfe 32 16 \
    --batches 1,4,16 --repeats "${REPEATS:-3}" --output "$OUT" 2>&1 | tee "$OUT/log.txt"
