"""GET /v1/models and /v1/models/{id}: the ids a request may name, all of them this one model."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.errors import APIError
from gateway.services import ServicesDep
from gateway.settings import Settings

OWNER = "f5-tts-triton"
router = APIRouter()


def model_object(model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": OWNER}


def check_model(settings: Settings, model_id: str) -> None:
    if model_id not in settings.model_ids:
        raise APIError(
            404,
            f"the model {model_id!r} does not exist; available: {', '.join(settings.model_ids)} (GET /v1/models)",
            param="model",
            code="model_not_found",
        )


@router.get("/models")
async def list_models(svc: ServicesDep):
    return {"object": "list", "data": [model_object(m) for m in svc.settings.model_ids]}


@router.get("/models/{model_id}")
async def get_model(model_id: str, svc: ServicesDep):
    check_model(svc.settings, model_id)
    # Beyond OpenAI's fields, what the playground shows: the input limits (characters here, UTF-8 bytes on
    # the server) and whether the server runs the demo model (noise).
    info = await svc.triton.info()
    return {
        **model_object(model_id),
        "demo_model": info.demo_model,
        "max_input_chars": svc.settings.max_input_chars,
        "max_input_bytes": info.limits.max_target_text_bytes,
    }
