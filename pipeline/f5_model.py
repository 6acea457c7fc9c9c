"""Build f5-tts's own CFM/DiT from an f5-tts YAML config and a vocab file."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

import contract

DTYPES = dict(zip(contract.DTYPES, (torch.float32, torch.float16, torch.bfloat16)))  # name -> torch dtype


def builtin_config_names() -> list[str]:
    return sorted(
        p.name.removesuffix(".yaml") for p in files("f5_tts").joinpath("configs").iterdir() if p.name.endswith(".yaml")
    )


def resolve_model_config(name_or_path: str) -> Path:
    """A name from f5-tts's `f5_tts/configs/` (e.g. F5TTS_v1_Base) or a YAML path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise FileNotFoundError(f"model config {path} does not exist")
        return path
    builtin = Path(str(files("f5_tts").joinpath(f"configs/{name_or_path}.yaml")))
    if not builtin.is_file():
        raise ValueError(
            f"unknown model config {name_or_path!r}: use one of "
            f"{', '.join(builtin_config_names())} or a path to a .yaml file"
        )
    return builtin


def default_vocab_file() -> Path:
    return Path(str(files("f5_tts").joinpath("infer/examples/vocab.txt")))


@dataclass(frozen=True)
class ModelConfig:
    """The parts of an f5-tts YAML config that inference needs."""

    name: str
    backbone: str
    arch: dict[str, Any]
    mel_spec: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> "ModelConfig":
        cfg = OmegaConf.load(path)
        try:
            model = cfg.model
            mel = OmegaConf.to_container(model.mel_spec, resolve=True)
            self = cls(
                name=str(model.name),
                backbone=str(model.backbone),
                arch=OmegaConf.to_container(model.arch, resolve=True),
                mel_spec=mel,
            )
        except Exception as e:  # omegaconf raises several types for missing keys
            raise ValueError(
                f"{path}: not an f5-tts model config (needs model.name, model.backbone, "
                f"model.arch, model.mel_spec): {e}"
            ) from e
        self.check()
        return self

    def check(self) -> None:
        expected = {
            "target_sample_rate": contract.SAMPLE_RATE,
            "n_mel_channels": contract.N_MELS,
            "hop_length": contract.HOP_LENGTH,
            "mel_spec_type": "vocos",
        }
        for key, want in expected.items():
            if self.mel_spec.get(key) != want:
                raise ValueError(
                    f"model config {self.name}: mel_spec.{key} is {self.mel_spec.get(key)!r}; "
                    f"this server supports {want!r} (Vocos, 24 kHz, 100 mels, hop 256)"
                )
        if self.backbone not in ("DiT", "UNetT"):
            raise ValueError(
                f"model config {self.name}: backbone {self.backbone!r} is not supported (supported: DiT, UNetT)"
            )


def load_vocab(path: Path) -> tuple[dict[str, int], int]:
    from f5_tts.model.utils import get_tokenizer

    if not Path(path).is_file():
        raise FileNotFoundError(f"vocab file {path} does not exist")
    return get_tokenizer(str(path), "custom")


def build_cfm(config: ModelConfig, vocab_char_map: dict[str, int], *, batched_attention_mask: bool = True):
    """f5-tts's CFM around its DiT, random-initialised, on CPU, fp32.

    `batched_attention_mask`: mask padded frames in attention so that a request gives the
    same audio alone or inside a dynamic batch (f5-tts's configs ship it off, which lets
    padding of longer neighbours leak into attention).
    """
    import f5_tts.model as f5_model
    from f5_tts.model import CFM

    arch = dict(config.arch)
    if config.backbone == "DiT" and batched_attention_mask:
        arch["attn_mask_enabled"] = True
    backbone_cls = getattr(f5_model, config.backbone)
    mel = config.mel_spec
    return CFM(
        transformer=backbone_cls(**arch, text_num_embeds=len(vocab_char_map), mel_dim=mel["n_mel_channels"]),
        mel_spec_kwargs=dict(
            n_fft=mel["n_fft"],
            hop_length=mel["hop_length"],
            win_length=mel["win_length"],
            n_mel_channels=mel["n_mel_channels"],
            target_sample_rate=mel["target_sample_rate"],
            mel_spec_type=mel["mel_spec_type"],
        ),
        odeint_kwargs=dict(method="euler"),  # f5_tts.infer.utils_infer.ode_method
        vocab_char_map=vocab_char_map,
    )


