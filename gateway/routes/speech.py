"""POST /v1/audio/speech: OpenAI's speech API, streamed from Triton as it speaks: `model` picks the F5-TTS
model (f5_tts, or f5_tts_NAME), whose stream model (f5_tts_stream, f5_tts_NAME_stream) answers."""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Request

import contract
from gateway import encoders, model_ids
from gateway.body import limited
from gateway.errors import bad_request
from gateway.routes.voices import resolve_speaker
from gateway.services import Services, ServicesDep
from gateway.speech_request import SpeechRequest, parse_speech_request
from gateway.speech_stream import SpeechStream
from gateway.triton import ModelInfo

log = logging.getLogger("gateway")
MAX_SPEECH_BODY_BYTES = 1 << 20  # OpenAI's 4096-character input with every option fits many times over
router = APIRouter()


async def read_speech_request(request: Request, svc: Services) -> tuple[SpeechRequest, ModelInfo]:
    """The body, parsed and checked against what this gateway serves (the voice aside), and its model."""
    request = limited(request, MAX_SPEECH_BODY_BYTES, "the request body", "a JSON object", None)
    try:
        body = await request.json()
    except ValueError as e:
        raise bad_request(
            f"the request body is not valid JSON ({e}); send a JSON object with 'model', 'input' and 'voice'"
        ) from None
    req = parse_speech_request(body, tuple(encoders.FORMATS), svc.settings.max_input_chars)
    model = await model_ids.find(svc, req.model)
    why = svc.formats[req.response_format]
    if why:
        raise bad_request(
            f"response_format {req.response_format!r} cannot be produced by this gateway: {why}; "
            f"available: {', '.join(svc.working_formats)}",
            "response_format",
            "unsupported_response_format",
        )
    return req, model


@router.post("/audio/speech")
async def speech(request: Request, svc: ServicesDep):
    req, model = await read_speech_request(request, svc)
    who = await resolve_speaker(svc, req.voice, model)
    svc.admission.admit()
    started = time.perf_counter()
    pieces = svc.triton.stream(req.input, who, req.options, model.triton_model)
    try:
        # The first piece before the answer's status: a refusal from Triton is still an error response.
        first = await pieces.__anext__()
    except BaseException:
        svc.admission.release()
        await pieces.aclose()
        raise
    first_ms = (time.perf_counter() - started) * 1000

    def done(samples: int, completed: bool) -> None:
        svc.admission.release()
        log.info(
            "speech: %d chars, voice %s, %s%s, speed %s: %.2f s of audio, first audio after %.0f ms, %s after "
            "%.0f ms (%s)",
            len(req.input),
            req.voice,
            req.response_format,
            " (sse)" if req.stream_format == "sse" else "",
            req.speed,
            samples / contract.SAMPLE_RATE,
            first_ms,
            "done" if completed else "stopped",
            (time.perf_counter() - started) * 1000,
            model.triton_model,
        )

    return SpeechStream(req, first, pieces, done).response(
        headers={"X-First-Audio-Ms": f"{first_ms:.0f}", "Cache-Control": "no-store"}
    )
