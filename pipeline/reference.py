"""Reference audio and text prepared as f5-tts prepares them before sampling.

f5-tts's entry points (F5TTS.infer, infer_cli, the Gradio app) first run
`preprocess_ref_audio_text` on the reference file: references over 12 s are clipped at a
pause, leading/trailing silence is trimmed and 50 ms of silence appended, on 16-bit PCM
through pydub. That function needs a file and keeps unbounded module-level caches and temp
files, so `f5_preprocess_audio` repeats its audio steps on the decoded samples with the same
pydub calls and parameters (and f5-tts's own `remove_silence_edges`); a test checks it
against f5-tts's function sample for sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchaudio

import contract
from pipeline.requests import RequestError

TARGET_RMS = 0.1  # f5_tts.infer.utils_infer.target_rms
CLIP_MS = int(contract.LIMITS.reference_clip_seconds * 1000)  # preprocess_ref_audio_text clips to 12 s ...
CLIP_MIN_MS = 6_000  # ... at a pause found after the first 6 s
PAUSE_SEARCH = ((1000, -50), (100, -40))  # (min_silence_len ms, silence_thresh dBFS): long, then short pauses
TAIL_SILENCE_MS = 50


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


def _clip_at_pause(segment):
    from pydub import AudioSegment, silence

    for min_silence_len, silence_thresh in PAUSE_SEARCH:
        kept = AudioSegment.silent(duration=0)
        for piece in silence.split_on_silence(
            segment, min_silence_len=min_silence_len, silence_thresh=silence_thresh, keep_silence=1000, seek_step=10
        ):
            if len(kept) > CLIP_MIN_MS and len(kept + piece) > CLIP_MS:
                break
            kept += piece
        if len(kept) <= CLIP_MS:
            return kept
    return kept[:CLIP_MS]


def f5_preprocess_audio(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int, bool]:
    """preprocess_ref_audio_text's audio steps on [channels, samples] float audio.

    Returns (audio [channels, samples] float32, its sample rate, whether it was clipped).
    """
    from f5_tts.infer.utils_infer import remove_silence_edges
    from pydub import AudioSegment

    channels = audio.shape[0]
    pcm = np.clip(np.round(audio.T * 32768.0), -32768, 32767).astype("<i2")  # as a 16-bit WAV holds it
    segment = AudioSegment(pcm.tobytes(), frame_rate=sample_rate, sample_width=2, channels=channels)
    clipped = len(segment) > CLIP_MS
    if clipped:
        segment = _clip_at_pause(segment)
    segment = remove_silence_edges(segment) + AudioSegment.silent(duration=TAIL_SILENCE_MS)
    out = np.frombuffer(segment.raw_data, dtype="<i2").reshape(-1, segment.channels).T
    return out.astype(np.float32) / 32768.0, segment.frame_rate, clipped


def prepare_reference(audio: np.ndarray, sample_rate: int, text: str) -> Reference:
    """[channels, samples] at any rate -> mono 24 kHz, as f5-tts does: preprocess_ref_audio_text's
    audio steps, then infer_batch_process's: downmix, measure RMS, raise quiet audio to
    TARGET_RMS, resample."""
    audio, sample_rate, clipped = f5_preprocess_audio(audio, sample_rate)
    speech_seconds = audio.shape[-1] / sample_rate - TAIL_SILENCE_MS / 1000
    if speech_seconds < contract.LIMITS.min_reference_seconds or not np.any(audio):
        raise RequestError(
            f"input '{contract.REFERENCE_AUDIO}' has {max(speech_seconds, 0):.2f} s of sound above "
            f"-42 dBFS once leading and trailing silence is trimmed (as f5-tts does); at least "
            f"{contract.LIMITS.min_reference_seconds} s of audible speech is needed"
        )
    wave = torch.from_numpy(np.ascontiguousarray(audio))
    seconds = wave.shape[-1] / sample_rate
    if wave.shape[0] > 1:
        wave = torch.mean(wave, dim=0, keepdim=True)
    rms = float(torch.sqrt(torch.mean(torch.square(wave))))
    if rms < TARGET_RMS:
        wave = wave * TARGET_RMS / rms
    if sample_rate != contract.SAMPLE_RATE:
        wave = torchaudio.transforms.Resample(sample_rate, contract.SAMPLE_RATE)(wave)
    return Reference(audio=wave, rms=rms, seconds=seconds, text=normalize_reference_text(text), clipped=clipped)
