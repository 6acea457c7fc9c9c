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

# Buffers that f5-tts drops when loading (not weights; rebuilt by the model).
_IGNORED_KEYS = ("initted", "step", "mel_spec.mel_stft.mel_scale.fb", "mel_spec.mel_stft.spectrogram.window")
_TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")


class CheckpointError(ValueError):
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
            raise CheckpointError(f"checkpoint {path} has no `ema_model.` keys; pass --no-ema to load it as "
                                  "plain model weights")
        state = {k.removeprefix("ema_model."): v for k, v in raw.items()} if use_ema else raw
    elif path.suffix in _TORCH_SUFFIXES:
        try:
            raw = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(f"checkpoint {path} could not be read safely with torch.load(weights_only=True): "
                                  f"{e}") from e
        key = "ema_model_state_dict" if use_ema else "model_state_dict"
        if not isinstance(raw, dict) or key not in raw:
            found = ", ".join(sorted(raw)[:8]) if isinstance(raw, dict) else type(raw).__name__
            hint = " (pass --no-ema to use model_state_dict)" if use_ema and isinstance(raw, dict) and \
                "model_state_dict" in raw else ""
            raise CheckpointError(f"checkpoint {path} holds no `{key}` (found: {found}){hint}")
        state = {k.removeprefix("ema_model."): v for k, v in raw[key].items()}
    else:
        raise CheckpointError(f"checkpoint {path}: unknown format {path.suffix!r}; expected .safetensors or "
                              f"one of {', '.join(_TORCH_SUFFIXES)}")
    return {k: v for k, v in state.items() if k not in _IGNORED_KEYS}


def check_fits(state: dict[str, torch.Tensor], model: torch.nn.Module, *, source: Path, vocab_size: int) -> None:
    """Raise CheckpointError naming missing/unexpected keys and shape mismatches."""
    expected = {k: v for k, v in model.state_dict().items() if k not in _IGNORED_KEYS}
    problems = []
    emb_key = "transformer.text_embed.text_embed.weight"
    if emb_key in state and emb_key in expected and state[emb_key].shape != expected[emb_key].shape:
        ckpt_vocab = state[emb_key].shape[0] - 1  # row 0 is f5-tts's filler token
        problems.append(f"vocab size mismatch: the checkpoint was trained with {ckpt_vocab} tokens, the vocab "
                        f"file has {vocab_size}; pass the vocab.txt that came with the checkpoint (--vocab)")
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        problems.append(f"{len(missing)} missing keys, e.g. {', '.join(missing[:5])}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys, e.g. {', '.join(unexpected[:5])}")
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in state and k != emb_key and state[k].shape != v.shape]
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches, e.g. {'; '.join(shapes[:3])}")
    if problems:
        raise CheckpointError(f"checkpoint {source} does not match the model config: " + "; ".join(problems)
                              + ". Check --model-config (and --no-ema).")
