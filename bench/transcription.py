"""What transcribing a reference costs, and what the transcript cache saves per repeated request.

python -m bench.transcription --arch tiny|turbo [--tokens 30] [--repeats 3] [--output docs/benchmarks]

The Whisper is openai/whisper-large-v3-turbo's architecture ("turbo": 809 M parameters, 32 encoder
and 4 decoder layers, width 1280) or the tests' tiny one, with random weights: they run at the speed
of trained ones, but never say <|endoftext|>, so the decoder is stopped after --tokens tokens (a 5-12 s
reference is some 15-40 tokens of English). The call is pipeline.transcriber's, f5-tts's own. A
cache hit costs the reference's content hash and a dictionary lookup (pipeline.transcripts).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent


def _whisper(arch: str, directory: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from whisper_fixture import build_tiny_whisper

    if arch == "tiny":
        return build_tiny_whisper(directory)
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    tiny = build_tiny_whisper(directory)  # the tokenizer, feature extractor and generation config
    config = WhisperConfig.from_pretrained(tiny)
    for key, value in dict(
        d_model=1280,
        encoder_layers=32,
        encoder_attention_heads=20,
        encoder_ffn_dim=5120,
        decoder_layers=4,
        decoder_attention_heads=20,
        decoder_ffn_dim=5120,
        init_std=0.02,
    ).items():
        setattr(config, key, value)
    model = WhisperForConditionalGeneration(config).to(torch.float16)  # stored as the release stores it
    model.generation_config = WhisperForConditionalGeneration.from_pretrained(tiny).generation_config
    model.generation_config.alignment_heads = [[2, 0]]
    model.save_pretrained(directory)
    return directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transcription", description=__doc__)
    parser.add_argument("--arch", choices=("tiny", "turbo"), default="tiny")
    parser.add_argument("--tokens", type=int, default=30, help="decoder tokens per transcription")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, help="directory for transcription_<arch>_cpu.json")
    args = parser.parse_args(argv)

    import torch

    import contract
    from export.repository import REFERENCE_WAV
    from pipeline.reference import f5_preprocess_audio
    from pipeline.requests import parse_request
    from pipeline.transcriber import BATCH_SIZE, CHUNK_LENGTH_S, Clip, Transcriber
    from pipeline.transcripts import TranscriptCache

    audio, rate = sf.read(str(REFERENCE_WAV), dtype="float32", always_2d=True)
    audio = np.ascontiguousarray(audio.T)
    clip, clip_rate, _ = f5_preprocess_audio(audio, rate)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        transcriber = Transcriber(_whisper(args.arch, Path(tmp) / "whisper"))
        load_s = time.monotonic() - started
        parameters = sum(p.numel() for p in transcriber.pipe.model.parameters())

        def transcribe(clips):
            inputs = [{"raw": c.audio.mean(axis=0), "sampling_rate": c.sample_rate} for c in clips]
            outputs = transcriber.pipe(
                inputs,
                chunk_length_s=CHUNK_LENGTH_S,
                batch_size=BATCH_SIZE,
                generate_kwargs={"task": "transcribe", "max_new_tokens": args.tokens},
                return_timestamps=False,
            )
            return [o["text"].strip() or "x" for o in outputs]

        transcribe([Clip(clip, clip_rate)])  # warm-up, as the model's initialize() does
        times = []
        for _ in range(args.repeats):
            started = time.monotonic()
            transcribe([Clip(clip, clip_rate)])
            times.append(time.monotonic() - started)

        tensors = {
            contract.REFERENCE_AUDIO: audio,
            contract.REFERENCE_SAMPLE_RATE: np.array([rate], dtype=np.int32),
            contract.TARGET_TEXT: np.array([b"Hello."], dtype=object),
        }
        request = parse_request(tensors)
        cache = TranscriptCache(transcribe, size=32)
        cache.fill([request])  # the miss
        hits = []
        for _ in range(max(args.repeats, 20)):
            started = time.monotonic()
            cache.fill([request])
            hits.append(time.monotonic() - started)

    result = {
        "arch": args.arch,
        "parameters": parameters,
        "threads": torch.get_num_threads(),
        "reference": REFERENCE_WAV.name,
        "reference_seconds": round(clip.shape[-1] / clip_rate, 2),
        "decoder_tokens": args.tokens,
        "load_s": round(load_s, 2),
        "transcribe_s_median": round(statistics.median(times), 3),
        "transcribe_s": [round(t, 3) for t in times],
        "cache_hit_ms_median": round(statistics.median(hits) * 1000, 3),
    }
    print(json.dumps(result, indent=1))
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / f"transcription_{args.arch}_cpu.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
