"""The GPU table in one run: f5-tts's own inference vs this project's engines, same weights, same requests.

F5TTS_v1_Base with random weights (they run at the speed of trained ones), the ~5 s reference
that f5-tts ships, a ~10 s target, NFE 16 and 32, dynamic batches of 1, 4 and 16 requests.
Variants, in the order they run (the most useful first, in case the time budget runs out):

  f5-tts         f5-tts's infer_process, its own load_model (fp16 on CUDA), one request after another
  eager-fp32     this project's Synthesizer (one batched DiT call per dynamic batch), PyTorch Vocos on the device
  eager-fp16     the same in fp16 (the GPU export default)
  compiled-fp16  + torch.compile on length buckets
  graphs-fp16    + CUDA graphs per (batch size, bucket) (on CPU: the tests' stand-in capture)
  eager-bf16     bf16 instead of fp16

Per cell: latency of the whole batch (median), RTF (latency / generated audio seconds),
throughput (audio seconds per second), peak GPU memory, the waveform's difference from
eager-fp32 on the same requests and seeds, and for each variant the warm-up (compile,
capture) seconds and its first request after warm-up vs its steady state.
Results are written after every variant (a run cut short still leaves its table):
$OUT/device_table.json, device_table.md, device_table.png, device_log.txt.

  bash bench/device/run.sh                                   # on a CUDA machine (see bench/device/README.md)
  python -m bench.device.run --arch tiny --device cpu        # the rehearsal's call
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import tempfile
import time
import wave
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

import contract
from export.demo import write_random_sources
from pipeline.f5_model import ModelConfig, build_cfm, default_vocab_file, load_vocab
from pipeline.requests import parse_request
from pipeline.synthesizer import Synthesizer
from pipeline.vocoder import TorchVocoder

REFERENCE_TEXT = "Some call me nature, others call me mother nature."
# ~10 s of speech with the shipped reference (one chunk: under f5-tts's max_chars for it)
TARGET_TEXT = (
    "I don't really care what you call me. I've been a silent spectator, watching species evolve, "
    "empires rise and fall."
)
VARIANTS = ("f5-tts", "eager-fp32", "eager-fp16", "compiled-fp16", "graphs-fp16", "eager-bf16")
BASELINE = "eager-fp32"


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """16-bit PCM WAV -> float32 [channels, samples] (the environment has no soundfile: the stdlib reads it)."""
    with wave.open(str(path), "rb") as f:
        if f.getsampwidth() != 2:
            raise ValueError(f"{path}: {8 * f.getsampwidth()}-bit samples; expected 16-bit PCM")
        frames = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2")
        audio = frames.reshape(-1, f.getnchannels()).T.astype(np.float32) / 32768
        return np.ascontiguousarray(audio), f.getframerate()


def reference_wav() -> Path:
    from importlib.resources import files

    return Path(str(files("f5_tts").joinpath("infer/examples/basic/basic_ref_en.wav")))


class Run:
    """Timing, memory and output bookkeeping for one device run; writes its files after each variant."""

    def __init__(self, device: str, out: Path, budget_s: float) -> None:
        self.device, self.out, self.budget_s = torch.device(device), out, budget_s
        self.started = time.monotonic()
        self.report: dict = {"rows": [], "variants": {}, "skipped": {}, "phases": {}}
        self.waves: dict[tuple[str, int, int], list[np.ndarray]] = {}
        out.mkdir(parents=True, exist_ok=True)
        self.log_file = open(out / "device_log.txt", "a")

    def log(self, line: str) -> None:
        line = f"[{time.monotonic() - self.started:6.1f} s] {line}"
        print(line, flush=True)
        self.log_file.write(line + "\n")
        self.log_file.flush()

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.started)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def reset_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def peak_gib(self) -> float | None:
        return torch.cuda.max_memory_allocated() / 2**30 if self.device.type == "cuda" else None

    def timed(self, fn, min_repeats: int = 1, max_repeats: int = 3, seconds: float = 6.0):
        """Run fn at least min_repeats and at most max_repeats times, stopping once `seconds` are spent."""
        times, result = [], None
        while len(times) < max_repeats and (len(times) < min_repeats or sum(times) < seconds):
            self.sync()
            t = time.perf_counter()
            result = fn()
            self.sync()
            times.append(time.perf_counter() - t)
        return times, result

    def write(self) -> None:
        rows = self.report["rows"]
        for row in rows:  # differences from eager-fp32 on the same requests and seeds
            base = self.waves.get((BASELINE, row["nfe"], row["batch"]))
            got = self.waves.get((row["variant"], row["nfe"], row["batch"]))
            row.update(difference(got, base) if base is not None and got is not None else {})
        (self.out / "device_table.json").write_text(json.dumps(self.report, indent=2) + "\n")
        (self.out / "device_table.md").write_text(markdown(self.report))
        try:
            plot(self.report, self.out / "device_table.png")
        except Exception as e:  # the table matters more than the picture
            self.log(f"plot failed: {type(e).__name__}: {e}")


def difference(got: list[np.ndarray], want: list[np.ndarray]) -> dict:
    if [len(w) for w in got] != [len(w) for w in want]:
        return {"vs_fp32": "lengths differ"}
    g, w = np.concatenate(got).astype(np.float64), np.concatenate(want).astype(np.float64)
    return {
        "vs_fp32_rel_l2": float(np.linalg.norm(g - w) / (np.linalg.norm(w) or 1.0)),
        "vs_fp32_max_rel_peak": float(np.abs(g - w).max() / (np.abs(w).max() or 1.0)),
    }


def markdown(report: dict) -> str:
    m = report.get("machine", {})
    lines = [
        f"# {report.get('arch')} on {m.get('gpu') or 'CPU'}",
        "",
        f"torch {m.get('torch')}, CUDA {m.get('cuda')}, driver {m.get('driver')}, f5-tts {m.get('f5-tts')}, "
        f"Python {m.get('python')}; reference {report.get('reference_s', 0):.2f} s, target text "
        f"{len(TARGET_TEXT)} bytes",
        "",
        "| variant | NFE | batch | latency (s) | RTF | audio-s/s | x f5-tts throughput | peak GPU (GiB) "
        "| vs fp32 rel L2 | vs fp32 max/peak |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    f5 = {(r["nfe"], r["batch"]): r for r in report["rows"] if r["variant"] == "f5-tts"}
    for r in report["rows"]:
        ref = f5.get((r["nfe"], r["batch"]))
        speed = f"x{r['throughput'] / ref['throughput']:.2f}" if ref else "-"
        peak = f"{r['peak_gib']:.1f}" if r.get("peak_gib") is not None else "-"
        l2 = f"{r['vs_fp32_rel_l2']:.2e}" if "vs_fp32_rel_l2" in r else "-"
        mx = f"{r['vs_fp32_max_rel_peak']:.2e}" if "vs_fp32_max_rel_peak" in r else "-"
        lines.append(
            f"| {r['variant']} | {r['nfe']} | {r['batch']} | {r['latency_s']:.3f} | {r['rtf']:.4f} | "
            f"{r['throughput']:.1f} | {speed} | {peak} | {l2} | {mx} |"
        )
    lines += [
        "",
        "| variant | load (s) | warm-up: compile / capture (s) | first request (s) | steady (s) | first / steady |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, v in report["variants"].items():
        lines.append(
            f"| {name} | {v.get('load_s', 0):.1f} | {v.get('warm_up_s', 0):.1f} | "
            f"{v.get('first_request_s', float('nan')):.3f} | {v.get('steady_s', float('nan')):.3f} | "
            f"{v.get('first_over_steady', float('nan')):.2f} |"
        )
    for name, why in report["skipped"].items():
        lines.append(f"\nskipped {name}: {why}")
    if "parity" in report:
        lines.append(f"\nparity, eager-fp16 vs f5-tts (fp16 on CUDA), batch 1, same seed: {report['parity']}")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nfes = sorted({r["nfe"] for r in report["rows"]})
    fig, axes = plt.subplots(1, len(nfes), figsize=(6 * len(nfes), 4), squeeze=False)
    for ax, nfe in zip(axes[0], nfes):
        for variant in VARIANTS:
            rows = [r for r in report["rows"] if r["variant"] == variant and r["nfe"] == nfe]
            if rows:
                ax.plot([r["batch"] for r in rows], [r["throughput"] for r in rows], "o-", label=variant)
        ax.set(
            xlabel="requests per batch",
            ylabel="audio seconds per second",
            xscale="log",
            yscale="log",
            title=f"{report.get('arch')} NFE {nfe} on {report.get('machine', {}).get('gpu') or 'CPU'}",
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def machine(device: torch.device) -> dict:
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpu_threads": torch.get_num_threads(),
    }
    for pkg in ("f5-tts", "numpy", "triton", "vocos", "x-transformers", "datasets", "pyarrow", "transformers"):
        try:
            info[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            info[pkg] = None
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
        try:
            import subprocess

            info["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.strip()
        except Exception:
            info["driver"] = None
    return info


def requests_for(audio: np.ndarray, sr: int, batch: int, nfe: int) -> list:
    return [
        parse_request(
            {
                contract.REFERENCE_AUDIO: audio[None],
                contract.REFERENCE_SAMPLE_RATE: np.array([[sr]]),
                contract.REFERENCE_TEXT: np.array([[REFERENCE_TEXT.encode()]], dtype=object),
                contract.TARGET_TEXT: np.array([[TARGET_TEXT.encode()]], dtype=object),
                contract.NFE_STEP: np.array([[nfe]]),
                contract.SEED: np.array([[1000 + i]]),
            }
        )
        for i in range(batch)
    ]


def run_f5tts(run: Run, config: Path, ckpt: Path, vocos: Path, nfes, batches) -> None:
    """f5-tts's own inference: load_model (its dtype choice: fp16 on CUDA capability >= 7), infer_process."""
    import f5_tts.infer.utils_infer as utils_infer
    from f5_tts.model import DiT
    from f5_tts.model.utils import seed_everything

    def wav_load(path, *args, **kwargs):  # torchaudio.load needs torchcodec/FFmpeg, absent from the environment
        audio, sr = read_wav(Path(path))
        return torch.from_numpy(audio), sr

    utils_infer.torchaudio.load = wav_load
    t = time.perf_counter()
    model = utils_infer.load_model(
        DiT, ModelConfig.load(config).arch, str(ckpt), vocab_file=str(default_vocab_file()), device=str(run.device)
    )
    vocoder = utils_infer.load_vocoder("vocos", is_local=True, local_path=str(vocos), device=str(run.device))
    ref_path, ref_text = utils_infer.preprocess_ref_audio_text(
        str(reference_wav()), REFERENCE_TEXT, show_info=lambda *_: None
    )
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    run.report["variants"]["f5-tts"] = {"load_s": time.perf_counter() - t, "dtype": dtype}
    run.log(f"f5-tts loaded ({dtype})")

    def one(seed: int, nfe: int) -> np.ndarray:
        seed_everything(seed)
        wave_, _, _ = utils_infer.infer_process(
            ref_path,
            ref_text,
            TARGET_TEXT,
            model,
            vocoder,
            nfe_step=nfe,
            show_info=lambda *_: None,
            progress=None,
            device=str(run.device),
        )
        return np.asarray(wave_, dtype=np.float32)

    for nfe in nfes:
        for batch in batches:
            if run.left() < 0:
                run.report["skipped"][f"f5-tts nfe {nfe} batch {batch}"] = "time budget"
                continue
            if (nfe, batch) == (nfes[0], batches[0]):
                one(1000, nfe)  # warm-up
            run.reset_memory()
            times, waves = run.timed(lambda nfe=nfe, batch=batch: [one(1000 + i, nfe) for i in range(batch)])
            add_row(run, "f5-tts", nfe, batch, times, waves)
    model = vocoder = None  # free the GPU memory before the next variant (one() holds these cells)
    free(run)


