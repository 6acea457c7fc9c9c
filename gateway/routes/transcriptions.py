"""POST /v1/audio/transcriptions: OpenAI's transcription API, answered by the server's transcriber model
(Whisper, exported with --asr), which also transcribes voices uploaded without their transcript."""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

import contract
from contract.parameters import flag_of
from gateway.body import limited
from gateway.errors import APIError, bad_request
from gateway.services import ServicesDep
from gateway.voice_library import decode_upload

log = logging.getLogger("gateway")
router = APIRouter()

# OpenAI's formats that a transcript without timestamps can fill (srt, vtt and diarized_json need them).
RESPONSE_FORMATS = ("json", "text", "verbose_json")
# The form fields used; OpenAI's others (prompt, temperature, timestamp_granularities[], include[], ...) are
# accepted and ignored, so that clients written for OpenAI work unchanged. Any `model` names the transcriber.
FIELDS = ("file", "model", "language", "response_format", "stream")


async def _read_form(request: Request, max_bytes: int) -> tuple[dict[str, str], bytes, str, str | None]:
    """The text fields used, the file's bytes, its name and its content type."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise bad_request(
            "send multipart/form-data with the field 'file' (the audio) and optionally 'model', 'language' "
            "and 'response_format'"
        )
    try:
        form = await request.form(max_files=1, max_fields=64, max_part_size=max_bytes)
    except Exception as e:  # python-multipart's own message
        raise bad_request(f"the multipart body cannot be read: {e}") from None
    try:
        upload = form.get("file")
        if upload is None:
            raise bad_request("'file' is required (the audio to transcribe)", "file", "missing_required_parameter")
        if isinstance(upload, str):
            raise bad_request("'file' must be a file part (an audio file), not a text field", "file")
        fields = {}
        for key in FIELDS[1:]:
            value = form.get(key)
            if value is not None and not isinstance(value, str):
                raise bad_request(f"'{key}' must be a text field, not a file", key)
            if value is not None:
                fields[key] = value.strip()
        return fields, await upload.read(), upload.filename or "upload", upload.content_type
    finally:
        await form.close()


@router.post("/audio/transcriptions")
async def transcribe(request: Request, svc: ServicesDep):
    max_bytes = svc.settings.max_upload_bytes
    request = limited(request, max_bytes, "the upload", "--max-upload-mb", "file")
    fields, data, filename, content_type = await _read_form(request, max_bytes)
    response_format = fields.get("response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise bad_request(
            f"'response_format' is {response_format!r}; allowed: {', '.join(RESPONSE_FORMATS)} (the transcriber "
            "gives no timestamps, which srt and vtt need)",
            "response_format",
        )
    if fields.get("stream", "false").lower() not in ("", "false"):
        raise bad_request("'stream' is not offered here: the transcript comes whole; leave it out", "stream")
    info = await svc.triton.info()
    if not info.transcriber_model:
        raise APIError(
            404,
            f"this server has no transcriber (its repository has no '{contract.TRANSCRIBER_MODEL}' model); "
            "re-export it with `python -m export ... --asr` to transcribe audio",
            param="model",
            code="model_not_found",
        )
    limit = info.limits.max_reference_seconds
    audio, rate = await asyncio.to_thread(
        decode_upload,
        data,
        filename,
        info.limits,
        content_type,
        "file",
        f"this server transcribes at most {limit:g} s (its reference limit, set at export with "
        f"{flag_of('max_reference_seconds')}); send a shorter clip",
    )
    started = time.perf_counter()
    heard = await svc.triton.transcribe(
        audio,
        rate,
        as_reference=False,  # all of it, not the part a voice's reference keeps
        language=fields.get("language") or None,
        detect_language=response_format == "verbose_json",
    )
    seconds = audio.shape[1] / rate
    log.info(
        "transcription: %.2f s of audio, %s: %d chars after %.0f ms",
        seconds,
        heard.language or "language not asked",
        len(heard.text),
        (time.perf_counter() - started) * 1000,
    )
    if response_format == "text":
        return PlainTextResponse(heard.text)
    if response_format == "verbose_json":
        return {"text": heard.text, "language": heard.language, "duration": round(seconds, 3)}
    return {"text": heard.text}
