"""Vocos -> ONNX with an exportable ISTFT, checked against PyTorch Vocos.

Vocos's ISTFT head uses complex tensors and irfft, which the ONNX exporter cannot
express. `_OverlapAddISTFT` computes the same "same"-padded ISTFT as one transposed
convolution whose kernels are the windowed inverse-DFT basis (irfft + window +
overlap-add in one op), normalised by the window envelope.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import contract

ONNX_OPSET = 17
MAX_ABS_ERROR = 1e-3  # fp32 ONNX vs PyTorch Vocos; export fails above this


HUB_VOCOS = "charactr/vocos-mel-24khz"  # what f5-tts's load_vocoder fetches


class VocoderError(ValueError):
    pass


def load_vocos(local_dir: Path | None):
    """A local Vocos directory (config.yaml + pytorch_model.bin), or charactr/vocos-mel-24khz from the hub."""
    from f5_tts.infer.utils_infer import load_vocoder

    if local_dir is not None:
        local_dir = Path(local_dir)
        for name in ("config.yaml", "pytorch_model.bin"):
            if not (local_dir / name).is_file():
                raise VocoderError(f"vocoder directory {local_dir} has no {name} (a Vocos directory holds "
                                   "config.yaml and pytorch_model.bin)")
        return load_vocoder("vocos", is_local=True, local_path=str(local_dir), device="cpu")
    from export.hub import fetch

    hint = "pass --vocoder DIR with a local Vocos directory (config.yaml + pytorch_model.bin), or use --demo-tiny"
    config = fetch(HUB_VOCOS, "config.yaml", hint)
    fetch(HUB_VOCOS, "pytorch_model.bin", hint)
    return load_vocoder("vocos", is_local=True, local_path=str(config.parent), device="cpu")


class _OverlapAddISTFT(nn.Module):
    def __init__(self, istft) -> None:
        super().__init__()
        if istft.padding != "same":
            raise VocoderError(f"Vocos ISTFT padding {istft.padding!r} is not supported (only 'same')")
        n_fft, self.hop, win = istft.n_fft, istft.hop_length, istft.win_length
        if win != n_fft:
            raise VocoderError("Vocos ISTFT with win_length != n_fft is not supported")
        window = istft.window.detach().double()
        bins = n_fft // 2 + 1
        k = torch.arange(bins, dtype=torch.float64)[:, None]
        n = torch.arange(n_fft, dtype=torch.float64)[None, :]
        angle = 2 * math.pi * k * n / n_fft
        # irfft (norm="backward"): DC and Nyquist count once, other bins twice.
        weight = torch.full((bins, 1), 2.0, dtype=torch.float64)
        weight[0] = weight[-1] = 1.0
        cos_basis = weight * torch.cos(angle) / n_fft * window
        sin_basis = -weight * torch.sin(angle) / n_fft * window
        self.register_buffer("basis", torch.cat([cos_basis, sin_basis])[:, None, :].float())
        self.register_buffer("window_sq", window.square()[None, None, :].float())
        self.pad = (win - self.hop) // 2

    def forward(self, real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
        y = F.conv_transpose1d(torch.cat([real, imag], dim=1), self.basis, stride=self.hop)
        envelope = F.conv_transpose1d(torch.ones_like(real[:, :1]), self.window_sq, stride=self.hop)
        return (y / envelope)[:, 0, self.pad:-self.pad]


class ExportableVocos(nn.Module):
    """Vocos.decode (backbone + ISTFT head) without complex tensors."""

    def __init__(self, vocos) -> None:
        super().__init__()
        self.backbone = vocos.backbone
        self.out = vocos.head.out
        self.istft = _OverlapAddISTFT(vocos.head.istft)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.out(self.backbone(mel)).transpose(1, 2)
        mag, phase = x.chunk(2, dim=1)
        mag = torch.exp(mag).clip(max=1e2)  # as vocos.heads.ISTFTHead
        return self.istft(mag * torch.cos(phase), mag * torch.sin(phase))


def export_onnx(vocos, path: Path) -> None:
    module = ExportableVocos(vocos).eval()
    example = torch.randn(2, contract.N_MELS, 64)
    with torch.no_grad():
        torch.onnx.export(
            module, (example,), str(path), opset_version=ONNX_OPSET, dynamo=False,
            input_names=[contract.MEL], output_names=[contract.WAVEFORM],
            dynamic_axes={contract.MEL: {0: "batch", 2: "frames"}, contract.WAVEFORM: {0: "batch", 1: "samples"}},
        )


def check_onnx(vocos, path: Path, mel: torch.Tensor) -> float:
    """Max |ONNX - PyTorch Vocos.decode| on `mel` [B, 100, T]; raises if above MAX_ABS_ERROR."""
    import onnxruntime as ort

    with torch.no_grad():
        expected = vocos.decode(mel).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([contract.WAVEFORM], {contract.MEL: mel.numpy().astype(np.float32)})[0]
    if got.shape != expected.shape:
        raise VocoderError(f"ONNX vocoder output shape {got.shape} != PyTorch Vocos {expected.shape}")
    error = float(np.max(np.abs(got - expected)))
    if not error <= MAX_ABS_ERROR:
        raise VocoderError(f"ONNX vocoder differs from PyTorch Vocos: max |error| {error:.2e} > {MAX_ABS_ERROR:.0e}")
    return error
