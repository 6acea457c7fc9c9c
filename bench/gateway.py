"""What the OpenAI-compatible gateway costs on top of the project's gRPC client, in one run.

The same requests (registered voice, same text, seed and NFE) go to Triton's stream model two ways,
interleaved so that both see the same machine: directly over the asyncio gRPC client
(`stream_synthesize_async`, all pieces collected) and through the gateway (`POST /v1/audio/speech`,
the whole body read) as pcm (no encoding) and mp3 (the default format, sent whole so that
its LAME tag carries the encoder delay).
Reported: p50/p95 latency and time to first audio at concurrency 1 and what the gateway adds, and
throughput (requests/s, audio-s/s) at concurrency 8.

  python -m bench.gateway --output docs/benchmarks            # a tiny model exported on the fly
  python -m bench.gateway --repository build/model_repository --voice narrator
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from tqdm import tqdm

import contract
from bench import save_report
from client.api import stream_synthesize_async
from client.request import SynthesisOptions
from launcher import TritonServer
from launcher.server import free_port

TEXT = "I don't really care what you call me. I've been a silent spectator, watching species evolve, empires rise."
PATHS = ("grpc", "gateway_pcm", "gateway_mp3")


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


class Paths:
    def __init__(self, triton: TritonServer, gateway_url: str, voice: str, nfe: int) -> None:
        import tritonclient.grpc.aio as aio

        self.grpc = aio.InferenceServerClient(triton.grpc_url)
        self.http = httpx.AsyncClient(base_url=gateway_url, timeout=600, limits=httpx.Limits(max_connections=64))
        self.voice = voice
        self.nfe = nfe
        self.options = SynthesisOptions(nfe_step=nfe, seed=0)

    async def close(self) -> None:
        await self.grpc.close()
        await self.http.aclose()

    async def run(self, path: str) -> tuple[float, float, float]:
        """(seconds to first audio, seconds to the end, audio seconds) of one request."""
        started = time.perf_counter()
        first = None
        if path == "grpc":
            samples = 0
            async for piece in stream_synthesize_async(TEXT, voice=self.voice, client=self.grpc, options=self.options):
                first = first or time.perf_counter() - started
                samples += piece.size
            return first, time.perf_counter() - started, samples / contract.SAMPLE_RATE
        fmt = path.split("_", 1)[1]
        body = {
            "model": "f5-tts",
            "input": TEXT,
            "voice": self.voice,
            "response_format": fmt,
            "nfe_step": self.nfe,
            "seed": 0,
        }
        size = 0
        async with self.http.stream("POST", "/v1/audio/speech", json=body) as response:
            assert response.status_code == 200, await response.aread()
            async for chunk in response.aiter_raw():
                first = first or time.perf_counter() - started
                size += len(chunk)
        seconds = size / 2 / contract.SAMPLE_RATE if fmt == "pcm" else float("nan")
        return first, time.perf_counter() - started, seconds


async def sequential(paths: Paths, requests: int) -> dict:
    """Concurrency 1, the paths interleaved request by request."""
    found = {p: [] for p in PATHS}
    for _ in tqdm(range(requests), desc="concurrency 1", unit="round"):
        for p in PATHS:
            found[p].append(await paths.run(p))
    out = {}
    for p, runs in found.items():
        out[p] = {
            "first_audio_p50_ms": _percentile([r[0] for r in runs], 50) * 1e3,
            "latency_p50_ms": _percentile([r[1] for r in runs], 50) * 1e3,
            "latency_p95_ms": _percentile([r[1] for r in runs], 95) * 1e3,
        }
    for p in PATHS[1:]:
        out[p]["added_p50_ms"] = out[p]["latency_p50_ms"] - out["grpc"]["latency_p50_ms"]
        out[p]["added_first_audio_p50_ms"] = out[p]["first_audio_p50_ms"] - out["grpc"]["first_audio_p50_ms"]
    audio = [r[2] for r in found["grpc"]]
    out["audio_seconds_per_request"] = statistics.median(audio)
    return out


async def concurrent(paths: Paths, path: str, concurrency: int, requests: int) -> dict:
    queue = list(range(requests))
    latencies = []

    async def worker():
        while queue:
            queue.pop()
            latencies.append((await paths.run(path))[1])

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return {
        "requests_per_s": requests / wall,
        "latency_p50_ms": _percentile(latencies, 50) * 1e3,
        "latency_p95_ms": _percentile(latencies, 95) * 1e3,
        "wall_s": wall,
    }


async def measure(
    triton: TritonServer,
    gateway_url: str,
    voice: str,
    nfe: int,
    requests: int,
    concurrency: int,
    concurrent_requests: int,
    rounds: int,
) -> dict:
    paths = Paths(triton, gateway_url, voice, nfe)
    try:
        for p in PATHS:  # warm both paths (connections, encoders)
            await paths.run(p)
        report = {"concurrency_1": await sequential(paths, requests)}
        audio = report["concurrency_1"]["audio_seconds_per_request"]
        level = {p: [] for p in PATHS}
        for k in tqdm(range(rounds), desc=f"concurrency {concurrency}", unit="round"):
            # short rounds, the order rotating, so that no path gets only the quiet moments
            for p in PATHS[k % len(PATHS) :] + PATHS[: k % len(PATHS)]:
                level[p].append(await concurrent(paths, p, concurrency, concurrent_requests))
        report[f"concurrency_{concurrency}"] = {}
        for p, runs in level.items():
            rps = statistics.median(r["requests_per_s"] for r in runs)
            report[f"concurrency_{concurrency}"][p] = {
                "requests_per_s": rps,
                "audio_s_per_s": rps * audio,
                "latency_p50_ms": statistics.median(r["latency_p50_ms"] for r in runs),
                "latency_p95_ms": statistics.median(r["latency_p95_ms"] for r in runs),
                "rounds_requests_per_s": [round(r["requests_per_s"], 3) for r in runs],
            }
        grpc = report[f"concurrency_{concurrency}"]["grpc"]["requests_per_s"]
        for p in PATHS[1:]:
            report[f"concurrency_{concurrency}"][p]["throughput_vs_grpc"] = (
                report[f"concurrency_{concurrency}"][p]["requests_per_s"] / grpc
            )
        return report
    finally:
        await paths.close()


def _tiny_repository(work: Path) -> tuple[Path, str]:
    from bench.serving import _export
    from export.repository import REFERENCE_TEXT, REFERENCE_WAV

    return _export(work, "repo", "--voice", f"nature={REFERENCE_WAV}:{REFERENCE_TEXT}"), "nature"


def _wait_live(gateway: subprocess.Popen, url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        if gateway.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the gateway did not start (exit code {gateway.poll()})")
        try:
            httpx.get(f"{url}/health/live", timeout=2).raise_for_status()
            return
        except httpx.HTTPError:
            time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.gateway", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--repository", type=Path, help="an exported repository (default: a tiny one, exported here)")
    p.add_argument("--voice", default="nature", help="a voice registered in --repository (default %(default)s)")
    p.add_argument("--nfe-step", type=int, default=16, help="ODE steps per request (default %(default)s)")
    p.add_argument("--requests", type=int, default=20, help="per path at concurrency 1 (default %(default)s)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--concurrent-requests", type=int, default=16, help="per path and round (default %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="rounds at --concurrency; medians (default %(default)s)")
    p.add_argument("--output", type=Path, default=Path("build/bench_gateway"))
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        work = Path(tmp)
        repo, voice = (args.repository, args.voice) if args.repository else _tiny_repository(work)
        with TritonServer(repo) as triton:
            port = free_port()
            with open(work / "gateway.log", "wb") as log:
                gateway = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "gateway",
                        "--triton-url",
                        triton.grpc_url,
                        "--port",
                        str(port),
                        "--voices-dir",
                        str(work / "voices"),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={k: v for k, v in os.environ.items() if k != "F5_GATEWAY_API_KEY"},
                )
            try:
                _wait_live(gateway, f"http://127.0.0.1:{port}")
                load = os.getloadavg()[0]
                report = asyncio.run(
                    measure(
                        triton,
                        f"http://127.0.0.1:{port}",
                        voice,
                        args.nfe_step,
                        args.requests,
                        args.concurrency,
                        args.concurrent_requests,
                        args.rounds,
                    )
                )
            finally:
                gateway.terminate()
                gateway.wait(timeout=30)
    # The machine may be shared: its load before and after says how quiet the run was.
    report["machine"] = {"cpus": os.cpu_count(), "load_1min_before": load, "load_1min_after": os.getloadavg()[0]}
    report["request"] = {
        "text": TEXT,
        "nfe_step": args.nfe_step,
        "voice": voice,
        "model": str(args.repository) if args.repository else "tiny (F5TTS_v1_Base layout, dim 64, depth 2)",
    }
    save_report(args.output, "gateway_cpu", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
