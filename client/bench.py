"""python -m client bench: how fast is the server at my concurrency?

Concurrent asyncio gRPC requests from a JSONL manifest (one object per line:
{"reference_audio": path, "reference_text": ..., "text": ...}; relative paths are taken
from the manifest's folder; a line without "reference_text" has the server transcribe its
reference, once per distinct audio, so a warm-up request pays for it) or from the reference
audio that f5-tts ships. For each
concurrency level: warm-up requests (not counted), then --requests timed ones. Reports
latency percentiles, RTF (wall seconds / generated audio seconds, as the official F5-TTS
client computes it), throughput in audio seconds per second, errors, and the change in
Triton's model statistics over the run (queue vs compute time, batch sizes executed).
Writes a JSON report and PNG plots (latency CDF; RTF and throughput vs concurrency).

--streaming compares, for one long paragraph, time to first audio over the streaming model
with total latency of the whole-text model (p50/p95 each, and their ratio), both at the same
concurrency.

--model NAME benchmarks one of the server's F5-TTS models (python -m client --list-models): its
short name (fr) or Triton name (f5_tts_fr); --streaming then uses its stream model (f5_tts_fr_stream).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import contract
from client.api import SynthesisError, index_entries, model_names, stream_model, synthesize_async, tts_model
from client.audio import load_audio
from client.connection import resolve_endpoint
from client.request import SynthesisOptions, build_inputs, grpc_inputs

EXAMPLE_TEXTS = [
    "I don't really care what you call me.",
    "I've been a silent spectator, watching species evolve, empires rise and fall.",
    "But always remember, I am mighty and enduring. Respect me and I'll nurture you.",
    "The rivers carve the valleys, and the seasons turn without asking for permission.",
]
EXAMPLE_REFERENCE_TEXT = "Some call me nature, others call me mother nature."
LONG_PARAGRAPH = (
    "I don't really care what you call me. I've been a silent spectator, watching species evolve, empires rise "
    "and fall. But always remember, I am mighty and enduring. Respect me and I'll nurture you; ignore me and you "
    "shall face the consequences. The rivers carve the valleys, the winds shape the mountains, and the seasons "
    "turn without asking anyone for permission. Listen closely, and you will hear the whole story, from the first "
    "raindrop on a quiet morning to the last light of a long summer evening."
)
PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class Item:
    audio: np.ndarray
    sample_rate: int
    reference_text: str | None  # None: the server transcribes the reference
    text: str


def shipped_examples() -> list[Item]:
    """The English reference that f5-tts ships, with a few target texts."""
    try:
        from importlib.resources import files

        path = Path(str(files("f5_tts").joinpath("infer/examples/basic/basic_ref_en.wav")))
    except ModuleNotFoundError:
        raise SystemExit(
            "bench: f5-tts is not installed here, so its example audio is not either; pass --manifest"
        ) from None
    audio, sr = load_audio(path)
    return [Item(audio, sr, EXAMPLE_REFERENCE_TEXT, t) for t in EXAMPLE_TEXTS]


def load_manifest(path: Path) -> list[Item]:
    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            audio_path = Path(row["reference_audio"])
            audio, sr = load_audio(audio_path if audio_path.is_absolute() else path.parent / audio_path)
            items.append(Item(audio, sr, row.get("reference_text"), row["text"]))
        except (KeyError, json.JSONDecodeError, ValueError) as e:
            raise SystemExit(
                f"bench: {path}:{n}: {e} (each line needs reference_audio and text, and reference_text "
                "unless the server is to transcribe the reference)"
            ) from None
    if not items:
        raise SystemExit(f"bench: {path} holds no requests")
    return items


async def _stats(client, model: str) -> dict:
    """Cumulative Triton statistics of `model`."""
    s = (await client.get_inference_statistics(model, as_json=True))["model_stats"][0]
    inf = s["inference_stats"]

    def ns(key):
        return int(inf.get(key, {}).get("ns", 0))

    return {
        "inference_count": int(s.get("inference_count", 0)),
        "execution_count": int(s.get("execution_count", 0)),
        "queue_ns": ns("queue"),
        "compute_input_ns": ns("compute_input"),
        "compute_infer_ns": ns("compute_infer"),
        "compute_output_ns": ns("compute_output"),
        "success_count": int(inf.get("success", {}).get("count", 0)),
        "batches": {int(b["batch_size"]): int(b["compute_infer"].get("count", 0)) for b in s.get("batch_stats", [])},
    }


def _batched(stats: dict) -> int:
    return sum(size * n for size, n in stats["batches"].items())


async def _settled_stats(client, model: str, since: dict, requests: int, wait_s: float = 5.0) -> dict:
    """Statistics once Triton has counted `requests` more successes and batched requests than `since`:
    it updates them just after sending the responses (a batch's sizes last), so a read right after
    the last answer can miss some."""
    deadline = time.monotonic() + wait_s
    stats = await _stats(client, model)
    while (
        stats["success_count"] - since["success_count"] < requests or _batched(stats) - _batched(since) < requests
    ) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        stats = await _stats(client, model)
    return stats


def _stats_delta(before: dict, after: dict) -> dict:
    executions = after["execution_count"] - before["execution_count"]
    requests = after["success_count"] - before["success_count"]
    batches = {
        size: n - before["batches"].get(size, 0)
        for size, n in after["batches"].items()
        if n - before["batches"].get(size, 0) > 0
    }

    def per_request(key):
        return (after[key] - before[key]) / requests / 1e6 if requests else None

    return {
        "requests": requests,
        "executions": executions,
        "avg_batch_size": requests / executions if executions else None,
        "avg_queue_ms": per_request("queue_ns"),
        "avg_compute_infer_ms": per_request("compute_infer_ns"),
        "avg_compute_input_ms": per_request("compute_input_ns"),
        "avg_compute_output_ms": per_request("compute_output_ns"),
        "batch_sizes_executed": dict(sorted(batches.items())),
    }


async def _run_level(
    client,
    items: list[Item],
    concurrency: int,
    count: int,
    options: SynthesisOptions,
    model: str,
    timeout: float,
    progress,
) -> dict:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    latencies, audio_seconds, errors = [], [], []

    async def worker():
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            item = items[i % len(items)]
            started = time.perf_counter()
            try:
                wave, rate = await synthesize_async(
                    item.text,
                    item.audio,
                    item.sample_rate,
                    item.reference_text,
                    client=client,
                    model=model,
                    options=options,
                    timeout=timeout,
                )
                latencies.append(time.perf_counter() - started)
                audio_seconds.append(len(wave) / rate)
            except SynthesisError as e:
                errors.append(str(e))
            if progress is not None:
                progress.update(1)

    wall_start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - wall_start
    total_audio = float(sum(audio_seconds))
    lat = np.array(latencies)
    return {
        "concurrency": concurrency,
        "requests": count,
        "ok": len(latencies),
        "errors": len(errors),
        "error_messages": sorted(set(errors))[:5],
        "wall_seconds": wall,
        "audio_seconds": total_audio,
        "rtf": wall / total_audio if total_audio else None,
        "throughput_audio_s_per_s": total_audio / wall if wall else None,
        "latency_s": {f"p{p}": float(np.percentile(lat, p)) for p in PERCENTILES} if lat.size else {},
        "latency_mean_s": float(lat.mean()) if lat.size else None,
        "latencies_s": [float(x) for x in latencies],
    }


async def _check_models(client, url: str, model: str, triton_models: list[str]) -> None:
    """SystemExit (one line, status 1) unless each of `triton_models` (those of `model`, as asked for) is
    ready: an unknown model is said with the models the server has."""
    from tritonclient.utils import InferenceServerException

    for triton_model in triton_models:
        try:
            ready = await client.is_model_ready(triton_model)
            if ready:
                continue
            index = index_entries(await client.get_model_repository_index(as_json=True))
        except InferenceServerException as e:
            raise SystemExit(f"bench: cannot reach the server at {url}: {e.message()}") from None
        if triton_model not in {e.get("name") for e in index}:
            has = ", ".join(model_names(index)) or "no F5-TTS model"
            raise SystemExit(
                f"bench: unknown model {model!r}: the server at {url} has {has} (python -m client --list-models)"
            )
        raise SystemExit(f"bench: model {triton_model!r} is not ready at {url}")


def _aio_client(url: str):
    """An asyncio gRPC client for host:port, grpc:// or grpcs:// (TLS with the system's CAs)."""
    import tritonclient.grpc.aio as aio

    endpoint = resolve_endpoint(url, "grpc")
    return aio.InferenceServerClient(endpoint.address, ssl=endpoint.ssl)


async def run_bench(
    url: str,
    items: list[Item],
    concurrencies: list[int],
    requests: int,
    warmup: int,
    options: SynthesisOptions,
    model: str = contract.DEFAULT_MODEL_NAME,
    timeout: float = 600.0,
    show_progress: bool = True,
) -> dict:
    """`model`: a short name (fr) or a Triton name (f5_tts_fr); the report names its Triton model."""
    asked, model = model, tts_model(model)
    client = _aio_client(url)
    try:
        await _check_models(client, url, asked, [model])
        levels = []
        for c in concurrencies:
            start = await _stats(client, model)
            await _run_level(client, items, c, warmup, options, model, timeout, None)
            before = await _settled_stats(client, model, start, warmup)
            progress = _progress(requests, f"concurrency {c}") if show_progress else None
            level = await _run_level(client, items, c, requests, options, model, timeout, progress)
            if progress is not None:
                progress.close()
            after = await _settled_stats(client, model, before, level["ok"])
            level["triton"] = _stats_delta(before, after)
            levels.append(level)
        return {
            "url": url,
            "model": model,
            "model_name": contract.model_short_name(model),
            "options": {k: v for k, v in vars(options).items() if v is not None},
            "requests_per_level": requests,
            "warmup_per_level": warmup,
            "levels": levels,
        }
    finally:
        await client.close()


async def _stream_once(
    client, item: Item, options: SynthesisOptions, timeout: float, model: str = contract.STREAM_MODEL
) -> tuple[float, float, float]:
    """One request to the streaming model (its Triton name): (seconds to the first audio, total seconds, audio
    seconds)."""
    inputs = grpc_inputs(build_inputs(item.audio, item.sample_rate, item.reference_text, item.text, options))

    async def one_request():
        yield {"model_name": model, "inputs": inputs}

    started = time.perf_counter()
    first, samples = None, 0
    # The stream ends when the server has sent the request's final response.
    async for result, error in client.stream_infer(one_request(), stream_timeout=timeout):
        if error is not None:
            raise SynthesisError(error.message() or str(error), error.status())
        wave = result.as_numpy(contract.WAVEFORM)
        if wave is not None and wave.size:
            first = first if first is not None else time.perf_counter() - started
            samples += wave.size
    if first is None:
        raise SynthesisError("the stream ended without audio")
    return first, time.perf_counter() - started, samples / contract.SAMPLE_RATE


async def run_streaming_bench(
    url: str,
    item: Item,
    concurrencies: list[int],
    requests: int,
    warmup: int,
    options: SynthesisOptions,
    timeout: float = 600.0,
    model: str = contract.DEFAULT_MODEL_NAME,
) -> dict:
    """Time to first audio (streaming) next to total latency (whole text), per concurrency, for `model` (a
    short or Triton name): its stream model against itself."""
    asked, whole_model, streaming_model = model, tts_model(model), stream_model(model)
    client = _aio_client(url)

    async def sweep(call, n: int, concurrency: int) -> list:
        pending = list(range(n))
        out: list = []

        async def worker():
            while pending:
                pending.pop()
                out.append(await call())

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return out

    def whole():
        async def call():
            started = time.perf_counter()
            await synthesize_async(
                item.text,
                item.audio,
                item.sample_rate,
                item.reference_text,
                client=client,
                model=whole_model,
                options=options,
                timeout=timeout,
            )
            return time.perf_counter() - started

        return call

    def streamed():
        return lambda: _stream_once(client, item, options, timeout, streaming_model)

    def pct(values):
        return {f"p{p}": float(np.percentile(values, p)) for p in (50, 95)}

    try:
        await _check_models(client, url, asked, [whole_model, streaming_model])
        levels = []
        for c in concurrencies:
            await sweep(whole(), warmup, c)
            await sweep(streamed(), warmup, c)
            totals = await sweep(whole(), requests, c)
            streams = await sweep(streamed(), requests, c)
            ttfa = [s[0] for s in streams]
            level = {
                "concurrency": c,
                "requests": requests,
                "audio_seconds": streams[0][2],
                "non_streaming_total_s": pct(totals),
                "streaming_first_audio_s": pct(ttfa),
                "streaming_total_s": pct([s[1] for s in streams]),
            }
            level["first_audio_over_total_p50"] = (
                level["streaming_first_audio_s"]["p50"] / level["non_streaming_total_s"]["p50"]
            )
            levels.append(level)
        return {
            "url": url,
            "model": whole_model,
            "stream_model": streaming_model,
            "text_bytes": len(item.text.encode("utf-8")),
            "options": {k: v for k, v in vars(options).items() if v is not None},
            "levels": levels,
        }
    finally:
        await client.close()


def print_streaming_table(report: dict) -> None:
    print(
        f"{'conc':>4} {'audio s':>7} {'whole p50':>9} {'whole p95':>9} {'first p50':>9} {'first p95':>9} "
        f"{'stream p50':>10} {'first/whole':>11}"
    )
    for lv in report["levels"]:
        w, f, s = lv["non_streaming_total_s"], lv["streaming_first_audio_s"], lv["streaming_total_s"]
        print(
            f"{lv['concurrency']:>4} {lv['audio_seconds']:7.2f} {w['p50']:9.3f} {w['p95']:9.3f} {f['p50']:9.3f} "
            f"{f['p95']:9.3f} {s['p50']:10.3f} {lv['first_audio_over_total_p50']:11.3f}"
        )


def _progress(total: int, desc: str):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="req", file=sys.stderr)


