"""/v1/audio/voices: the voices a request may name (registered on the server at export, uploaded to the
library, or aliases of either), uploads (transcribed by the server's transcriber when sent without a
transcript), transcript corrections and deletes; and which speaker a request's voice means."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

import contract
from gateway.body import limited
from gateway.errors import APIError, bad_request
from gateway.services import Services, ServicesDep
from gateway.triton import ServerInfo, Speaker
from gateway.voice_library import (
    GIVEN,
    TRANSCRIBED,
    check_name,
    check_transcript,
    check_transcription,
    decode_upload,
)

MAX_PATCH_BODY_BYTES = 64 * 1024  # a transcript is at most 1000 bytes of UTF-8; JSON escapes fit many times over

router = APIRouter()


async def resolve_speaker(svc: Services, name: str) -> Speaker:
    """A request's voice: registered (prepared once on the server), else from the library; aliases first."""
    info = await svc.triton.info()
    voice = svc.aliases.get(name, name)
    if voice in info.voices:
        return Speaker(voice=voice)
    stored = await asyncio.to_thread(svc.library.get, voice)
    if stored is None:
        known = sorted(set(info.voices) | set(await asyncio.to_thread(svc.library.names)) | set(svc.aliases))
        alias = f" (the alias {name!r} names it: --voice-alias)" if voice != name else ""
        raise bad_request(
            f"unknown voice {voice!r}{alias}; known voices: {', '.join(known) or 'none'} (upload "
            "one with POST /v1/audio/voices)",
            "voice",
            "voice_not_found",
        )
    return Speaker(audio=stored.audio, sample_rate=stored.sample_rate, text=stored.transcript)


@router.get("/audio/voices")
async def list_voices(svc: ServicesDep):
    """Registered voices (Triton's), the library's and the aliases. While Triton cannot be asked, the
    library and the aliases are still listed, and `registered` says why its voices are missing."""
    try:
        registered_names, registered = (await svc.triton.info()).voices, "available"
    except APIError as e:
        registered_names, registered = (), f"unknown: {e.message}"
    listed = [
        {
            "id": n,
            "object": "audio.voice",
            "name": n,
            "created_at": None,
            "type": "audio_sample",
            "source": "registered",
        }
        for n in registered_names
    ]
    listed += [v.describe() for v in await asyncio.to_thread(svc.library.all)]
    listed += [
        {
            "id": a,
            "object": "audio.voice",
            "name": a,
            "created_at": None,
            "type": "audio_sample",
            "source": "alias",
            "alias_of": v,
        }
        for a, v in svc.aliases.items()
    ]
    return {"object": "list", "data": listed, "registered": registered}


async def _read_upload(request: Request, max_bytes: int) -> tuple[str, str | None, bytes, str, str | None]:
    """The multipart form's name, transcript (None when absent), audio bytes, file name and content type."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise bad_request(
            "send multipart/form-data with the fields 'name', 'audio_sample' (the audio file) and, optionally, "
            "'transcript' (the words spoken in it; without it the server transcribes the audio)"
        )
    try:
        form = await request.form(max_files=1, max_fields=8, max_part_size=max_bytes)
    except Exception as e:  # python-multipart's own message
        raise bad_request(f"the multipart body cannot be read: {e}") from None
    try:
        fields = {k: v for k, v in form.items()}
        for key in ("name", "audio_sample"):
            if key not in fields:
                raise bad_request(
                    f"'{key}' is required (multipart fields: name, audio_sample, and optionally transcript)",
                    key,
                    "missing_required_parameter",
                )
        upload = fields["audio_sample"]
        if isinstance(upload, str):
            raise bad_request("'audio_sample' must be a file part (an audio file), not a text field", "audio_sample")
        transcript = fields.get("transcript")
        if not isinstance(fields["name"], str) or not isinstance(transcript, (str, type(None))):
            raise bad_request("'name' and 'transcript' must be text fields")
        data = await upload.read()
        return fields["name"], transcript, data, upload.filename or "upload", upload.content_type
    finally:
        await form.close()


@router.post("/audio/voices", status_code=201)
async def add_voice(request: Request, svc: ServicesDep):
    max_bytes = svc.settings.max_upload_bytes
    request = limited(request, max_bytes, "the upload", "--max-upload-mb", "audio_sample")
    name, transcript, data, filename, content_type = await _read_upload(request, max_bytes)
    name = check_name(name.strip())
    if name in svc.aliases:
        raise APIError(
            409,
            f"{name!r} is an alias of the voice {svc.aliases[name]!r} (--voice-alias); choose another name",
            param="name",
            code="voice_exists",
        )
    info = await svc.triton.info()
    if name in info.voices:
        raise APIError(
            409,
            f"voice {name!r} is registered on the server (at export); choose another name",
            param="name",
            code="voice_exists",
        )
    given = transcript is not None and transcript.strip() != ""
    if given:
        transcript = check_transcript(transcript, info.limits)
    else:
        check_transcriber(info)  # before the audio is decoded: the answer would be the same whatever it is
    audio, rate = await asyncio.to_thread(decode_upload, data, filename, info.limits, content_type)
    if not given:
        # The part f5_tts hears as the reference (clipped at a pause, silence trimmed): the words it must match.
        heard = await svc.triton.transcribe(audio, rate, as_reference=True)
        transcript = check_transcription(heard.text, info.limits)
    stored = await asyncio.to_thread(
        svc.library.add, name, transcript, audio, rate, filename, GIVEN if given else TRANSCRIBED
    )
    return stored.describe()


def check_transcriber(info: ServerInfo) -> None:
    """A voice uploaded without its transcript needs the server's transcriber."""
    if not info.transcriber_model:
        raise bad_request(
            "'transcript' is required: this server has no transcriber to transcribe the audio sample (its "
            f"repository has no '{contract.TRANSCRIBER_MODEL}' model); give the words spoken in the sample, or "
            "re-export the repository with `python -m export ... --asr`",
            "transcript",
            "missing_required_parameter",
        )


