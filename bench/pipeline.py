"""In-process benchmark: the exact code path model.py runs vs f5-tts's own `infer_process`.

Same weights (one random-init checkpoint of the chosen architecture: random weights run at
the speed of trained ones), same reference audio, texts and NFE. Reports the time ratio at
batch 1 and throughput (generated audio seconds per wall second) at several batch sizes of
mixed-length requests: ours is one `Synthesizer.synthesize` call per batch (what one dynamic
batch costs in `execute()`), f5-tts runs the same requests one after another (it has no
request batching).

  python -m bench.pipeline --arch tiny --nfe 16 --batches 1,4,8,16 --output build/bench_pipeline
  python -m bench.pipeline --arch F5TTS_v1_Base --device cuda --nfe 16 32 --batches 1,4,16

f5-tts's infer_process reads the reference with torchaudio.load, which needs FFmpeg through
torchcodec on this machine; the benchmark points torchaudio.load at soundfile (same samples).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

import contract
from contract.parameters import TtsParameters
from export.__main__ import request_from_argv
from export.api import export_model
from export.demo import write_random_sources
from export.repository import REFERENCE_TEXT, REFERENCE_WAV
from pipeline.f5_model import ModelConfig, default_vocab_file
from pipeline.requests import parse_request
from pipeline.synthesizer import Synthesizer
from pipeline.vocoder import OnnxVocoder

# Mixed lengths: one short, two medium, one long (multi-chunk) target.
TEXTS = [
    "Hello there, this is a short one.",
    "I don't really care what you call me. I've been a silent spectator, watching species evolve.",
    "Empires rise and fall, and through it all the rivers carve their valleys without asking.",
    "But always remember, I am mighty and enduring. Respect me and I'll nurture you; ignore me and you shall "
    "face the consequences. The winds shape the mountains, and the seasons turn without asking anyone for "
    "permission, year after year, as they always have and always will.",
]


def build_repository(arch: str, work: Path, device: str) -> tuple[Path, Path, Path, Path]:
    """Export a random-init model of `arch` (tiny | an f5-tts config name); returns repo, ckpt, config, vocos."""
    config, ckpt, vocos = write_random_sources(arch, work)
    repo = work / "repo"
    kind = "gpu" if device.startswith("cuda") else "cpu"
    export_model(
        request_from_argv(
            [
                "--ckpt",
                str(ckpt),
                "--model-config",
                str(config),
                "--vocoder",
                str(vocos),
                "--output",
                str(repo),
                "--device",
                kind,
            ]
        )
    )
    return repo, ckpt, config, vocos


def exported_parameters(repo: Path) -> TtsParameters:
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2 as pb

    cfg = text_format.Parse((repo / contract.TTS_MODEL / "config.pbtxt").read_text(), pb.ModelConfig())
    return TtsParameters.from_triton(json_format.MessageToDict(cfg, preserving_proto_field_name=True)["parameters"])


def _request(audio, sr, text, nfe, seed):
    return parse_request(
        {
            contract.REFERENCE_AUDIO: audio[None],
            contract.REFERENCE_SAMPLE_RATE: np.array([[sr]]),
            contract.REFERENCE_TEXT: np.array([[REFERENCE_TEXT.encode()]], dtype=object),
            contract.TARGET_TEXT: np.array([[text.encode()]], dtype=object),
            contract.NFE_STEP: np.array([[nfe]]),
            contract.SEED: np.array([[seed]]),
        }
    )


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device, repeats):
    times, result = [], None
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        result = fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def run(
    arch: str,
    device: str,
    nfes: list[int],
    batches: list[int],
    repeats: int,
    work: Path,
    max_batch_chunks: int | None = None,
) -> dict:
    import f5_tts.infer.utils_infer as utils_infer
    from f5_tts.model import DiT

    def sf_load(path, *args, **kwargs):  # torchaudio.load without FFmpeg
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        return torch.from_numpy(data.T.copy()), rate

    utils_infer.torchaudio.load = sf_load

    repo, ckpt, config, vocos_dir = build_repository(arch, work, device)
    params = exported_parameters(repo)  # what model.py reads from config.pbtxt
    ours = Synthesizer.from_directory(
        repo / contract.TTS_MODEL / "1",
        OnnxVocoder(repo / contract.VOCODER_MODEL / contract.MODEL_VERSION / contract.VOCODER_ONNX_FILE, device=device),
        device=device,
        parameters=params,
    )
    if max_batch_chunks is not None:
        ours.max_batch_chunks = max_batch_chunks
    model = utils_infer.load_model(
        DiT, ModelConfig.load(config).arch, str(ckpt), vocab_file=str(default_vocab_file()), device=device
    )
    model = model.float()  # f5-tts picks fp16 on CUDA by default; compare like with like (fp32)
    vocoder = utils_infer.load_vocoder("vocos", is_local=True, local_path=str(vocos_dir), device=device)
    ref_path, ref_text = utils_infer.preprocess_ref_audio_text(
        str(REFERENCE_WAV), REFERENCE_TEXT, show_info=lambda *_: None
    )
    audio, sr = sf.read(str(REFERENCE_WAV), dtype="float32", always_2d=True)
    audio = np.ascontiguousarray(audio.T)

    def f5tts(text, nfe):
        wave, rate, _ = utils_infer.infer_process(
            ref_path,
            ref_text,
            text,
            model,
            vocoder,
            nfe_step=nfe,
            show_info=lambda *_: None,
            progress=None,
            device=device,
        )
        return len(wave) / rate

    results = []
    for nfe in nfes:
        _request_list = [_request(audio, sr, TEXTS[i % len(TEXTS)], nfe, i) for i in range(max(batches))]
        ours.synthesize(_request_list[:2])  # warm-up
        f5tts(TEXTS[0], nfe)
        for b in batches:
            reqs = _request_list[:b]
            t_ours, waves = timed(lambda reqs=reqs: ours.synthesize(reqs), device, repeats)
            audio_s = sum(len(w.waveform) for w in waves) / contract.SAMPLE_RATE
            t_f5, audio_f5 = timed(
                lambda nfe=nfe, reqs=reqs: sum(f5tts(r.target_text, nfe) for r in reqs), device, repeats
            )
            row = {
                "nfe": nfe,
                "batch": b,
                "ours_s": t_ours,
                "f5tts_s": t_f5,
                "audio_s": audio_s,
                "ours_throughput": audio_s / t_ours,
                "f5tts_throughput": audio_f5 / t_f5,
                "ours_rtf": t_ours / audio_s,
                "f5tts_rtf": t_f5 / audio_f5,
                "speedup": t_f5 / t_ours,
            }
            print(
                f"nfe {nfe:>3} batch {b:>2}: ours {t_ours:7.2f} s  f5-tts {t_f5:7.2f} s  "
                f"audio {audio_s:6.1f} s  throughput {row['ours_throughput']:6.2f} vs {row['f5tts_throughput']:6.2f} "
                f"audio-s/s  speedup x{row['speedup']:.2f}",
                flush=True,
            )
            results.append(row)
    n_params = sum(p.numel() for p in ours.cfm.transformer.parameters())
    return {
        "arch": arch,
        "parameters": n_params,
        "device": device,
        "repeats": repeats,
        "max_batch_chunks": ours.max_batch_chunks,
        "rows": results,
        "machine": _machine(device),
    }


def _machine(device: str) -> dict:
    from importlib import metadata

    info = {
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cores": torch.get_num_threads(),
        "torch": torch.__version__,
        "f5-tts": metadata.version("f5-tts"),
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for nfe in sorted({r["nfe"] for r in report["rows"]}):
        rows = [r for r in report["rows"] if r["nfe"] == nfe]
        ax.plot([r["batch"] for r in rows], [r["ours_throughput"] for r in rows], "o-", label=f"ours, NFE {nfe}")
        ax.plot([r["batch"] for r in rows], [r["f5tts_throughput"] for r in rows], "s--", label=f"f5-tts, NFE {nfe}")
    ax.set(
        xlabel="requests per batch",
        ylabel="audio seconds per second",
        title=f"{report['arch']} on {report['machine'].get('gpu', 'CPU')}, "
        f"{report.get('max_batch_chunks', '?')} chunk(s) per DiT call",
    )
    ax.set_xscale("log", base=2)
    batches = sorted({r["batch"] for r in report["rows"]})
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.pipeline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--arch", default="tiny", help="tiny, or an f5-tts config name (F5TTS_v1_Small, F5TTS_v1_Base)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--nfe", type=int, nargs="+", default=[16])
    p.add_argument("--batches", default="1,4,8,16")
    p.add_argument("--repeats", type=int, default=3, help="median of this many runs per point")
    p.add_argument("--max-batch-chunks", type=int, help="override the exported default (cpu 1, gpu 16)")
    p.add_argument("--output", type=Path, default=Path("build/bench_pipeline"))
    args = p.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        report = run(
            args.arch,
            args.device,
            args.nfe,
            [int(b) for b in args.batches.split(",")],
            args.repeats,
            Path(tmp),
            args.max_batch_chunks,
        )
    name = f"{args.arch}_{args.device.split(':')[0]}_chunks{report['max_batch_chunks']}"
    (args.output / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.output / f"{name}.png")
    print(f"wrote {args.output / name}.json and .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
