"""Half precision vs fp32, whole requests end to end, side by side in one process.

One exported repository (random-init weights of the chosen architecture, full-size Vocos
for real architectures), one Synthesizer per dtype over the same weights; the same
requests (same seeds) go through each in turn, interleaved round by round so that a
noisy machine slows every variant alike. Reports each dtype's median latency, its
speedup over fp32, and how far its mel and waveform are from fp32's (relative L2 and
max |difference|, the latter also relative to fp32's peak).

  python -m bench.precision --arch F5TTS_v1_Base --dtypes fp32 bf16 --nfe 16 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import contract
from bench import save_report
from bench.pipeline import _machine, _request, build_repository, exported_parameters
from export.repository import REFERENCE_WAV
from pipeline.synthesizer import Synthesizer
from pipeline.vocoder import OnnxVocoder

TEXT = "I don't really care what you call me. I've been a silent spectator, watching species evolve."


def difference(got: np.ndarray, want: np.ndarray) -> dict:
    """Relative L2 and max |got - want| (also relative to want's peak); lengths must match."""
    if got.shape != want.shape:
        raise ValueError(f"shapes differ: {got.shape} vs {want.shape}")
    diff = got.astype(np.float64) - want.astype(np.float64)
    peak = float(np.abs(want).max()) or 1.0
    return {
        "rel_l2": float(np.linalg.norm(diff) / (np.linalg.norm(want) or 1.0)),
        "max_abs": float(np.abs(diff).max()),
        "max_rel_peak": float(np.abs(diff).max() / peak),
    }


class _Recording:
    """The vocoder, keeping the last mels it was given (the DiT's output, before vocoding)."""

    def __init__(self, vocode) -> None:
        self.vocode, self.mels = vocode, []

    def __call__(self, mels):
        self.mels = [np.asarray(m.cpu().numpy() if isinstance(m, torch.Tensor) else m) for m in mels]
        return self.vocode(mels)


def run(
    arch: str, dtypes: list[str], nfe: int, rounds: int, work: Path, text: str = TEXT, warm_up: bool = True
) -> dict:
    import soundfile as sf

    repo, *_ = build_repository(arch, work, "cpu")
    params = exported_parameters(repo)
    onnx = OnnxVocoder(repo / contract.VOCODER_MODEL / contract.MODEL_VERSION / contract.VOCODER_ONNX_FILE)
    synths = {}
    for dtype in dtypes:
        synths[dtype] = Synthesizer.from_directory(
            repo / contract.TTS_MODEL / contract.MODEL_VERSION,
            _Recording(onnx),
            dtype=dtype,
            max_batch_chunks=params.max_batch_chunks,
        )
    audio, sr = sf.read(str(REFERENCE_WAV), dtype="float32", always_2d=True)
    request = _request(np.ascontiguousarray(audio.T), sr, text, nfe, 7)
    for synth in synths.values() if warm_up else ():  # allocators, kernels, reference cache
        synth.synthesize([request])
    times: dict[str, list[float]] = {d: [] for d in dtypes}
    outputs = {}
    for r in range(rounds):
        for dtype, synth in synths.items():
            t = time.perf_counter()
            [speech] = synth.synthesize([request])
            times[dtype].append(time.perf_counter() - t)
            outputs[dtype] = (synth.vocode.mels, speech.waveform)
            print(f"round {r + 1}/{rounds} {dtype}: {times[dtype][-1]:.2f} s", flush=True)
    base = dtypes[0]
    rows = []
    for dtype in dtypes:
        mels, wave = outputs[dtype]
        row = {
            "dtype": dtype,
            "median_s": statistics.median(times[dtype]),
            "times_s": times[dtype],
            "speedup_vs_" + base: statistics.median(times[base]) / statistics.median(times[dtype]),
            "audio_s": len(wave) / contract.SAMPLE_RATE,
            "mel_vs_" + base: difference(np.concatenate(mels, axis=-1), np.concatenate(outputs[base][0], axis=-1)),
            "wave_vs_" + base: difference(wave, outputs[base][1]),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {
        "arch": arch,
        "nfe": nfe,
        "rounds": rounds,
        "warm_up": warm_up,
        "text": text,
        "reference": REFERENCE_WAV.name,
        "parameters": sum(p.numel() for p in synths[base].cfm.transformer.parameters()),
        "rows": rows,
        "machine": _machine("cpu"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.precision", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--arch", default="tiny", help="tiny, or an f5-tts config name (F5TTS_v1_Base)")
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], help="the first is the baseline")
    p.add_argument("--nfe", type=int, default=16)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--text", default=TEXT)
    p.add_argument(
        "--no-warm-up",
        dest="warm_up",
        action="store_false",
        help="no untimed request first (for a full-size model on a slow machine)",
    )
    p.add_argument("--output", type=Path, default=Path("build/bench_precision"))
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as tmp:
        report = run(args.arch, args.dtypes, args.nfe, args.rounds, Path(tmp), args.text, args.warm_up)
    print(f"wrote {save_report(args.output, f'precision_{args.arch}_cpu', report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