# Buffers that f5-tts drops when loading (not weights; rebuilt by the model).
IGNORED_KEYS = ("initted", "step", "mel_spec.mel_stft.mel_scale.fb", "mel_spec.mel_stft.spectrogram.window")
TEXT_EMBEDDING = "transformer.text_embed.text_embed.weight"


def _expected_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in IGNORED_KEYS}


def fitting_configs(state: dict[str, torch.Tensor]) -> list[str]:
    """f5-tts's own configs (f5_tts/configs) whose model has exactly the shapes of `state`
    (several can: v1 and the first release share their shapes).

    The models are built on the meta device: shapes only, no memory, milliseconds each.
    """
    if TEXT_EMBEDDING not in state:
        return []
    vocab = {str(i): i for i in range(state[TEXT_EMBEDDING].shape[0] - 1)}  # row 0 is the filler token
    have = {k: tuple(v.shape) for k, v in state.items() if k not in IGNORED_KEYS}
    fits = []
    for name in builtin_config_names():
        try:
            config = ModelConfig.load(resolve_model_config(name))
            with torch.device("meta"):
                model = build_cfm(config, vocab)
        except Exception:  # a config this server cannot serve (other mel settings, backbone)
            continue
        if _expected_shapes(model) == have:
            fits.append(name)
    return sorted(fits, key=lambda n: ("_v1_" not in n, n))  # the released v1 configs first


def state_dict_problems(state: dict[str, torch.Tensor], model: torch.nn.Module, vocab_size: int) -> list[str]:
    """Why `state` does not load into `model`, most likely cause first: a checkpoint of another
    model size (naming the f5-tts config it fits), vocab size, missing/unexpected keys, shapes."""
    expected = _expected_shapes(model)
    have = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(set(expected) - set(have))
    unexpected = sorted(set(have) - set(expected) - set(IGNORED_KEYS))
    mismatched = [k for k in expected if k in have and have[k] != expected[k]]
    # Only the row count of the text embedding differs: the vocab file, not the model size.
    vocab_only = TEXT_EMBEDDING in mismatched and have[TEXT_EMBEDDING][1:] == expected[TEXT_EMBEDDING][1:]
    shapes = [k for k in mismatched if not (k == TEXT_EMBEDDING and vocab_only)]
    problems = []
    if missing or unexpected or shapes:
        fits = fitting_configs(state)
        problems.append(
            "the checkpoint is of another model size or architecture than the config: "
            + (
                f"its shapes fit f5-tts's {' or '.join(fits)} config (--model-config {fits[0]})"
                if fits
                else f"its shapes fit none of f5-tts's configs ({', '.join(builtin_config_names())}); pass the YAML "
                "config it was trained with"
            )
        )
    if TEXT_EMBEDDING in mismatched and have[TEXT_EMBEDDING][0] != expected[TEXT_EMBEDDING][0]:
        trained = have[TEXT_EMBEDDING][0] - 1  # row 0 is f5-tts's filler token
        problems.append(
            f"vocab size mismatch: the weights were trained with {trained} tokens, the vocab file has "
            f"{vocab_size}; use the vocab.txt that came with the checkpoint"
        )
    if missing:
        problems.append(f"{len(missing)} missing keys, e.g. {', '.join(missing[:5])}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys, e.g. {', '.join(unexpected[:5])}")
    if shapes:
        problems.append(
            f"{len(shapes)} shape mismatches, e.g. "
            + "; ".join(f"{k}: weights {have[k]} vs model {expected[k]}" for k in shapes[:3])
        )
    return problems
