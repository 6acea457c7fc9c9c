#!/usr/bin/env bash
# perf_analyzer against an F5-TTS model (f5_tts, f5_tts_NAME) or its stream, with settings for
# multi-second inferences.
#   perf_analyzer_configs/run.sh [grpc|http] [URL] [CONCURRENCIES] [extra perf_analyzer flags...]
#   perf_analyzer_configs/run.sh grpc localhost:8001 "1 2 4 8"
# Environment:
#   INPUT_DATA     --input-data JSON (default: the committed example, data/basic_en.json)
#   REQUEST_COUNT  requests measured per concurrency (default 16). A fixed count suits
#                  inferences of seconds; 0 switches to perf_analyzer's stability search
#                  over count windows of WINDOW_REQUESTS requests (default 8).
#   OUT            CSV with one row per concurrency (default build/perf_analyzer_<protocol>.csv)
#   PERF_ANALYZER  the binary (default: perf_analyzer on PATH, else .venv/bin/perf_analyzer)
#   MODEL          which F5-TTS model: its short name (default, fr: a model added with export --name)
#                  or Triton name (f5_tts, f5_tts_fr); a name ending in _stream (f5_tts_stream,
#                  f5_tts_fr_stream, fr_stream) is its decoupled streaming model (default: default,
#                  that is f5_tts). `python -m client --list-models` lists the server's models.
#   STREAM         1: the streaming model of MODEL (MODEL=fr STREAM=1 is f5_tts_fr_stream), measured
#                  over a gRPC stream (perf_analyzer --streaming; the same input data). perf_analyzer's
#                  own latency for it is to the LAST response (the whole stream), whatever it
#                  prints; the script adds time to first audio from the per-response timestamps of
#                  --profile-export-file (stream_latency.py), also written to FIRST_AUDIO_OUT
#                  (default: OUT with _first_audio before .csv)
#   PYTHON         interpreter for stream_latency.py (default: .venv/bin/python, else python3)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
protocol=${1:-grpc}
default_url=localhost:8001; [[ "$protocol" == http ]] && default_url=localhost:8000
url=${2:-$default_url}
concurrencies=${3:-1 2 4 8}
shift $(( $# < 3 ? $# : 3 ))
input=${INPUT_DATA:-$here/data/basic_en.json}
out=${OUT:-build/perf_analyzer_${protocol}.csv}
pa=${PERF_ANALYZER:-$(command -v perf_analyzer || echo "$here/../.venv/bin/perf_analyzer")}
count=${REQUEST_COUNT:-16}
# The Triton model, named as contract.tts_model_name and stream_model_name name it.
name=${MODEL:-default}
stream=${STREAM:-0}
[[ "$stream" == 0 || "$stream" == 1 ]] || { echo "run.sh: STREAM must be 0 or 1, got '$stream'" >&2; exit 2; }
if [[ "$name" == *_stream ]]; then stream=1; name=${name%_stream}; fi
case "$name" in
  ""|default|f5_tts) model=f5_tts ;;
  f5_tts_*) model=$name ;;
  *) model=f5_tts_$name ;;
esac
if (( stream )); then model=${model}_stream; fi
echo "run.sh: model $model at $url ($protocol)" >&2
streaming=()
if (( stream )); then
  [[ "$protocol" == grpc ]] || { echo "run.sh: $model streams over gRPC only (perf_analyzer --streaming)" >&2; exit 2; }
  streaming=(--streaming)
  first_out=${FIRST_AUDIO_OUT:-${out%.csv}_first_audio.csv}
  py=${PYTHON:-$( [[ -x "$here/../.venv/bin/python" ]] && echo "$here/../.venv/bin/python" || command -v python3)}
  rm -f "$first_out"
fi
mkdir -p "$(dirname "$out")"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# perf_analyzer refuses --request-count with a concurrency range: one run per level.
for c in $concurrencies; do
  args=(-m "$model" "${streaming[@]}" -u "$url" -i "$protocol" --input-data "$input" --concurrency-range "$c:$c"
        --measurement-mode count_windows --measurement-request-count "${WINDOW_REQUESTS:-8}"
        --stability-percentage 50 --max-trials 6 --percentile 95 -f "$tmp/$c.csv")
  [[ "$count" != 0 ]] && args+=(--request-count "$count")
  (( ${#streaming[@]} )) && args+=(--profile-export-file "$tmp/$c.profile.json")
  "$pa" "${args[@]}" "$@"
  if (( ${#streaming[@]} )); then
    "$py" "$here/stream_latency.py" "$tmp/$c.profile.json" --percentile 95 --csv "$first_out"
  fi
done
first=1
for c in $concurrencies; do
  if (( first )); then cat "$tmp/$c.csv"; first=0; else tail -n +2 "$tmp/$c.csv"; fi
done > "$out"
echo "wrote $out"
if (( ${#streaming[@]} )); then echo "wrote $first_out (time to first audio)"; fi
