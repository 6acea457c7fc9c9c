"""The DiT engines on this machine: compiled vs eager, what length buckets cost, cold start, first request.

1. Steady state, interleaved round by round in one process (same requests and seeds): eager
   (the exact batch), bucketed (the compiled path's padding, mask and cache filling, but the
   DiT left eager: the cost of bucketing alone) and compiled (torch.compile on the buckets).
2. First request after warm-up vs the steady state, for the compiled engine.
3. Cold start: a fresh process builds the compiled engine and warms it up, twice with the
   same TorchInductor cache directory: the first ever start (empty cache) and a restart.

  python -m bench.engine --arch tiny --output docs/benchmarks
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import contract
from bench import save_report
from bench.pipeline import _machine, _request, build_repository
from export.repository import REFERENCE_WAV
from pipeline.engine import DitEngine
from pipeline.synthesizer import Synthesizer
from pipeline.vocoder import OnnxVocoder

ROOT = Path(__file__).resolve().parent.parent
TEXTS = [
    "I don't really care what you call me.",
    "I've been a silent spectator, watching species evolve, empires rise and fall.",
]


def _synth(repo: Path, engine: str) -> Synthesizer:
    vocoder = OnnxVocoder(repo / contract.VOCODER_MODEL / contract.MODEL_VERSION / contract.VOCODER_ONNX_FILE)
    return Synthesizer.from_directory(
        repo / contract.TTS_MODEL / contract.MODEL_VERSION,
        vocoder,
        max_batch_chunks=1,
        engine="eager" if engine == "eager" else "compiled",
    )


def steady(repo: Path, nfe: int, rounds: int) -> dict:
    import soundfile as sf

    audio, sr = sf.read(str(REFERENCE_WAV), dtype="float32", always_2d=True)
    requests = [_request(np.ascontiguousarray(audio.T), sr, text, nfe, i) for i, text in enumerate(TEXTS)]
    synths = {"eager": _synth(repo, "eager"), "bucketed": _synth(repo, "eager"), "compiled": _synth(repo, "compiled")}
    b = synths["bucketed"]
    b.engine = DitEngine(b.cfm.transformer, engine="compiled", max_batch=1, compiler=lambda m, **_: m)
    result = {}
    for name, synth in synths.items():
        t = time.perf_counter()
        synth.warm_up()
        result[f"{name}_warm_up_s"] = time.perf_counter() - t
    first = time.perf_counter()
    synths["compiled"].synthesize(requests)
    result["compiled_first_request_s"] = time.perf_counter() - first
    times: dict[str, list[float]] = {name: [] for name in synths}
    for r in range(rounds):
        for name, synth in synths.items():
            t = time.perf_counter()
            synth.synthesize(requests)
            times[name].append(time.perf_counter() - t)
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {v[-1]:.2f} s" for n, v in times.items()), flush=True)
    med = {name: statistics.median(v) for name, v in times.items()}
    result.update(
        times_s=times,
        median_s=med,
        bucketing_cost=med["bucketed"] / med["eager"],
        compiled_speedup=med["eager"] / med["compiled"],
        compiled_first_over_steady=result["compiled_first_request_s"] / med["compiled"],
    )
    return result


_START = """
import json, time
t0 = time.perf_counter()
from pipeline.engine import use_cache_dir
from pipeline.synthesizer import Synthesizer
use_cache_dir({cache!r})
synth = Synthesizer.from_directory({model!r}, None, max_batch_chunks=1, engine="compiled")
loaded = time.perf_counter() - t0
compile_s = synth.warm_up()
print(json.dumps({{"load_s": loaded, "warm_up_s": compile_s, "total_s": time.perf_counter() - t0}}))
"""


def cold_start(repo: Path, cache: Path) -> dict:
    script = _START.format(cache=str(cache), model=str(repo / contract.TTS_MODEL / contract.MODEL_VERSION))
    out = {}
    for name in ("first_ever", "warm_cache"):
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"cold start, {name}: {out[name]}", flush=True)
    out["warm_over_first"] = out["warm_cache"]["warm_up_s"] / out["first_ever"]["warm_up_s"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.engine", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--arch", default="tiny")
    p.add_argument("--nfe", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--output", type=Path, default=Path("build/bench_engine"))
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        repo, *_ = build_repository(args.arch, Path(tmp), "cpu")
        report = {
            "arch": args.arch,
            "nfe": args.nfe,
            "texts": TEXTS,
            "machine": _machine("cpu"),
            "cold_start": cold_start(repo, Path(tmp) / "inductor_cache"),
            "steady": steady(repo, args.nfe, args.rounds),
        }
    print(f"wrote {save_report(args.output, f'engine_{args.arch}_cpu', report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
