"""Reference audio and text prepared as f5-tts prepares them before sampling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchaudio

import contract

TARGET_RMS = 0.1  # f5_tts.infer.utils_infer.target_rms


@dataclass(frozen=True)
class Reference:
    audio: torch.Tensor  # [1, samples] at 24 kHz, RMS-normalised when quiet
    rms: float  # RMS before normalisation; output is scaled back when it was < TARGET_RMS
    seconds: float  # length used, after clipping, at the original rate
    text: str  # normalised transcript
    clipped: bool


def normalize_reference_text(text: str) -> str:
    """End with a sentence break, as f5-tts's preprocess_ref_audio_text does."""
    if not text.endswith(". ") and not text.endswith("。"):
        text = text + " " if text.endswith(".") else text + ". "
    return text


def prepare_reference(audio: np.ndarray, sample_rate: int, text: str,
                      clip_seconds: float = contract.LIMITS.reference_clip_seconds) -> Reference:
    """[channels, samples] at any rate -> mono 24 kHz, in f5-tts's order (infer_batch_process):
    downmix, measure RMS, raise quiet audio to TARGET_RMS, resample."""
    max_samples = int(clip_seconds * sample_rate)
    clipped = audio.shape[-1] > max_samples
    wave = torch.from_numpy(np.ascontiguousarray(audio[:, :max_samples], dtype=np.float32))
    seconds = wave.shape[-1] / sample_rate
    if wave.shape[0] > 1:
        wave = torch.mean(wave, dim=0, keepdim=True)
    rms = float(torch.sqrt(torch.mean(torch.square(wave))))
    if rms < TARGET_RMS:
        wave = wave * TARGET_RMS / rms
    if sample_rate != contract.SAMPLE_RATE:
        wave = torchaudio.transforms.Resample(sample_rate, contract.SAMPLE_RATE)(wave)
    return Reference(audio=wave, rms=rms, seconds=seconds, text=normalize_reference_text(text), clipped=clipped)
