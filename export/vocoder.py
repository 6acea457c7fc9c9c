"""Vocos -> ONNX with an exportable ISTFT, checked against PyTorch Vocos.

Vocos's ISTFT head uses complex tensors and irfft, which the ONNX exporter cannot
express. `_OverlapAddISTFT` computes the same ISTFT as one transposed convolution whose
kernels are the windowed inverse-DFT basis (irfft + window + overlap-add in one op),
normalised by the window envelope, then trims the head's padding:
- "center" (charactr/vocos-mel-24khz, what f5-tts uses): torch.istft(center=True) trims
  n_fft // 2 at both ends, so a mel of `frames` gives (frames - 1) * hop samples;
- "same": (win_length - hop) // 2 at both ends, frames * hop samples.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

import contract
from export.errors import ExportError

ONNX_OPSET = 17
MAX_ABS_ERROR = 1e-3  # fp32 ONNX vs PyTorch Vocos; export fails above this


HUB_VOCOS = "charactr/vocos-mel-24khz"  # what f5-tts's load_vocoder fetches
# A Vocos directory, local or on the hub:
CONFIG_FILE, WEIGHTS_FILE = contract.VOCOS_CONFIG_FILE, contract.VOCOS_WEIGHTS_FILE
HEAD_PADDINGS = ("center", "same")


class VocoderError(ExportError):
    pass


def check_config(path: Path) -> dict:
    """Parse a Vocos config.yaml and check that this server can export and serve it (cheap: no weights)."""
    try:
        config = yaml.safe_load(Path(path).read_text())
        extractor, head = config["feature_extractor"]["init_args"], config["head"]
        head_args = head["init_args"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
        raise VocoderError(
            f"{path} is not a Vocos config (needs feature_extractor.init_args and head.init_args): "
            f"{type(e).__name__}: {e}"
        ) from None
    expected = [
        ("feature_extractor.init_args.sample_rate", extractor.get("sample_rate"), contract.SAMPLE_RATE),
        ("feature_extractor.init_args.n_mels", extractor.get("n_mels"), contract.N_MELS),
        ("head.init_args.hop_length", head_args.get("hop_length"), contract.HOP_LENGTH),
    ]
    for key, got, want in expected:
        if got != want:
            raise VocoderError(
                f"{path}: {key} is {got!r}; this server serves {want} (Vocos mel-24khz: 24 kHz, "
                f"{contract.N_MELS} mels, hop {contract.HOP_LENGTH})"
            )
    if not str(head.get("class_path", "")).endswith("ISTFTHead"):
        raise VocoderError(f"{path}: head {head.get('class_path')!r} is not supported (only vocos.heads.ISTFTHead)")
    if head_args.get("padding", "same") not in HEAD_PADDINGS:
        raise VocoderError(
            f"{path}: ISTFT head padding {head_args.get('padding')!r} is not supported "
            f"(supported: {', '.join(HEAD_PADDINGS)})"
        )
    return config


def resolve_vocoder(local_dir: Path | None) -> tuple[Path, str]:
    """(a checked Vocos directory, where it came from): `local_dir`, or charactr/vocos-mel-24khz from the hub.

    Only the small files are involved, so an unusable vocoder fails before the checkpoint is fetched.
    """
    if local_dir is not None:
        local_dir = Path(local_dir)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (local_dir / name).is_file():
                raise VocoderError(
                    f"vocoder directory {local_dir} has no {name} (a Vocos directory holds "
                    f"{CONFIG_FILE} and {WEIGHTS_FILE})"
                )
        check_config(local_dir / CONFIG_FILE)
        return local_dir, str(local_dir)
    from export.hub import fetch

    hint = f"pass --vocoder DIR with a local Vocos directory ({CONFIG_FILE} + {WEIGHTS_FILE}), or use --demo-tiny"
    config = fetch(HUB_VOCOS, CONFIG_FILE, hint)
    check_config(config)
    weights = fetch(HUB_VOCOS, WEIGHTS_FILE, hint)
    if weights.parent != config.parent:  # the cache keeps one snapshot directory per revision
        raise VocoderError(f"{config} and {weights} come from different revisions of {HUB_VOCOS}")
    return config.parent, f"hf://{HUB_VOCOS}"


def load_vocos(directory: Path):
    """PyTorch Vocos from a checked directory, loaded as f5-tts loads it."""
    from f5_tts.infer.utils_infer import load_vocoder

    directory, _ = resolve_vocoder(directory)
    return load_vocoder("vocos", is_local=True, local_path=str(directory), device="cpu")


class _OverlapAddISTFT(nn.Module):
    def __init__(self, istft) -> None:
        super().__init__()
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
        if istft.padding not in HEAD_PADDINGS:
            raise VocoderError(
                f"Vocos ISTFT padding {istft.padding!r} is not supported (supported: {', '.join(HEAD_PADDINGS)})"
            )
        self.pad = n_fft // 2 if istft.padding == "center" else (win - self.hop) // 2

    def forward(self, real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
        y = F.conv_transpose1d(torch.cat([real, imag], dim=1), self.basis, stride=self.hop)
        envelope = F.conv_transpose1d(torch.ones_like(real[:, :1]), self.window_sq, stride=self.hop)
        return (y / envelope)[:, 0, self.pad : -self.pad]


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
            module,
            (example,),
            str(path),
            opset_version=ONNX_OPSET,
            dynamo=False,
            input_names=[contract.MEL],
            output_names=[contract.WAVEFORM],
            dynamic_axes={contract.MEL: {0: "batch", 2: "frames"}, contract.WAVEFORM: {0: "batch", 1: "samples"}},
        )


def check_onnx(vocos, path: Path, mel: torch.Tensor) -> float:
    """Max |ONNX - PyTorch Vocos.decode| on `mel` [B, 100, T]; raises if above MAX_ABS_ERROR."""
    from pipeline.vocoder import onnx_session

    with torch.no_grad():
        expected = vocos.decode(mel).numpy()
    session = onnx_session(path)
    got = session.run([contract.WAVEFORM], {contract.MEL: mel.numpy().astype(np.float32)})[0]
    if got.shape != expected.shape:
        raise VocoderError(f"ONNX vocoder output shape {got.shape} != PyTorch Vocos {expected.shape}")
    error = float(np.max(np.abs(got - expected)))
    if not error <= MAX_ABS_ERROR:
        raise VocoderError(f"ONNX vocoder differs from PyTorch Vocos: max |error| {error:.2e} > {MAX_ABS_ERROR:.0e}")
    return error
