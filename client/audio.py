"""Reference audio in, WAV out."""

from __future__ import annotations

import os
import tempfile
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
