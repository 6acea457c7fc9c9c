"""Transcribe references as f5-tts does: Whisper through transformers' ASR pipeline.

f5-tts's `transcribe` (f5_tts.infer.utils_infer) builds
`pipeline("automatic-speech-recognition", model="openai/whisper-large-v3-turbo")` in fp16 on a
CUDA GPU of compute capability 7 or more (fp32 otherwise) and calls it with chunk_length_s=30,
batch_size=128, task "transcribe", no timestamps, and strips the text. `Transcriber` makes the
same pipeline from the files the export copied and calls it the same way, on decoded samples
instead of a file (f5-tts hands it a WAV that ffmpeg decodes and downmixes; here the channels are
averaged, as ffmpeg's mono downmix does, and the pipeline resamples to 16 kHz itself).

Word timestamps, when asked for, are the same pipeline's `return_timestamps="word"` (Whisper's
cross-attention alignment, its generation config's alignment_heads), in a call of their own so that
the transcript stays f5-tts's.

The language, when asked for, is Whisper's own detection (`detect_language`: one decoder step on
the first 30 s), the one its generate() would pick.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import contract

log = logging.getLogger(__name__)

# f5_tts.infer.utils_infer.transcribe's call.
CHUNK_LENGTH_S = 30
BATCH_SIZE = 128
WHISPER_RATE = 16_000


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str  # Whisper's code ("en", "zh", ...); "" when not asked for
    words: tuple[tuple[str, float, float], ...] | None = None  # (word, start s, end s); None when not asked for


@dataclass(frozen=True)
class Clip:
    audio: np.ndarray  # float32 [channels, samples]
    sample_rate: int
    language: str | None = None  # None: Whisper detects it


def f5_dtype(device: torch.device) -> torch.dtype:
    """initialize_asr_pipeline's choice."""
    if device.type == "cuda":
        major = torch.cuda.get_device_properties(device).major
        if major >= 7 and not torch.cuda.get_device_name(device).endswith("[ZLUDA]"):
            return torch.float16
    return torch.float32


class Transcriber:
    def __init__(self, model_dir: Path, device: str = "cpu") -> None:
        from transformers import pipeline

        started = time.monotonic()
        self.device = torch.device(device)
        self.dtype = f5_dtype(self.device)
        self.model_dir = Path(model_dir)
        self.pipe = pipeline(
            "automatic-speech-recognition", model=str(self.model_dir), dtype=self.dtype, device=self.device
        )
        self.languages = {v: k.strip("<|>") for k, v in self.pipe.model.generation_config.lang_to_id.items()}
        log.info(
            "Whisper from %s loaded on %s (%s) in %.1f s",
            model_dir,
            self.device,
            self.dtype,
            time.monotonic() - started,
        )

    def check_language(self, language: str | None) -> str | None:
        """A language code this Whisper knows (or None: detect); RequestError naming the known ones."""
        from pipeline.requests import RequestError

        if language is None or language in self.languages.values():
            return language
        known = ", ".join(sorted(self.languages.values()))
        raise RequestError(
            f"input '{contract.LANGUAGE}' is {language!r}, which this Whisper does not know; known: {known}"
        )

    def transcribe(
        self, clips: Sequence[Clip], detect_language: bool = False, text: bool = True, words: bool = False
    ) -> list[Transcript]:
        """One Transcript per clip, in order; clips asking for the same language share one pipeline call.
        text=False skips the transcript (""), words=True adds the word timestamps."""
        results: list[Transcript | None] = [None] * len(clips)
        groups: dict[str | None, list[int]] = {}
        for i, clip in enumerate(clips):
            groups.setdefault(clip.language, []).append(i)
        for language, members in groups.items():
            inputs = [{"raw": _mono(clips[i].audio), "sampling_rate": clips[i].sample_rate} for i in members]
            kwargs = {"task": "transcribe", "language": language} if language else {"task": "transcribe"}
            outputs = [{"text": ""}] * len(members)
            if text:
                outputs = self.pipe(
                    inputs,
                    chunk_length_s=CHUNK_LENGTH_S,
                    batch_size=BATCH_SIZE,
                    generate_kwargs=kwargs,
                    return_timestamps=False,
                )
            timed = [None] * len(members)
            if words:
                timed = [_words(o) for o in self.pipe(inputs, generate_kwargs=kwargs, return_timestamps="word")]
            detected = self._detect([clips[i] for i in members]) if detect_language and language is None else None
            for k, (i, output) in enumerate(zip(members, outputs)):
                code = language or (detected[k] if detected else "")
                results[i] = Transcript(output["text"].strip(), code, timed[k])
        return results

    def _detect(self, clips: Sequence[Clip]) -> list[str]:
        import torchaudio

        features = []
        for clip in clips:
            wave = torch.from_numpy(_mono(clip.audio))
            if clip.sample_rate != WHISPER_RATE:
                wave = torchaudio.functional.resample(wave, clip.sample_rate, WHISPER_RATE)
            features.append(wave[: CHUNK_LENGTH_S * WHISPER_RATE].numpy())
        extracted = self.pipe.feature_extractor(features, sampling_rate=WHISPER_RATE, return_tensors="pt")
        with torch.no_grad():
            ids = self.pipe.model.detect_language(extracted.input_features.to(self.device, self.dtype))
        return [self.languages.get(int(i), "") for i in ids.flatten()]

    def warm_up(self) -> float:
        """One transcription of a second of quiet noise, so the first request does not pay for the first call."""
        started = time.monotonic()
        noise = np.random.default_rng(0).standard_normal((1, WHISPER_RATE)).astype(np.float32) * 0.01
        self.transcribe([Clip(noise, WHISPER_RATE)], detect_language=True)
        return time.monotonic() - started


def _words(output: dict) -> tuple[tuple[str, float, float], ...]:
    """The pipeline's word chunks as (word, start, end); a missing end (audio cut mid-word) is its start."""
    out = []
    for chunk in output.get("chunks", ()):
        start, end = chunk["timestamp"]
        start = float(start or 0.0)
        out.append((chunk["text"].strip(), start, float(end) if end is not None else start))
    return tuple(w for w in out if w[0])


def _mono(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    return np.ascontiguousarray(audio.mean(axis=0) if audio.ndim == 2 else audio)