def write_plots(report: dict, out_dir: Path) -> list[Path]:
    """latency CDF per concurrency; RTF and throughput vs concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for level in report["levels"]:
        lat = np.sort(level["latencies_s"])
        if lat.size:
            ax.plot(
                lat,
                np.arange(1, lat.size + 1) / lat.size,
                drawstyle="steps-post",
                label=f"concurrency {level['concurrency']}",
            )
    ax.set(xlabel="latency (s)", ylabel="fraction of requests", title="Latency CDF")
    ax.grid(alpha=0.3)
    ax.legend()
    paths.append(out_dir / "latency_cdf.png")
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    levels = [lv for lv in report["levels"] if lv["rtf"] is not None]
    conc = [lv["concurrency"] for lv in levels]
    fig, ax1 = plt.subplots(figsize=(6, 4))
    ax1.plot(conc, [lv["rtf"] for lv in levels], "o-", color="tab:blue", label="RTF")
    ax1.set(xlabel="concurrency", ylabel="RTF (lower is better)", title="RTF and throughput vs concurrency")
    ax1.set_xscale("log", base=2)
    ax1.set_xticks(conc, [str(c) for c in conc])
    ax2 = ax1.twinx()
    ax2.plot(conc, [lv["throughput_audio_s_per_s"] for lv in levels], "s--", color="tab:orange", label="throughput")
    ax2.set_ylabel("audio seconds per second")
    fig.legend(loc="upper center", bbox_to_anchor=(0.5, 0.9))
    fig.tight_layout()
    paths.append(out_dir / "rtf_throughput.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def print_table(report: dict) -> None:
    print(
        f"{'conc':>4} {'ok':>4} {'err':>4} {'p50 s':>7} {'p90 s':>7} {'p95 s':>7} {'p99 s':>7} {'RTF':>7} "
        f"{'audio s/s':>9} {'batch':>5} {'queue ms':>8} {'infer ms':>8}"
    )
    for lv in report["levels"]:
        lat, t = lv["latency_s"], lv["triton"]

        def f(x, spec="7.3f"):
            return format(x, spec) if x is not None else "-".rjust(int(spec.split(".")[0]))

        print(
            f"{lv['concurrency']:>4} {lv['ok']:>4} {lv['errors']:>4} {f(lat.get('p50'))} {f(lat.get('p90'))} "
            f"{f(lat.get('p95'))} {f(lat.get('p99'))} {f(lv['rtf'])} {f(lv['throughput_audio_s_per_s'], '9.2f')} "
            f"{f(t['avg_batch_size'], '5.2f')} {f(t['avg_queue_ms'], '8.1f')} {f(t['avg_compute_infer_ms'], '8.1f')}"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m client bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--url",
        default="localhost:8001",
        help="gRPC address: host:port, grpc://host:port or grpcs://host:port (TLS) (default: %(default)s)",
    )
    p.add_argument(
        "--model",
        default=contract.DEFAULT_MODEL_NAME,
        help="which of the server's F5-TTS models: its short name (fr) or Triton name (f5_tts_fr); see "
        "python -m client --list-models (default: %(default)s)",
    )
    p.add_argument("--manifest", type=Path, help="JSONL requests (default: f5-tts's shipped example)")
    p.add_argument("--concurrency", default="1,2,4,8", help="comma-separated sweep (default: %(default)s)")
    p.add_argument("--requests", type=int, default=16, help="timed requests per level (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=2, help="untimed requests per level (default: %(default)s)")
    p.add_argument("--nfe-step", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--output-dir", type=Path, default=Path("build/bench"), help="JSON report and PNG plots")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--streaming",
        action="store_true",
        help=f"time to first audio ({contract.STREAM_MODEL}, or --model's stream) vs whole-text latency for a long "
        "paragraph",
    )
    p.add_argument(
        "--first-chunk-chars",
        type=int,
        help="with --streaming: UTF-8 bytes of the first chunk, "
        f"sent to both models (default: unset, so the stream uses {contract.STREAM_FIRST_CHUNK_CHARS} and "
        "the whole-text baseline f5-tts's chunking)",
    )
    args = p.parse_args(argv)
    try:
        concurrencies = [int(c) for c in args.concurrency.split(",")]
        if any(c < 1 for c in concurrencies):
            raise ValueError
    except ValueError:
        print(f"bench: --concurrency must be positive integers like 1,2,4,8, got {args.concurrency!r}", file=sys.stderr)
        return 2
    try:
        resolve_endpoint(args.url, "grpc")
    except ValueError as e:
        print(f"bench: error: {e} (bench speaks gRPC: give the gRPC address, e.g. localhost:8001)", file=sys.stderr)
        return 2
    items = load_manifest(args.manifest) if args.manifest else shipped_examples()
    options = SynthesisOptions(nfe_step=args.nfe_step, seed=args.seed)
    if args.streaming:
        item = (
            items[0]
            if args.manifest
            else Item(items[0].audio, items[0].sample_rate, items[0].reference_text, LONG_PARAGRAPH)
        )
        options = SynthesisOptions(nfe_step=args.nfe_step, seed=args.seed, first_chunk_chars=args.first_chunk_chars)
        report = asyncio.run(
            run_streaming_bench(
                args.url, item, concurrencies, args.requests, args.warmup, options, args.timeout, args.model
            )
        )
        args.output_dir.mkdir(parents=True, exist_ok=True)
        (args.output_dir / "streaming.json").write_text(json.dumps(report, indent=2) + "\n")
        print_streaming_table(report)
        print(f"wrote {args.output_dir / 'streaming.json'}")
        return 0
    report = asyncio.run(
        run_bench(
            args.url,
            items,
            concurrencies,
            args.requests,
            args.warmup,
            options,
            args.model,
            args.timeout,
            not args.no_progress,
        )
    )
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    written = [args.output_dir / "report.json"]
    try:
        written += write_plots(report, args.output_dir)
    except ImportError:
        print("bench: matplotlib is not installed; skipping plots", file=sys.stderr)
    print("wrote " + ", ".join(str(w) for w in written))
    return 1 if any(lv["errors"] for lv in report["levels"]) else 0
