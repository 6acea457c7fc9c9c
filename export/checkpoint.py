"""Read a released F5-TTS checkpoint and check it against the model it must fit.

Formats (as f5-tts's own `load_checkpoint` reads them):
- `.safetensors`: EMA weights with keys prefixed `ema_model.` (F5TTS_v1_Base release),
  or plain model weights with --no-ema;
- `.pt`/`.pth`/`.ckpt`: a dict holding `ema_model_state_dict` and/or `model_state_dict`.
Loading never executes pickled code (safetensors, or torch.load(weights_only=True)).
"""

from __future__ import annotations

from pathlib import Path

import torch

from export.errors import ExportError
from pipeline.f5_model import IGNORED_KEYS, state_dict_problems

_TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")


class CheckpointError(ExportError):
    """The checkpoint is missing, unreadable, or does not fit the model config."""


def read_state_dict(path: Path, use_ema: bool = True) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            raw = load_file(str(path), device="cpu")
        except Exception as e:
            raise CheckpointError(f"checkpoint {path} is not a readable safetensors file: {e}") from e
        has_ema = any(k.startswith("ema_model.") for k in raw)
        if use_ema and not has_ema:
            raise CheckpointError(
                f"checkpoint {path} has no `ema_model.` keys; pass --no-ema to load it as plain model weights"
            )
        state = {k.removeprefix("ema_model."): v for k, v in raw.items()} if use_ema else raw
    elif path.suffix in _TORCH_SUFFIXES:
        try:
            raw = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(
                f"checkpoint {path} could not be read safely with torch.load(weights_only=True): {e}"
            ) from e
        key = "ema_model_state_dict" if use_ema else "model_state_dict"
        if not isinstance(raw, dict) or key not in raw:
            found = ", ".join(sorted(raw)[:8]) if isinstance(raw, dict) else type(raw).__name__
            hint = (
                " (pass --no-ema to use model_state_dict)"
                if use_ema and isinstance(raw, dict) and "model_state_dict" in raw
                else ""
            )
            raise CheckpointError(f"checkpoint {path} holds no `{key}` (found: {found}){hint}")
        state = {k.removeprefix("ema_model."): v for k, v in raw[key].items()}
    else:
        raise CheckpointError(
            f"checkpoint {path}: unknown format {path.suffix!r}; expected .safetensors or "
            f"one of {', '.join(_TORCH_SUFFIXES)}"
        )
    return {k: v for k, v in state.items() if k not in IGNORED_KEYS}


def check_fits(state: dict[str, torch.Tensor], model: torch.nn.Module, *, source: Path, vocab_size: int) -> None:
    """Raise CheckpointError naming missing/unexpected keys, shape and vocab size mismatches."""
    problems = state_dict_problems(state, model, vocab_size)
    if problems:
        raise CheckpointError(
            f"checkpoint {source} does not match the model config: "
            + "; ".join(problems)
            + ". Check --model-config, --vocab and --no-ema."
        )
