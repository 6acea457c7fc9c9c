"""The vocoder: Vocos as ONNX under onnxruntime (CPU, the `vocoder` model, images with onnxruntime-gpu), or
PyTorch Vocos on the device where the mels already are (GPU instances of `f5_tts`)."""

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
        raise RequestError(
            f"input '{contract.MEL}' must be [batch, {contract.N_MELS}, frames], got shape {list(mel.shape)}"
        )
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
                raise RuntimeError(
                    f"vocoder on {device} needs onnxruntime-gpu (CUDAExecutionProvider); "
                    f"available providers: {available}. Install requirements/gpu.txt"
                )
            providers = [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        self.session = onnx_session(path, options, providers)

    def __call__(self, mels: Sequence) -> list[np.ndarray]:
        """Each mel [100, frames] (numpy, or a torch tensor: copied to the host) -> its waveform, decoded alone
        (no padding effects)."""
        return [self.decode_batch(_on_host(mel)[None])[0] for mel in mels]

    def decode_batch(self, mel: np.ndarray) -> np.ndarray:
        """[batch, 100, frames] -> [batch, (frames - 1) * 256] (Vocos's "center" ISTFT head; frames * 256 for
        a "same" head)."""
        mel = np.ascontiguousarray(mel, dtype=np.float32)
        return self.session.run([contract.WAVEFORM], {contract.MEL: mel})[0]


def _on_host(mel) -> np.ndarray:
    return mel.detach().cpu().numpy() if hasattr(mel, "detach") else mel


class TorchVocoder:
    """PyTorch Vocos (loaded by f5-tts's own `load_vocoder`) on the mels where they are.

    All mels of a call are decoded in one batch, and each equals its decode alone: Vocos's
    backbone mixes frames only in its convolutions, so zeroing the padded frames before each
    of them makes padding invisible (a lone mel's convolutions pad with zeros too); the ISTFT
    head then runs per mel on its own frames (its overlap-add would spread into padding). The
    waveforms leave the device in one copy.
    """

    def __init__(self, directory: Path, device: str = "cpu") -> None:
        import torch
        from f5_tts.infer.utils_infer import load_vocoder

        directory = Path(directory)
        for name in (contract.VOCOS_CONFIG_FILE, contract.VOCOS_WEIGHTS_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"vocoder {directory / name} is missing; re-run `python -m export`")
        self.device = torch.device(device)
        self.vocos = load_vocoder("vocos", is_local=True, local_path=str(directory), device=str(self.device))
        if self.vocos.backbone.adanorm:
            raise ValueError(f"{directory}: a Vocos with adaptive layer norm (EnCodec features) is not supported")

    def __call__(self, mels: Sequence) -> list[np.ndarray]:
        """mels [100, frames] (tensors or numpy, fp32) -> waveforms [(frames - 1) * 256] (centred head)."""
        import torch

        with torch.inference_mode():
            mels = [torch.as_tensor(m, dtype=torch.float32, device=self.device) for m in mels]
            if not mels:
                return []
            frames = torch.tensor([m.shape[-1] for m in mels], device=self.device)
            batch = torch.nn.utils.rnn.pad_sequence([m.T for m in mels], batch_first=True).transpose(1, 2)
            keep = (torch.arange(batch.shape[-1], device=self.device)[None, :] < frames[:, None])[:, None, :]
            backbone = self.vocos.backbone
            x = backbone.norm(backbone.embed(batch).transpose(1, 2)).transpose(1, 2) * keep
            for block in backbone.convnext:
                x = block(x) * keep
            x = backbone.final_layer_norm(x.transpose(1, 2))
            waves = [self.vocos.head(x[i : i + 1, :n])[0] for i, n in enumerate(frames.tolist())]
            lengths = [len(w) for w in waves]
            flat = torch.cat(waves).cpu().numpy()
        return list(np.split(flat, np.cumsum(lengths)[:-1]))
