"""/v1/audio/voices: the voices a request may name (registered on the server at export, uploaded to the
library, or aliases of either), uploads and deletes; and which speaker a request's voice means."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from gateway.body import limited
from gateway.errors import APIError, bad_request
from gateway.services import Services, ServicesDep
from gateway.triton import Speaker
from gateway.voice_library import check_name, check_transcript, decode_upload

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


async def _read_upload(request: Request, max_bytes: int) -> tuple[str, str, bytes, str, str | None]:
    """The multipart form's name, transcript, audio bytes, file name and content type, as sent."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise bad_request(
            "send multipart/form-data with the fields 'name', 'audio_sample' (the audio file) and "
            "'transcript' (the words spoken in it)"
        )
    try:
        form = await request.form(max_files=1, max_fields=8, max_part_size=max_bytes)
    except Exception as e:  # python-multipart's own message
        raise bad_request(f"the multipart body cannot be read: {e}") from None
    try:
        fields = {k: v for k, v in form.items()}
        for key in ("name", "audio_sample", "transcript"):
            if key not in fields:
                raise bad_request(
                    f"'{key}' is required (multipart fields: name, audio_sample, transcript)",
                    key,
                    "missing_required_parameter",
                )
        upload = fields["audio_sample"]
        if isinstance(upload, str):
            raise bad_request("'audio_sample' must be a file part (an audio file), not a text field", "audio_sample")
        if not isinstance(fields["name"], str) or not isinstance(fields["transcript"], str):
            raise bad_request("'name' and 'transcript' must be text fields")
        data = await upload.read()
        return fields["name"], fields["transcript"], data, upload.filename or "upload", upload.content_type
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
    transcript = check_transcript(transcript, info.limits)
    audio, rate = await asyncio.to_thread(decode_upload, data, filename, info.limits, content_type)
    stored = await asyncio.to_thread(svc.library.add, name, transcript, audio, rate, filename)
    return stored.describe()


@router.delete("/audio/voices/{name}")
async def delete_voice(name: str, svc: ServicesDep):
    if name in svc.aliases:
        raise bad_request(
            f"{name!r} is an alias of the voice {svc.aliases[name]!r} (--voice-alias) and cannot be "
            "deleted here; start the gateway without it",
            "voice",
        )
    info = await svc.triton.info()
    if name in info.voices:
        raise bad_request(
            f"voice {name!r} is registered on the server at export and cannot be deleted here; re-export without it",
            "voice",
        )
    if not await asyncio.to_thread(svc.library.delete, name):
        raise APIError(
            404,
            f"no voice {name!r} in the library; GET /v1/audio/voices lists them",
            param="voice",
            code="voice_not_found",
        )
    return {"id": name, "object": "audio.voice.deleted", "deleted": True}