def add_row(run: Run, variant: str, nfe: int, batch: int, times: list[float], waves: list[np.ndarray]) -> None:
    audio_s = sum(len(w) for w in waves) / contract.SAMPLE_RATE
    latency = statistics.median(times)
    run.waves[(variant, nfe, batch)] = waves
    run.report["rows"].append(
        {
            "variant": variant,
            "nfe": nfe,
            "batch": batch,
            "latency_s": latency,
            "times_s": times,
            "audio_s": audio_s,
            "rtf": latency / audio_s,
            "throughput": audio_s / latency,
            "peak_gib": run.peak_gib(),
        }
    )
    run.log(
        f"{variant:14s} nfe {nfe:2d} batch {batch:2d}: {latency:7.3f} s  RTF {latency / audio_s:.4f}  "
        f"{audio_s / latency:7.1f} audio-s/s" + (f"  peak {run.peak_gib():.1f} GiB" if run.peak_gib() else "")
    )


def free(run: Run) -> None:
    gc.collect()
    if run.device.type == "cuda":
        torch.cuda.empty_cache()


def run_ours(
    run: Run,
    variant: str,
    config: Path,
    ckpt: Path,
    vocos: Path,
    audio,
    sr,
    nfes,
    batches,
    synth: Synthesizer | None = None,
) -> Synthesizer:
    """One of this project's variants; returns its Synthesizer (graphs-fp16 reuses compiled-fp16's compile)."""
    from safetensors.torch import load_file

    from pipeline.engine import DitEngine

    engine, dtype = variant.split("-")
    t = time.perf_counter()
    if synth is None:
        vocab, _ = load_vocab(default_vocab_file())
        cfm = build_cfm(ModelConfig.load(config), vocab)
        state = {k.removeprefix("ema_model."): v for k, v in load_file(str(ckpt)).items() if k.startswith("ema_model.")}
        cfm.load_state_dict(state, strict=False)
        synth = Synthesizer(
            cfm,
            TorchVocoder(vocos, device=str(run.device)),
            device=str(run.device),
            dtype={"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype],
            max_batch_chunks=max(batches),
            engine="eager" if engine == "eager" else "compiled",
        )
    if engine == "graphs":  # the same compiled DiT (no second compile), now captured per (batch size, bucket)
        capture = None if run.device.type == "cuda" else (lambda fn, pool: fn)  # CPU: the tests' stand-in
        compiled = synth.engine._compiled
        synth.engine = DitEngine(
            synth.cfm.transformer,
            engine="compiled",
            device=run.device,
            dtype=synth.dtype,
            max_batch=max(batches),
            cuda_graphs=True,
            compiler=lambda *_, **__: compiled,
            capture=capture,
        )
    load_s = time.perf_counter() - t
    run.reset_memory()
    warm_up_s = synth.warm_up()
    info = {"load_s": load_s, "warm_up_s": warm_up_s, "peak_gib_after_warm_up": run.peak_gib()}
    run.report["variants"][variant] = info
    run.log(f"{variant}: loaded in {load_s:.1f} s, warm-up {warm_up_s:.1f} s")
    first = None
    for nfe in nfes:
        for batch in batches:
            if run.left() < 0:
                run.report["skipped"][f"{variant} nfe {nfe} batch {batch}"] = "time budget"
                continue
            reqs = requests_for(audio, sr, batch, nfe)
            if first is None:  # the first request after warm-up, as a server's first client sees it
                run.sync()
                t = time.perf_counter()
                synth.synthesize(reqs)
                run.sync()
                first = info["first_request_s"] = time.perf_counter() - t
            run.reset_memory()
            times, speech = run.timed(
                lambda reqs=reqs: synth.synthesize(reqs), min_repeats=1 if variant == BASELINE else 2
            )
            if (nfe, batch) == (nfes[0], batches[0]):
                info["steady_s"] = statistics.median(times)
                info["first_over_steady"] = first / info["steady_s"]
            add_row(run, variant, nfe, batch, times, [s.waveform for s in speech])
    return synth


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.device.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--arch", default="F5TTS_v1_Base", help="an f5-tts config name, or tiny (the rehearsal)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--nfe", type=int, nargs="+", default=[16, 32])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--budget-s", type=float, default=420, help="start no new cell after this many seconds")
    p.add_argument("--output", type=Path, default=Path("build/device/out"))
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible; for the CPU rehearsal pass --device cpu --arch tiny")
    run = Run(args.device, args.output, args.budget_s)
    run.report.update(
        arch=args.arch,
        device=args.device,
        nfe=args.nfe,
        batches=args.batches,
        target_text=TARGET_TEXT,
        machine=machine(run.device),
    )
    run.log(f"machine: {json.dumps(run.report['machine'])}")
    audio, sr = read_wav(reference_wav())
    run.report["reference_s"] = audio.shape[1] / sr
    with tempfile.TemporaryDirectory(prefix="device-run-") as tmp:
        t = time.perf_counter()
        config, ckpt, vocos = write_random_sources(args.arch, Path(tmp))
        run.report["phases"]["build_s"] = time.perf_counter() - t
        run.log(f"built {args.arch} with random weights in {run.report['phases']['build_s']:.1f} s")
        synth = None
        for variant in args.variants:
            if run.left() < 0:
                run.report["skipped"][variant] = "time budget"
                continue
            if variant == "graphs-fp16" and "compiled-fp16" not in run.report["variants"]:
                run.report["skipped"][variant] = "needs compiled-fp16 first (it reuses that compile)"
                continue
            try:
                if variant == "f5-tts":
                    run_f5tts(run, config, ckpt, vocos, args.nfe, args.batches)
                else:
                    keep = synth if variant == "graphs-fp16" else None
                    synth = run_ours(run, variant, config, ckpt, vocos, audio, sr, args.nfe, args.batches, keep)
                    if variant not in ("compiled-fp16",):
                        synth = None
                        free(run)
            except Exception as e:  # one failing variant must not cost the others
                import traceback

                run.report["skipped"][variant] = f"{type(e).__name__}: {e}"
                run.log(f"{variant} FAILED:\n{traceback.format_exc()}")
                synth = None
                free(run)
            _parity(run)
            run.write()
    run.report["phases"]["total_s"] = time.monotonic() - run.started
    run.write()
    run.log(f"done in {run.report['phases']['total_s']:.1f} s; wrote {args.output}/device_table.{{json,md,png}}")
    return 0


def _parity(run: Run) -> None:
    """Our fp16 vs f5-tts's own (fp16 on CUDA): same reference, text, seed and dtype, batch 1."""
    for nfe in run.report["nfe"]:
        ours, theirs = run.waves.get(("eager-fp16", nfe, 1)), run.waves.get(("f5-tts", nfe, 1))
        if ours and theirs:
            d = difference(ours, theirs)
            run.report["parity"] = {"nfe": nfe, **{k.replace("vs_fp32", "vs_f5tts"): v for k, v in d.items()}}
            return


if __name__ == "__main__":
    raise SystemExit(main())
