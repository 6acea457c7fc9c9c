"""/v1/audio/voices: the voices a request may name (registered on the server at export, uploaded to the
library, or aliases of either), uploads (transcribed by the server's transcriber when sent without a
transcript), transcript corrections and deletes; and which speaker a request's voice means.

A voice belongs to a model or is shared: a registered voice belongs to the model whose export registered it
(its config's `voices`), a library voice to the model named at upload (`model`), or to none (shared: usable
with every model). Speaking with another model's voice is a 400 that names the voice's model."""

from __future__ import annotations

import asyncio
import dataclasses

from fastapi import APIRouter, Request

import contract
from gateway import model_ids
from gateway.body import limited
from gateway.errors import APIError, bad_request
from gateway.services import Services, ServicesDep
from gateway.triton import ModelInfo, ServerInfo, Speaker
from gateway.voice_library import (
    GIVEN,
    TRANSCRIBED,
    StoredVoice,
    check_name,
    check_transcript,
    check_transcription,
    decode_upload,
)

MAX_PATCH_BODY_BYTES = 64 * 1024  # a transcript is at most 1000 bytes of UTF-8; JSON escapes fit many times over

router = APIRouter()


def _model_id(svc: Services, short_name: str | None) -> str | None:
    """The API's id of the model a voice belongs to (its short name as stored), None for a shared voice."""
    return None if short_name is None else model_ids.public_id(svc.settings, contract.tts_model_name(short_name))


def _describe(svc: Services, stored: StoredVoice) -> dict:
    return stored.describe(_model_id(svc, stored.model))


def _belongs_elsewhere(svc: Services, voice: str, owners: list[str], model: ModelInfo, name: str) -> APIError:
    """A voice of other models (`owners`: their ids) asked of `model`."""
    asked = model_ids.public_id(svc.settings, model.triton_model)
    alias = f" (the alias {name!r} names it: --voice-alias)" if voice != name else ""
    return bad_request(
        f"voice {voice!r}{alias} belongs to the model {' and '.join(owners)}, not to {asked}: speak it with "
        f"{'that model' if len(owners) == 1 else 'one of those'}, or pick a voice of {asked} or a shared one "
        f"(GET /v1/audio/voices?model={asked})",
        "voice",
        "voice_model_mismatch",
    )


async def resolve_speaker(svc: Services, name: str, model: ModelInfo) -> Speaker:
    """A request's voice, for `model`: registered for it (prepared once on the server), else from the
    library (the model's own or a shared voice); aliases first."""
    info = await svc.triton.info()
    voice = svc.aliases.get(name, name)
    if voice in model.voices:
        return Speaker(voice=voice)
    stored = await asyncio.to_thread(svc.library.get, voice)
    if stored is not None and stored.model is not None and contract.tts_model_name(stored.model) != model.triton_model:
        raise _belongs_elsewhere(svc, voice, [_model_id(svc, stored.model)], model, name)
    if stored is None:
        owners = [model_ids.public_id(svc.settings, m.triton_model) for m in info.owners(voice)]
        if owners:
            raise _belongs_elsewhere(svc, voice, owners, model, name)
        listed = await _voices(svc, info, model)
        known = sorted({v["id"] for v in listed})
        alias = f" (the alias {name!r} names it: --voice-alias)" if voice != name else ""
        raise bad_request(
            f"unknown voice {voice!r}{alias}; known voices: {', '.join(known) or 'none'}"
            f"{'' if model.is_default else ' (for ' + model_ids.public_id(svc.settings, model.triton_model) + ')'} "
            "(upload one with POST /v1/audio/voices)",
            "voice",
            "voice_not_found",
        )
    return Speaker(audio=stored.audio, sample_rate=stored.sample_rate, text=stored.transcript)


def _entry(name: str, source: str, model_id: str | None, **extra) -> dict:
    return {
        "id": name,
        "object": "audio.voice",
        "name": name,
        "created_at": None,
        "type": "audio_sample",
        "source": source,
        **extra,
        "model": model_id,
    }


async def _voices(svc: Services, info: ServerInfo | None, model: ModelInfo | str | None) -> list[dict]:
    """The voice objects: registered (per model, from `info`; none when None), the library's, the aliases.
    With `model` (its ModelInfo, or its Triton name while Triton cannot be asked), only the voices usable
    with it: its registered ones, the library's of that model and the shared ones, and the aliases that do
    not name another model's voice."""
    only = model.triton_model if isinstance(model, ModelInfo) else model
    listed = [
        _entry(v, "registered", model_ids.public_id(svc.settings, m.triton_model))
        for m in (info.models if info else ())
        if only is None or m.triton_model == only
        for v in m.voices
    ]
    library = await asyncio.to_thread(svc.library.all)
    listed += [
        _describe(svc, v)
        for v in library
        if only is None or v.model is None or contract.tts_model_name(v.model) == only
    ]
    usable = {v["id"]: v["model"] for v in listed}
    every = {v.name: _model_id(svc, v.model) for v in library}
    if info:
        every.update({v: model_ids.public_id(svc.settings, m.triton_model) for m in info.models for v in m.voices})
    listed += [
        _entry(a, "alias", usable.get(v, every.get(v)), alias_of=v)
        for a, v in svc.aliases.items()
        if only is None or v in usable or v not in every
    ]
    return listed


