"""Reference audio in, WAV out (16-bit PCM, one conversion for every writer: to_int16)."""

from __future__ import annotations

import os
import secrets
import wave
from pathlib import Path

import numpy as np
import soundfile as sf


def load_audio(path: str | Path, what: str = "reference audio") -> tuple[np.ndarray, int]:
    """Any file soundfile reads (WAV, FLAC, OGG, ...) -> float32 [channels, samples], sample rate.
    `what` names the file in the errors ("reference audio file x.wav does not exist")."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{what} file {path} does not exist")
    if path.is_dir():
        raise ValueError(f"{what} {path} is a directory, not an audio file")
    if not os.access(path, os.R_OK):
        raise ValueError(f"{what} file {path} is not readable (permission denied)")
    try:
        data, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise ValueError(f"cannot read {what} {path}: {e}") from e
    return np.ascontiguousarray(data.T), int(sample_rate)


def write_wav_atomic(path: str | Path, waveform: np.ndarray, sample_rate: int) -> None:
    """Write a 16-bit mono PCM WAV via a temp file + rename: no partial file on failure.

    The same writer and the same conversion (pcm16) as ProgressiveWav: a whole answer and a
    streamed one of the same audio give the same bytes. The temp file is created with mode 0666
    minus the umask, as open() would create the file itself (mkstemp's 0600 would survive the
    rename).
    """
    path = Path(path)
    waveform = np.asarray(waveform)
    if waveform.ndim != 1:  # refused rather than interleaved under a mono header
        raise ValueError(f"write_wav_atomic writes mono: give a 1-D waveform, got shape {list(waveform.shape)}")
    frames = pcm16(waveform)  # before any file exists: a bad waveform leaves nothing behind
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as out, _wav_writer(out, sample_rate) as wav:
            wav.writeframes(frames)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class ProgressiveWav:
    """A 16-bit mono WAV written piece by piece. The stdlib writer rewrites the header's sizes
    after every piece, so the file is a valid WAV of what has arrived while the rest is still
    being synthesized (a player or another process can read it)."""

    def __init__(self, path: str | Path, sample_rate: int) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._out = open(path, "wb")
        self._file = _wav_writer(self._out, sample_rate)

    def write(self, samples: np.ndarray) -> None:
        self._file.writeframes(pcm16(samples))
        self._out.flush()  # the frames and the patched header reach the file now

    def close(self) -> None:
        self._file.close()
        self._out.close()


def _wav_writer(out, sample_rate: int) -> wave.Wave_write:
    """The stdlib's WAV writer, mono 16-bit: the one header both writers produce."""
    wav = wave.open(out, "wb")
    wav.setnchannels(1)
    wav.setsampwidth(2)
    wav.setframerate(sample_rate)
    return wav


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float audio in [-1, 1] -> 16-bit samples: clipped to [-1, 1], scaled by 32767 and rounded to
    the nearest integer (halves to even). The one conversion of every writer here (WAV files, raw
    PCM on stdout, the gateway's encoders): truncating instead would shift half the samples by
    one step towards zero, and two writers that disagree give different files for the same audio."""
    samples = np.asarray(samples)
    # In float64 a float32 sample times 32767 is exact, so the rounding alone decides (a float32 product
    # can land a value on the wrong side of a half).
    return np.rint(np.clip(samples.astype(np.float64), -1.0, 1.0) * 32767).astype("<i2")


def pcm16(samples: np.ndarray) -> bytes:
    """Raw 16-bit little-endian PCM (what `aplay -f S16_LE` and `ffplay -f s16le` read); see to_int16."""
    return to_int16(samples).tobytes()
