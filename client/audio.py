"""Reference audio in, WAV out."""

from __future__ import annotations

import os
import tempfile
import wave
from pathlib import Path

import numpy as np
import soundfile as sf


def load_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Any file soundfile reads (WAV, FLAC, OGG, ...) -> float32 [channels, samples], sample rate."""
    try:
        data, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise ValueError(f"cannot read reference audio {path}: {e}") from e
    return np.ascontiguousarray(data.T), int(sample_rate)


def write_wav_atomic(path: str | Path, waveform: np.ndarray, sample_rate: int) -> None:
    """Write a 16-bit PCM WAV via a temp file + rename: no partial file on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        sf.write(tmp, np.asarray(waveform, dtype=np.float32), sample_rate, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ProgressiveWav:
    """A 16-bit mono WAV written piece by piece. The stdlib writer rewrites the header's sizes
    after every piece, so the file is a valid WAV of what has arrived while the rest is still
    being synthesized (a player or another process can read it)."""

    def __init__(self, path: str | Path, sample_rate: int) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._out = open(path, "wb")
        self._file = wave.open(self._out, "wb")
        self._file.setnchannels(1)
        self._file.setsampwidth(2)
        self._file.setframerate(sample_rate)

    def write(self, samples: np.ndarray) -> None:
        self._file.writeframes(pcm16(samples))
        self._out.flush()  # the frames and the patched header reach the file now

    def close(self) -> None:
        self._file.close()
        self._out.close()


def pcm16(samples: np.ndarray) -> bytes:
    """Raw 16-bit little-endian PCM (what `aplay -f S16_LE` and `ffplay -f s16le` read)."""
    return (np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0) * 32767).astype("<i2").tobytes()
