"""The routes: OpenAI's speech API, the voice library, models, health and the playground page."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

import contract
from gateway import encoders
from gateway.errors import APIError, bad_request, unavailable
from gateway.settings import Settings
from gateway.speech_request import parse_speech_request
from gateway.speech_stream import SpeechStream
from gateway.triton import Speaker, Triton
from gateway.voice_library import VoiceLibrary, check_name, check_transcript, decode_upload

log = logging.getLogger("gateway")
STATIC = Path(__file__).parent / "static"
OWNER = "f5-tts-triton"
MAX_SPEECH_BODY_BYTES = 1 << 20  # OpenAI's 4096-character input with every option fits many times over


def limited(request: Request, max_bytes: int, what: str, hint: str, param: str | None) -> Request:
    """The request, its body refused with a 413 in OpenAI's shape once it passes max_bytes: at once when
    Content-Length says so, else while it is being read (chunked uploads)."""
    def too_large(size: str) -> APIError:
        return APIError(413, f"{what} is {size} bytes, larger than this gateway's limit of {max_bytes} bytes ({hint})",
                        param=param, code="request_too_large")

    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise too_large(length)
    received = 0

    async def receive():
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > max_bytes:
            raise too_large(f"more than {max_bytes}")
        return message

    return Request(request.scope, receive)


def create_app(settings: Settings) -> FastAPI:
    formats = encoders.probe()
    working = [name for name, why in formats.items() if why is None]
    for name, why in formats.items():
        if why:
            log.warning("response_format %s is not available: %s", name, why)
    triton = Triton(settings.triton_urls, settings.timeout, settings.server_info_ttl)
    library = VoiceLibrary(settings.voices_dir)
    library.open()
    aliases = dict(settings.voice_aliases)
    in_flight = 0

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await triton.start()
        for url, why in (await triton.readiness()).items():
            # Not fatal: Triton may still be loading; requests get 503 until it is ready.
            log.info("Triton at %s: %s", url, why or "ready")
        log.info("voices in %s: %s; formats: %s", library.root, ", ".join(library.names()) or "none", ", ".join(working))
        yield
        await triton.close()

    app = FastAPI(title="F5-TTS speech gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    if settings.cors_origins:
        # Browser pages on other origins (a chat UI calling this API directly). The key travels in the
        # Authorization header, never in cookies, so credentials stay off.
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST", "DELETE"], allow_headers=["Authorization", "Content-Type"],
                           expose_headers=["X-First-Audio-Ms"], max_age=600)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError):
        if e.status >= 500:
            log.warning("%s %s: %d %s", request.method, request.url.path, e.status, e.message)
        return e.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException):
        message = {404: f"no route {request.method} {request.url.path}; see GET /v1/models, POST /v1/audio/speech, "
                        "/v1/audio/voices",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(e.status_code, str(e.detail))
        return APIError(e.status_code, message).response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, e: RequestValidationError):
        first = e.errors()[0]
        return bad_request(f"{'.'.join(map(str, first['loc']))}: {first['msg']}", str(first["loc"][-1])).response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        return APIError(500, f"internal error in the gateway ({type(e).__name__}); see its log").response()

    def require_key(request: Request) -> None:
        if settings.api_key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise APIError(401, "missing API key: send the header 'Authorization: Bearer <key>' (this gateway was "
                                "started with --api-key)", code="invalid_api_key",
                           headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.strip().encode(), settings.api_key.encode()):
            raise APIError(401, "incorrect API key provided", code="invalid_api_key",
                           headers={"WWW-Authenticate": "Bearer"})

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])

    # --- models ----------------------------------------------------------------------------------
    def model_object(model_id: str) -> dict:
        return {"id": model_id, "object": "model", "created": 0, "owned_by": OWNER}

    @v1.get("/models")
    async def list_models():
        return {"object": "list", "data": [model_object(m) for m in settings.model_ids]}

    @v1.get("/models/{model_id}")
    async def get_model(model_id: str):
        check_model(model_id)
        # Beyond OpenAI's fields, what the playground shows: the input limits (characters here, UTF-8 bytes on
        # the server) and whether the server runs the demo model (noise).
        info = await triton.info()
        return {**model_object(model_id), "demo_model": info.demo_model, "max_input_chars": settings.max_input_chars,
                "max_input_bytes": info.limits.max_target_text_bytes}

    def check_model(model_id: str) -> None:
        if model_id not in settings.model_ids:
            raise APIError(404, f"the model {model_id!r} does not exist; available: {', '.join(settings.model_ids)} "
                                "(GET /v1/models)", param="model", code="model_not_found")

    # --- voices ----------------------------------------------------------------------------------
    async def speaker(name: str) -> Speaker:
        info = await triton.info()
        voice = aliases.get(name, name)
        if voice in info.voices:  # registered at export: prepared once on the server
            return Speaker(voice=voice)
        stored = await asyncio.to_thread(library.get, voice)
        if stored is None:
            known = sorted(set(info.voices) | set(await asyncio.to_thread(library.names)) | set(aliases))
            alias = f" (the alias {name!r} names it: --voice-alias)" if voice != name else ""
            raise bad_request(f"unknown voice {voice!r}{alias}; known voices: {', '.join(known) or 'none'} (upload "
                              "one with POST /v1/audio/voices)", "voice", "voice_not_found")
        return Speaker(audio=stored.audio, sample_rate=stored.sample_rate, text=stored.transcript)

    @v1.get("/audio/voices")
    async def list_voices():
        """Registered voices (Triton's), the library's and the aliases. While Triton cannot be asked, the
        library and the aliases are still listed, and `registered` says why its voices are missing."""
        try:
            registered_names, registered = (await triton.info()).voices, "available"
        except APIError as e:
            registered_names, registered = (), f"unknown: {e.message}"
        listed = [{"id": n, "object": "audio.voice", "name": n, "created_at": None, "type": "audio_sample",
                   "source": "registered"} for n in registered_names]
        listed += [v.describe() for v in await asyncio.to_thread(library.all)]
        listed += [{"id": a, "object": "audio.voice", "name": a, "created_at": None, "type": "audio_sample",
                    "source": "alias", "alias_of": v} for a, v in aliases.items()]
        return {"object": "list", "data": listed, "registered": registered}

    @v1.post("/audio/voices", status_code=201)
    async def add_voice(request: Request):
        request = limited(request, settings.max_upload_bytes, "the upload", "--max-upload-mb", "audio_sample")
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise bad_request("send multipart/form-data with the fields 'name', 'audio_sample' (the audio file) and "
                              "'transcript' (the words spoken in it)")
        try:
            form = await request.form(max_files=1, max_fields=8, max_part_size=settings.max_upload_bytes)
        except Exception as e:  # python-multipart's own message
            raise bad_request(f"the multipart body cannot be read: {e}") from None
        try:
            fields = {k: v for k, v in form.items()}
            for key in ("name", "audio_sample", "transcript"):
                if key not in fields:
                    raise bad_request(f"'{key}' is required (multipart fields: name, audio_sample, transcript)", key,
                                      "missing_required_parameter")
            upload = fields["audio_sample"]
            if isinstance(upload, str):
                raise bad_request("'audio_sample' must be a file part (an audio file), not a text field",
                                  "audio_sample")
            if not isinstance(fields["name"], str) or not isinstance(fields["transcript"], str):
                raise bad_request("'name' and 'transcript' must be text fields")
            data = await upload.read()
            filename, content_type = upload.filename or "upload", upload.content_type
        finally:
            await form.close()
        name = check_name(fields["name"].strip())
        if name in aliases:
            raise APIError(409, f"{name!r} is an alias of the voice {aliases[name]!r} (--voice-alias); choose another "
                                "name", param="name", code="voice_exists")
        info = await triton.info()
        if name in info.voices:
            raise APIError(409, f"voice {name!r} is registered on the server (at export); choose another name",
                           param="name", code="voice_exists")
        transcript = check_transcript(fields["transcript"], info.limits)
        audio, rate = await asyncio.to_thread(decode_upload, data, filename, info.limits, content_type)
        stored = await asyncio.to_thread(library.add, name, transcript, audio, rate, filename)
        return stored.describe()

    @v1.delete("/audio/voices/{name}")
    async def delete_voice(name: str):
        if name in aliases:
            raise bad_request(f"{name!r} is an alias of the voice {aliases[name]!r} (--voice-alias) and cannot be "
                              "deleted here; start the gateway without it", "voice")
        info = await triton.info()
        if name in info.voices:
            raise bad_request(f"voice {name!r} is registered on the server at export and cannot be deleted here; "
                              "re-export without it", "voice")
        if not await asyncio.to_thread(library.delete, name):
            raise APIError(404, f"no voice {name!r} in the library; GET /v1/audio/voices lists them", param="voice",
                           code="voice_not_found")
        return {"id": name, "object": "audio.voice.deleted", "deleted": True}

    # --- speech ----------------------------------------------------------------------------------
    @v1.post("/audio/speech")
    async def speech(request: Request):
        nonlocal in_flight
        request = limited(request, MAX_SPEECH_BODY_BYTES, "the request body", "a JSON object", None)
        try:
            body = await request.json()
        except ValueError as e:
            raise bad_request(f"the request body is not valid JSON ({e}); send a JSON object with 'model', 'input' "
                              "and 'voice'") from None
        req = parse_speech_request(body, tuple(encoders.FORMATS), settings.max_input_chars)
        check_model(req.model)
        if formats[req.response_format]:
            raise bad_request(f"response_format {req.response_format!r} cannot be produced by this gateway: "
                              f"{formats[req.response_format]}; available: {', '.join(working)}", "response_format",
                              "unsupported_response_format")
        who = await speaker(req.voice)
        if in_flight >= settings.max_concurrency:
            raise APIError(429, f"{in_flight} speech requests are in flight, this gateway's limit "
                                "(--max-concurrency); retry shortly", type="rate_limit_error", code="rate_limit_exceeded",
                           headers={"Retry-After": "1"})
        in_flight += 1
        started = time.perf_counter()
        pieces = triton.stream(req.input, who, req.options)
        try:
            first = await pieces.__anext__()
        except BaseException:
            in_flight -= 1
            await pieces.aclose()
            raise
        first_ms = (time.perf_counter() - started) * 1000

        def done(samples: int, completed: bool) -> None:
            nonlocal in_flight
            in_flight -= 1
            log.info("speech: %d chars, voice %s, %s%s, speed %s: %.2f s of audio, first audio after %.0f ms, "
                     "%s after %.0f ms", len(req.input), req.voice, req.response_format,
                     " (sse)" if req.stream_format == "sse" else "", req.speed, samples / contract.SAMPLE_RATE,
                     first_ms, "done" if completed else "stopped", (time.perf_counter() - started) * 1000)

        return SpeechStream(req, first, pieces, done).response(
            headers={"X-First-Audio-Ms": f"{first_ms:.0f}", "Cache-Control": "no-store"})

    app.include_router(v1)

    # --- health and the playground ---------------------------------------------------------------
    @app.get("/health/live")
    async def live():
        return {"status": "live"}

    @app.get("/health/ready")
    async def ready():
        """Ready when one Triton server and both speech models are: the readiness probe of a deployment."""
        found = await triton.readiness()
        if any(why is None for why in found.values()):
            return {"status": "ready", "triton": {url: why or "ready" for url, why in found.items()}}
        raise unavailable("no Triton server is ready: " + "; ".join(f"{u}: {w}" for u, w in found.items()))

    @app.get("/", include_in_schema=False)
    async def playground():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
