"""What Triton costs on top of the pipeline, and how warm a fresh server is.

1. Overhead: the same request in-process (`Synthesizer.synthesize`, what execute() calls)
   and through the server over gRPC and HTTP; medians over --repeats runs; the difference in
   ms and the ratio.
2. Cold start, with the exported warm-up on and off: launch-to-ready time, then the first
   request's latency divided by the median of the following ones (the goal: <= 1.2 with
   warm-up). Medians over --launches server starts.

  python -m bench.serving --output docs/benchmarks
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

import contract
from bench import save_report
from client import SynthesisOptions, synthesize
from export.__main__ import request_from_argv
from export.api import export_model
from export.demo import write_random_checkpoint, write_tiny_model_config, write_tiny_vocos
from export.repository import REFERENCE_TEXT, REFERENCE_WAV
from launcher import TritonServer
from pipeline.requests import parse_request
from pipeline.synthesizer import Synthesizer
from pipeline.vocoder import OnnxVocoder

TEXT = "I don't really care what you call me. I've been a silent spectator."
NFE = 16


def _export(work: Path, name: str, *extra: str) -> Path:
    config = work / "tiny.yaml"
    if not config.exists():
        write_tiny_model_config(config)
        write_random_checkpoint(config, work / "model.safetensors")
        write_tiny_vocos(work / "vocos")
    repo = work / name
    export_model(
        request_from_argv(
            [
                "--ckpt",
                str(work / "model.safetensors"),
                "--model-config",
                str(config),
                "--vocoder",
                str(work / "vocos"),
                "--output",
                str(repo),
                *extra,
            ]
        )
    )
    return repo


def _reference():
    audio, sr = sf.read(str(REFERENCE_WAV), dtype="float32", always_2d=True)
    return np.ascontiguousarray(audio.T), sr


def _remote(server: TritonServer, protocol: str) -> float:
    audio, sr = _reference()
    url = server.grpc_url if protocol == "grpc" else server.http_url
    t = time.perf_counter()
    synthesize(
        TEXT, audio, sr, REFERENCE_TEXT, url=url, protocol=protocol, options=SynthesisOptions(nfe_step=NFE, seed=0)
    )
    return time.perf_counter() - t


def overhead(repo: Path, repeats: int) -> dict:
    audio, sr = _reference()
    synth = Synthesizer.from_directory(
        repo / contract.TTS_MODEL / "1",
        OnnxVocoder(repo / contract.VOCODER_MODEL / contract.MODEL_VERSION / contract.VOCODER_ONNX_FILE),
    )
    request = parse_request(
        {
            contract.REFERENCE_AUDIO: audio[None],
            contract.REFERENCE_SAMPLE_RATE: np.array([[sr]]),
            contract.REFERENCE_TEXT: np.array([[REFERENCE_TEXT.encode()]], dtype=object),
            contract.TARGET_TEXT: np.array([[TEXT.encode()]], dtype=object),
            contract.NFE_STEP: np.array([[NFE]]),
            contract.SEED: np.array([[0]]),
        }
    )
    synth.synthesize([request])

    def local():
        t = time.perf_counter()
        synth.synthesize([request])
        return time.perf_counter() - t

    out = {"in_process_ms": statistics.median(local() for _ in range(repeats)) * 1e3}
    with TritonServer(repo) as server:
        for protocol in ("grpc", "http"):
            _remote(server, protocol)
            out[f"{protocol}_ms"] = statistics.median(_remote(server, protocol) for _ in range(repeats)) * 1e3
    for protocol in ("grpc", "http"):
        out[f"{protocol}_overhead_ms"] = out[f"{protocol}_ms"] - out["in_process_ms"]
        out[f"{protocol}_ratio"] = out[f"{protocol}_ms"] / out["in_process_ms"]
    return out


def cold_start(repo: Path, launches: int, steady: int) -> dict:
    ready, ratios, first = [], [], []
    for _ in range(launches):
        server = TritonServer(repo)
        t = time.perf_counter()
        server.start()
        ready.append(time.perf_counter() - t)
        try:
            first_s = _remote(server, "grpc")
            rest = [_remote(server, "grpc") for _ in range(steady)]
        finally:
            server.stop()
        first.append(first_s)
        ratios.append(first_s / statistics.median(rest))
    return {
        "launch_to_ready_s": statistics.median(ready),
        "first_request_s": statistics.median(first),
        "first_over_steady": statistics.median(ratios),
        "launches": launches,
        "steady_requests": steady,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.serving", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--launches", type=int, default=3)
    p.add_argument("--steady", type=int, default=5)
    p.add_argument("--output", type=Path, default=Path("build/bench_serving"))
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        work = Path(tmp)
        warm = _export(work, "warm")
        cold = _export(work, "cold", "--no-warmup")
        report = {
            "request": {"text": TEXT, "nfe_step": NFE, "model": "tiny (F5TTS_v1_Base layout, dim 64, depth 2)"},
            "overhead": overhead(warm, args.repeats),
            "cold_start": {
                "warmup_on": cold_start(warm, args.launches, args.steady),
                "warmup_off": cold_start(cold, args.launches, args.steady),
            },
        }
    save_report(args.output, "serving_cpu", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
