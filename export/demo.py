"""Tiny random-init checkpoints of the real architectures, for offline smoke runs.

They produce NOISE, not speech: the weights are random. Shapes follow f5-tts's F5TTS_v1_Base
config and Vocos mel-24khz, scaled down so a request takes well under a second on a CPU.
Files are written in the released formats, so they go through the same export path.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from omegaconf import OmegaConf

from pipeline.f5_model import ModelConfig, build_cfm, default_vocab_file, load_vocab, resolve_model_config

DEMO_NOTICE = "DEMO MODEL: tiny random weights; it produces noise, not speech"

# charactr/vocos-mel-24khz's config.yaml byte for byte (a test checks its sha256): the architecture of
# every full-size random Vocos the tests and benchmarks build.
RELEASED_VOCOS_CONFIG = Path(__file__).resolve().parent.parent / "tests" / "data" / "vocos-mel-24khz" / "config.yaml"

TINY_ARCH = dict(dim=64, depth=2, heads=2, dim_head=32, ff_mult=2, text_dim=32, conv_layers=1)
TINY_VOCOS = {
    "feature_extractor": {
        "class_path": "vocos.feature_extractors.MelSpectrogramFeatures",
        "init_args": {"sample_rate": 24000, "n_fft": 1024, "hop_length": 256, "n_mels": 100, "padding": "center"},
    },
    "backbone": {
        "class_path": "vocos.models.VocosBackbone",
        "init_args": {"input_channels": 100, "dim": 64, "intermediate_dim": 192, "num_layers": 2},
    },
    "head": {
        "class_path": "vocos.heads.ISTFTHead",
        "init_args": {"dim": 64, "n_fft": 1024, "hop_length": 256, "padding": "center"},
    },
}


def _randomise(module: torch.nn.Module, seed: int) -> None:
    # f5-tts zero-initialises its output layers (the model would echo its noise input):
    # give every weight a small random value so outputs depend on text and reference.
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)


def write_tiny_model_config(path: Path, base: str = "F5TTS_v1_Base", arch: dict | None = None) -> Path:
    cfg = OmegaConf.load(resolve_model_config(base))
    cfg.model.name = f"{base}_tiny_demo"
    for key, value in (arch or TINY_ARCH).items():
        cfg.model.arch[key] = value
    OmegaConf.save(cfg, path)
    return path


def write_random_checkpoint(
    config_path: Path, out: Path, *, fmt: str = "safetensors", seed: int = 0, vocab_file: Path | None = None
) -> Path:
    """A random-init checkpoint for `config_path` in a released format.

    fmt: "safetensors" (like F5TTS_v1_Base/model_1250000.safetensors: the EMA model's keys
    prefixed `ema_model.`, beside its bookkeeping tensors `initted` and `step`) or "pt" (a
    dict holding that state as `ema_model_state_dict`, like the v0 .pt releases).
    """
    vocab_map, _ = load_vocab(vocab_file or default_vocab_file())
    model = build_cfm(ModelConfig.load(config_path), vocab_map)
    _randomise(model, seed)
    state = {f"ema_model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    state.update(initted=torch.tensor(True), step=torch.tensor(0))
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(state, str(out))
    elif fmt == "pt":
        torch.save({"ema_model_state_dict": state}, str(out))
    else:
        raise ValueError(f"unknown checkpoint format {fmt!r}")
    return out


def write_random_vocos(directory: Path, config: dict | Path, seed: int = 0) -> Path:
    """A Vocos directory (config.yaml + pytorch_model.bin) with random weights.

    `config`: a config.yaml to copy byte for byte (a released one), or its content as a dict.
    """
    from vocos import Vocos

    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(config, Path):
        shutil.copyfile(config, directory / "config.yaml")
    else:
        OmegaConf.save(OmegaConf.create(config), directory / "config.yaml")
    vocos = Vocos.from_hparams(str(directory / "config.yaml"))
    _randomise(vocos, seed)
    torch.save(vocos.state_dict(), directory / "pytorch_model.bin")
    return directory


def write_tiny_vocos(directory: Path, seed: int = 0) -> Path:
    """A Vocos directory with the mel-24khz layout, scaled down."""
    return write_random_vocos(directory, TINY_VOCOS, seed)


def write_random_sources(arch: str, directory: Path) -> tuple[Path, Path, Path]:
    """Random-init export sources in the released formats: (model config, checkpoint, Vocos directory).

    `arch`: "tiny", or an f5-tts config name, built with the released Vocos architecture.
    """
    if arch == "tiny":
        config = write_tiny_model_config(directory / "tiny.yaml")
        vocos = write_tiny_vocos(directory / "vocos")
    else:
        config = resolve_model_config(arch)
        vocos = write_random_vocos(directory / "vocos", RELEASED_VOCOS_CONFIG)
    return config, write_random_checkpoint(config, directory / "model.safetensors"), vocos
