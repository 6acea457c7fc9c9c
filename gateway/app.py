"""The app: OpenAI's speech and transcription APIs, the voice library, models, health and the playground page.

The routes live in `gateway.routes` (one router per resource) and reach what they work with through
`gateway.services`; the API key is `gateway.auth`, the in-flight limit `gateway.admission`, the error
shape `gateway.errors`. This module puts them together.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from gateway import encoders
from gateway.auth import require_key
from gateway.errors import APIError, add_handlers
from gateway.routes import health, models, speech, transcriptions, voices
from gateway.services import Services
from gateway.settings import Settings
from gateway.triton import SpeechServer, Triton
from gateway.voice_library import VoiceLibrary

log = logging.getLogger("gateway")


def create_app(settings: Settings, triton: SpeechServer | None = None, library: VoiceLibrary | None = None) -> FastAPI:
    """The ASGI app. `triton` and `library` default to those the settings name (the library opened here,
    so that an unusable directory stops the start with an OSError)."""
    formats = encoders.probe()
    for name, why in formats.items():
        if why:
            log.warning("response_format %s is not available: %s", name, why)
    if triton is None:
        triton = Triton(settings.triton_urls, settings.timeout, settings.server_info_ttl)
    if library is None:
        library = VoiceLibrary(settings.voices_dir)
        library.open()
    svc = Services(settings, triton, library, formats)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await svc.triton.start()
        for url, why in (await svc.triton.readiness()).items():
            # Not fatal: Triton may still be loading; requests get 503 until it is ready.
            log.info("Triton at %s: %s", url, why or "ready")
        try:
            await svc.triton.info()  # the models it serves, logged (and asked again every server_info_ttl)
        except APIError as e:
            log.info("models: not known yet (%s)", e.message)
        log.info(
            "voices in %s: %s; formats: %s",
            svc.library.root,
            ", ".join(svc.library.names()) or "none",
            ", ".join(svc.working_formats),
        )
        yield
        await svc.triton.close()

    app = FastAPI(title="F5-TTS speech gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = svc
    if settings.cors_origins:
        # Browser pages on other origins (a chat UI calling this API directly). The key travels in the
        # Authorization header, never in cookies, so credentials stay off.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["X-First-Audio-Ms"],
            max_age=600,
        )
    add_handlers(app)
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])
    for resource in (models, voices, speech, transcriptions):
        v1.include_router(resource.router)
    app.include_router(v1)
    app.include_router(health.router)
    app.mount("/static", StaticFiles(directory=health.STATIC), name="static")
    return app
