"""GET /v1/models and /v1/models/{id}: the ids a request may name, for each F5-TTS model on the server.

Beyond OpenAI's fields (id, object, created, owned_by), each model object says which model it means on
Triton (`triton_model`, `stream_model`, `name`: the short name of `export --name`, "default" for f5_tts),
its `architecture` (f5-tts's config name), whether it is the `default` model, which id it is an alias of
(`alias_of`, null for a model's own id), and what the playground shows: whether the server runs the demo
model (noise) and the input limits (characters here, UTF-8 bytes on the server, the model's own).
"""

from __future__ import annotations

from fastapi import APIRouter

import contract
from gateway import model_ids
from gateway.errors import APIError
from gateway.services import ServicesDep
from gateway.settings import Settings
from gateway.triton import ModelInfo

OWNER = "f5-tts-triton"
router = APIRouter()


def model_object(settings: Settings, model_id: str, model: ModelInfo | None, alias_of: str | None) -> dict:
    """OpenAI's model object with ours; `model` None while Triton cannot be asked (the default's ids only)."""
    triton_model = model.triton_model if model else contract.TTS_MODEL
    described = {
        "id": model_id,
        "object": "model",
        "created": 0,
        "owned_by": OWNER,
        "name": contract.model_short_name(triton_model),
        "triton_model": triton_model,
        "stream_model": contract.stream_model_name(triton_model),
        "default": triton_model == contract.TTS_MODEL,
        "alias_of": alias_of,
    }
    if model is None:
        return described
    return {
        **described,
        "architecture": model.architecture,
        "demo_model": model.demo_model,
        "max_input_chars": settings.max_input_chars,
        "max_input_bytes": model.limits.max_target_text_bytes,
    }


@router.get("/models")
async def list_models(svc: ServicesDep):
    """Every id. While Triton cannot be asked, the default model's ids (the gateway's own) are still listed,
    and `discovered` says why the others are missing (else "available")."""
    try:
        info = await svc.triton.info()
    except APIError as e:
        ids = svc.settings.model_ids
        data = [model_object(svc.settings, i, None, None if i == ids[0] else ids[0]) for i in ids]
        return {"object": "list", "data": data, "discovered": f"unknown: {e.message}"}
    data = [model_object(svc.settings, i.id, i.model, i.alias_of) for i in model_ids.listed(svc.settings, info)]
    return {"object": "list", "data": data, "discovered": "available"}


@router.get("/models/{model_id}")
async def get_model(model_id: str, svc: ServicesDep):
    """Any id a request may name (a short or Triton name too: then `alias_of` is the model's own id)."""
    model = await model_ids.find(svc, model_id)
    own = model_ids.public_id(svc.settings, model.triton_model)
    return model_object(svc.settings, model_id, model, None if model_id == own else own)