@router.get("/audio/voices")
async def list_voices(svc: ServicesDep, model: str | None = None):
    """Registered voices (Triton's, with the model each belongs to), the library's and the aliases; with
    ?model=ID only those usable with that model. While Triton cannot be asked, the library and the aliases
    are still listed, and `registered` says why its voices are missing."""
    try:
        info, registered = await svc.triton.info(), "available"
    except APIError as e:
        info, registered = None, f"unknown: {e.message}"
    only: ModelInfo | str | None = None
    if model is not None:
        if info:
            only = await model_ids.find(svc, model)
        else:  # the spelling alone says which model it would be
            only = model_ids.triton_model(svc.settings, model)
            if only is None:
                raise APIError(404, f"the model {model!r} does not exist", param="model", code="model_not_found")
    return {"object": "list", "data": await _voices(svc, info, only), "registered": registered}


async def _read_upload(request: Request, max_bytes: int) -> tuple[str, str | None, str | None, bytes, str, str | None]:
    """The multipart form's name, transcript and model (None when absent), audio bytes, file name and
    content type."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise bad_request(
            "send multipart/form-data with the fields 'name', 'audio_sample' (the audio file) and, optionally, "
            "'transcript' (the words spoken in it; without it the server transcribes the audio) and 'model' (the "
            "model the voice belongs to; without it the voice is shared by every model)"
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
                    f"'{key}' is required (multipart fields: name, audio_sample, and optionally transcript and model)",
                    key,
                    "missing_required_parameter",
                )
        upload = fields["audio_sample"]
        if isinstance(upload, str):
            raise bad_request("'audio_sample' must be a file part (an audio file), not a text field", "audio_sample")
        transcript, model = fields.get("transcript"), fields.get("model")
        texts = (fields["name"], transcript or "", model or "")
        if not all(isinstance(v, str) for v in texts):
            raise bad_request("'name', 'transcript' and 'model' must be text fields")
        data = await upload.read()
        return fields["name"], transcript, model, data, upload.filename or "upload", upload.content_type
    finally:
        await form.close()


@router.post("/audio/voices", status_code=201)
async def add_voice(request: Request, svc: ServicesDep):
    max_bytes = svc.settings.max_upload_bytes
    request = limited(request, max_bytes, "the upload", "--max-upload-mb", "audio_sample")
    name, transcript, model, data, filename, content_type = await _read_upload(request, max_bytes)
    name = check_name(name.strip())
    if name in svc.aliases:
        raise APIError(
            409,
            f"{name!r} is an alias of the voice {svc.aliases[name]!r} (--voice-alias); choose another name",
            param="name",
            code="voice_exists",
        )
    info = await svc.triton.info()
    owner = await model_ids.find(svc, model.strip()) if model and model.strip() else None
    if name in info.voices:
        owners = " and ".join(model_ids.public_id(svc.settings, m.triton_model) for m in info.owners(name))
        raise APIError(
            409,
            f"voice {name!r} is registered on the server (at export) for the model {owners}; choose another name",
            param="name",
            code="voice_exists",
        )
    # A model's voice meets that model's limits; a shared one every model's.
    limits = owner.limits if owner else shared_limits(info)
    given = transcript is not None and transcript.strip() != ""
    if given:
        transcript = check_transcript(transcript, limits)
    else:
        check_transcriber(info)  # before the audio is decoded: the answer would be the same whatever it is
    audio, rate = await asyncio.to_thread(decode_upload, data, filename, limits, content_type)
    if not given:
        # The part f5_tts hears as the reference (clipped at a pause, silence trimmed): the words it must match.
        heard = await svc.triton.transcribe(audio, rate, as_reference=True)
        transcript = check_transcription(heard.text, limits)
    stored = await asyncio.to_thread(
        svc.library.add, name, transcript, audio, rate, filename, GIVEN if given else TRANSCRIBED, owner and owner.name
    )
    return _describe(svc, stored)


def shared_limits(info: ServerInfo) -> contract.Limits:
    """What a shared voice must meet: the strictest of the models' reference limits."""
    return dataclasses.replace(
        info.limits,
        max_reference_seconds=min(m.limits.max_reference_seconds for m in info.models),
        max_reference_text_bytes=min(m.limits.max_reference_text_bytes for m in info.models),
    )


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
    return _describe(svc, stored)


@router.delete("/audio/voices/{name}")
async def delete_voice(name: str, svc: ServicesDep):
    await _library_only(svc, name, "deleted")
    if not await asyncio.to_thread(svc.library.delete, name):
        raise _not_in_library(name)
    return {"id": name, "object": "audio.voice.deleted", "deleted": True}
