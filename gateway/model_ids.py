"""The model ids a request may name, and which F5-TTS model on Triton each one means.

The default model (Triton's f5_tts) answers to the gateway's ids: `f5-tts`, OpenAI's `tts-1`, `tts-1-hd` and
`gpt-4o-mini-tts`, and those --model-id adds (Settings.model_ids, the first one its own id, the others its
aliases). A model added with `python -m export --name NAME` (Triton's f5_tts_NAME) is `f5-tts-NAME`. Either
may also be named as the repository names it: its short name (NAME, or "default") or its Triton name
(f5_tts_NAME, f5_tts); those spellings are accepted, not listed.
"""

from __future__ import annotations

from dataclasses import dataclass

import contract
from gateway.errors import APIError
from gateway.settings import DEFAULT_MODEL_ID, Settings
from gateway.triton import ModelInfo, ServerInfo

NAMED_PREFIX = DEFAULT_MODEL_ID + "-"  # f5-tts-NAME


@dataclass(frozen=True)
class ModelId:
    """One id GET /v1/models lists: the model it means, and the id it is an alias of (None: its own)."""

    id: str
    model: ModelInfo
    alias_of: str | None = None


def public_id(settings: Settings, triton_model: str) -> str:
    """A model's own id: the gateway's first id for the default model, f5-tts-NAME for f5_tts_NAME."""
    if triton_model == contract.TTS_MODEL:
        return settings.model_ids[0]
    return NAMED_PREFIX + contract.model_short_name(triton_model)


def triton_model(settings: Settings, asked: str) -> str | None:
    """The Triton model an id names, by its spelling alone (whether the server has it is info's to say)."""
    if asked in settings.model_ids:
        return contract.TTS_MODEL
    if asked.startswith(NAMED_PREFIX):
        asked = asked[len(NAMED_PREFIX) :]
    return contract.parse_model_name(asked) if asked else None


def listed(settings: Settings, info: ServerInfo) -> list[ModelId]:
    """Every id, in order: the default model's (its own, then its aliases), then each named model's."""
    default = info.default
    ids = [ModelId(settings.model_ids[0], default)]
    ids += [ModelId(i, default, settings.model_ids[0]) for i in settings.model_ids[1:]]
    taken = set(settings.model_ids)
    for m in info.models[1:]:
        own = public_id(settings, m.triton_model)
        if own not in taken:  # (an --model-id spelled f5-tts-NAME keeps meaning the default model)
            ids.append(ModelId(own, m))
    return ids


def resolve(settings: Settings, info: ServerInfo, asked: str) -> ModelInfo | None:
    name = triton_model(settings, asked)
    return info.model(name) if name else None


def not_found(settings: Settings, info: ServerInfo, asked: str) -> APIError:
    """OpenAI's answer to an unknown model: 404 model_not_found, naming the ids there are."""
    named = info.models[1:]
    spellings = ""
    if named:
        m = named[0]
        spellings = (
            f"; a model may also be named by its short name or its Triton name ({m.name} or {m.triton_model} for "
            f"{public_id(settings, m.triton_model)})"
        )
    return APIError(
        404,
        f"the model {asked!r} does not exist; available: {', '.join(i.id for i in listed(settings, info))} "
        f"(GET /v1/models){spellings}",
        param="model",
        code="model_not_found",
    )


async def find(svc, asked: str) -> ModelInfo:
    """The model `asked` names, or the 404. A name not known yet makes the gateway ask Triton again (at most
    once a second), so that a model loaded since the last look is found at once."""
    info = await svc.triton.info()
    found = resolve(svc.settings, info, asked)
    if found is None and triton_model(svc.settings, asked) is not None:
        info = await svc.triton.info(refresh=True)
        found = resolve(svc.settings, info, asked)
    if found is None:
        raise not_found(svc.settings, info, asked)
    return found
