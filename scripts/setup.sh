#!/usr/bin/env bash
# Setup from nothing: .venv with the locked packages, the bundled tritonserver and
# perf_analyzer ready to run. Idempotent: a second run with unchanged inputs takes seconds.
#   scripts/setup.sh          CPU (developers, CI)
#   scripts/setup.sh --gpu    onnxruntime-gpu instead of onnxruntime
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
REQS=requirements/cpu.txt
[[ "${1:-}" == "--gpu" ]] && REQS=requirements/gpu.txt
PYTRITON=nvidia-pytriton==0.7.0

find_python() {
  for py in "${PYTHON:-}" python3.11 /root/.pyenv/versions/3.11*/bin/python3.11 /usr/bin/python3.11; do
    [[ -n "$py" ]] && command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null && { command -v "$py"; return; }
  done
  echo "setup: Python 3.11 not found (set PYTHON=/path/to/python3.11)" >&2; exit 1
}

# The browser test of the gateway's playground drives Debian's Chromium through its chromedriver
# (a test tool's own browser download needs the internet); the gateway's tests also run curl.
# Installed once; skipped when present.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1 \
    || ! command -v curl >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing chromium, chromium-driver and curl (apt)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver curl >/dev/null
  else
    echo "setup: WARNING: chromium, chromedriver or curl is missing, so the gateway's tests will fail:" \
         "run this as root, or: sudo apt-get install chromium chromium-driver curl" >&2
  fi
fi

stamp_inputs() { cat "$REQS" requirements/lock.txt requirements/runpod.txt pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1; }
STAMP="$VENV/.setup-stamp"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(stamp_inputs)" ]]; then
  echo "setup: $VENV is up to date"; exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  PY=$(find_python)
  echo "setup: creating $VENV with $PY"
  "$PY" -m venv "$VENV"
fi
# pip, quiet; hides the warnings some machines print for local index folders that do not exist
pip_install() {
  "$VENV/bin/python" -m pip --disable-pip-version-check install -q "$@" \
    2> >(grep -v "^WARNING: Location 'file://" >&2)
}
pip_install --upgrade "pip>=24" wheel
echo "setup: installing $REQS (torch + f5-tts: several GB on first run)"
# onnxruntime and onnxruntime-gpu install the same module: keep only the one REQS asks for
other=onnxruntime-gpu; [[ "$REQS" == requirements/gpu.txt ]] && other=onnxruntime
"$VENV/bin/python" -m pip --disable-pip-version-check uninstall -y -q "$other" 2>/dev/null || true
pip_install -r "$REQS"
pip_install --no-deps "$PYTRITON"
# The RunPod worker's SDK and the packages it adds; --no-deps keeps every pin of REQS (see the file).
pip_install --no-deps -r requirements/runpod.txt
pip_install --no-deps -e .

SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
PYVER=$("$VENV/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
TS="$SITE/pytriton/tritonserver"
LIBS="$SITE/nvidia_pytriton.libs"
# The bundled Python backend looks for its stub next to libtriton_python.so.
cp -f "$TS/python_backend_stubs/$PYVER/triton_python_backend_stub" "$TS/backends/python/"

# perf_analyzer (tritonclient 2.51.0 wheel) needs libb64.so.0d and libcudart.so.12,
# both shipped inside nvidia-pytriton under hashed names: link them and wrap the binary.
EXTRA="$VENV/lib/perf_analyzer_libs"
mkdir -p "$EXTRA"
ln -sf "$(ls "$LIBS"/libb64-*.so.0d | head -1)" "$EXTRA/libb64.so.0d"
ln -sf "$(ls "$LIBS"/libcudart-*.so.12* | head -1)" "$EXTRA/libcudart.so.12"
PA="$VENV/bin/perf_analyzer"
if [[ -f "$PA" ]] && ! grep -q "perf_analyzer_libs" "$PA" 2>/dev/null; then
  mv -f "$PA" "$VENV/bin/perf_analyzer.bin"
fi
cat > "$PA" <<WRAP
#!/usr/bin/env bash
export LD_LIBRARY_PATH="$(cd "$EXTRA" && pwd)\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "$(cd "$VENV/bin" && pwd)/perf_analyzer.bin" "\$@"
WRAP
chmod +x "$PA"

"$VENV/bin/python" - <<'PY'
import numpy, torch, torchaudio, f5_tts.model, onnxruntime, tritonclient.grpc, soundfile, runpod.serverless  # noqa: F401
import av, fastapi, openai, selenium, uvicorn  # noqa: F401  (the gateway and its tests)
from launcher import find_tritonserver
assert numpy.__version__.startswith("1."), f"numpy {numpy.__version__}: the Python stub needs numpy<2"
print(f"setup: torch {torch.__version__}, numpy {numpy.__version__}, onnxruntime {onnxruntime.__version__}, "
      f"tritonserver {find_tritonserver().path}")
PY
"$VENV/bin/perf_analyzer" --version >/dev/null 2>&1 || "$VENV/bin/perf_analyzer" --help >/dev/null 2>&1 || {
  echo "setup: perf_analyzer does not run" >&2; exit 1; }
stamp_inputs > "$STAMP"
echo "setup: done ($VENV)"
