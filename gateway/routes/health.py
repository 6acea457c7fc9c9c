"""Health probes and the playground page: open, without the API key."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from gateway.errors import unavailable
from gateway.services import ServicesDep

STATIC = Path(__file__).resolve().parent.parent / "static"
router = APIRouter()


@router.get("/health/live")
async def live():
    return {"status": "live"}


@router.get("/health/ready")
async def ready(svc: ServicesDep):
    """Ready when one Triton server and both speech models are: the readiness probe of a deployment."""
    found = await svc.triton.readiness()
    if any(why is None for why in found.values()):
        return {"status": "ready", "triton": {url: why or "ready" for url, why in found.items()}}
    raise unavailable("no Triton server is ready: " + "; ".join(f"{u}: {w}" for u, w in found.items()))


@router.get("/", include_in_schema=False)
async def playground():
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})