async def _library_only(svc: Services, name: str, what: str) -> ServerInfo:
    """The server's info, once `name` is known to be neither an alias nor a registered voice: those are not
    the library's to change. (Aliases first: they are refused even while Triton cannot be asked.)"""
    if name in svc.aliases:
        raise bad_request(
            f"{name!r} is an alias of the voice {svc.aliases[name]!r} (--voice-alias) and cannot be "
            f"{what} here; start the gateway without it",
            "voice",
        )
    info = await svc.triton.info()
    if name in info.voices:
        raise bad_request(
            f"voice {name!r} is registered on the server at export and cannot be {what} here; re-export without it",
            "voice",
        )
    return info


def _not_in_library(name: str) -> APIError:
    return APIError(
        404,
        f"no voice {name!r} in the library; GET /v1/audio/voices lists them",
        param="voice",
        code="voice_not_found",
    )


@router.patch("/audio/voices/{name}")
async def update_voice(name: str, request: Request, svc: ServicesDep):
    """Correct a library voice's transcript: {"transcript": "..."}; the voice's JSON back."""
    request = limited(request, MAX_PATCH_BODY_BYTES, "the request body", 'a JSON object {"transcript": ...}', None)
    try:
        body = await request.json()
    except ValueError as e:
        raise bad_request(
            f'the request body is not valid JSON ({e}); send a JSON object {{"transcript": "..."}}'
        ) from None
    if not isinstance(body, dict):
        raise bad_request('the request body must be a JSON object {"transcript": "..."}')
    unknown = sorted(set(body) - {"transcript"})
    if unknown:
        raise bad_request(
            f"unrecognized request argument(s) supplied: {', '.join(map(repr, unknown))}; allowed: transcript "
            "(a voice's name and audio are kept: delete it and upload it again to change them)",
            unknown[0],
            "unknown_parameter",
        )
    if "transcript" not in body:
        raise bad_request("'transcript' is required", "transcript", "missing_required_parameter")
    if not isinstance(body["transcript"], str):
        raise bad_request("'transcript' must be a string", "transcript")
    info = await _library_only(svc, name, "changed")
    transcript = check_transcript(body["transcript"], info.limits)
    stored = await asyncio.to_thread(svc.library.set_transcript, name, transcript)
    if stored is None:
        raise _not_in_library(name)
    return stored.describe()


@router.delete("/audio/voices/{name}")
async def delete_voice(name: str, svc: ServicesDep):
    await _library_only(svc, name, "deleted")
    if not await asyncio.to_thread(svc.library.delete, name):
        raise _not_in_library(name)
    return {"id": name, "object": "audio.voice.deleted", "deleted": True}
