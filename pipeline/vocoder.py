"""The ONNX Vocos vocoder under onnxruntime (CUDA EP on GPU, CPU EP otherwise)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

import contract
from pipeline.requests import RequestError


def check_mel(mel: np.ndarray) -> np.ndarray:
    """A vocoder request's mel [batch, 100, frames] as float32; RequestError for one it cannot decode."""
    mel = np.asarray(mel)
    if mel.ndim != 3 or mel.shape[1] != contract.N_MELS:
        raise RequestError(f"input '{contract.MEL}' must be [batch, {contract.N_MELS}, frames], "
                           f"got shape {list(mel.shape)}")
    if not np.isfinite(mel).all():
        raise RequestError(f"input '{contract.MEL}' contains NaN or Inf")
    return np.ascontiguousarray(mel, dtype=np.float32)


def onnxruntime_without_telemetry():
    """The onnxruntime module, started with its telemetry off: onnxruntime 1.32 reports to Microsoft's
    event service (mobile.events.data.microsoft.com) from Linux too, which a server must not do. The
    switch is read when onnxruntime starts, so import onnxruntime only through this function."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime

    return onnxruntime


def onnx_session(path: Path, options=None, providers=("CPUExecutionProvider",)):
    return onnxruntime_without_telemetry().InferenceSession(str(path), options, providers=list(providers))


class OnnxVocoder:
    def __init__(self, path: Path, device: str = "cpu", threads: int = 0) -> None:
        ort = onnxruntime_without_telemetry()

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"vocoder {path} is missing; re-run `python -m export`")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        if device.startswith("cuda"):
            device_id = int(device.split(":")[1]) if ":" in device else 0
            available = ort.get_available_providers()
            if "CUDAExecutionProvider" not in available:
                raise RuntimeError(f"vocoder on {device} needs onnxruntime-gpu (CUDAExecutionProvider); "
                                   f"available providers: {available}. Install requirements/gpu.txt")
            providers = [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        self.session = onnx_session(path, options, providers)

    def __call__(self, mels: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Each mel [100, frames] -> its waveform, decoded alone (no padding effects)."""
        return [self.decode_batch(mel[None])[0] for mel in mels]

    def decode_batch(self, mel: np.ndarray) -> np.ndarray:
        """[batch, 100, frames] -> [batch, (frames - 1) * 256] (Vocos's "center" ISTFT head; frames * 256 for
        a "same" head)."""
        mel = np.ascontiguousarray(mel, dtype=np.float32)
        return self.session.run([contract.WAVEFORM], {contract.MEL: mel})[0]
