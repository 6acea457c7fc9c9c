"""The gateway in front of a server with two F5-TTS models (tiny_repo: the default f5_tts with its voice
`nature`, and FR_MODEL, f5_tts_fr, added with `export --name fr`): OpenAI's `model` picks the Triton model,
whose answer is Triton's own for the same request; GET /v1/models lists both; an unknown model is OpenAI's
404; a voice belongs to a model or is shared."""

from __future__ import annotations

import base64
import io
import json

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf
from conftest import FR_MODEL, FRENCH_TEXT, GATEWAY_KEY, VOICE

import contract
from client import SynthesisOptions, stream_synthesize
from client.audio import pcm16
from export.repository import REFERENCE_TEXT, REFERENCE_WAV

NFE = 4
SEED = 7
FR_ID = f"f5-tts-{FR_MODEL}"
FR_TRITON = contract.tts_model_name(FR_MODEL)  # f5_tts_fr
SHARED = "shared-ref"  # a library voice of no model: the shipped reference


def _headers() -> dict:
    return {"Authorization": f"Bearer {GATEWAY_KEY}"}


def _post(gateway, path, **kwargs) -> httpx.Response:
    return httpx.post(f"{gateway.url}{path}", headers=_headers(), timeout=120, **kwargs)


def _speech(gateway, model: str, voice: str = SHARED, text: str = FRENCH_TEXT, **fields) -> httpx.Response:
    body = {"model": model, "input": text, "voice": voice, "response_format": "pcm", "nfe_step": NFE, "seed": SEED}
    return _post(gateway, "/v1/audio/speech", json={**body, **fields})


def _upload(gateway, name: str, model: str | None = None) -> httpx.Response:
    files = {"audio_sample": ("ref.wav", REFERENCE_WAV.read_bytes(), "audio/wav")}
    data = {"name": name, "transcript": REFERENCE_TEXT, **({"model": model} if model else {})}
    return _post(gateway, "/v1/audio/voices", data=data, files=files)


@pytest.fixture(scope="module")
def shared_voice(gateway) -> str:
    response = _upload(gateway, SHARED)
    assert response.status_code == 201, response.text
    return SHARED


def _reference() -> tuple[np.ndarray, int]:
    """The library voice's samples as the gateway sends them to Triton: the file as decoded, float32."""
    audio, rate = sf.read(str(REFERENCE_WAV), dtype="float32", always_2d=True)
    return np.ascontiguousarray(audio.T), rate


def _triton_stream(server, stream_model: str, text: str = FRENCH_TEXT) -> np.ndarray:
    """What the stream model answers the project's gRPC client for the same request (pieces joined), int16."""
    audio, rate = _reference()
    options = SynthesisOptions(nfe_step=NFE, seed=SEED)
    pieces = stream_synthesize(
        text, audio, rate, REFERENCE_TEXT, url=server.grpc_url, model=stream_model, options=options, timeout=120
    )
    return np.frombuffer(pcm16(np.concatenate(list(pieces))), "<i2")


def _pcm(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.frombuffer(response.content, "<i2")


def test_multi_model_models_lists_both_models_and_their_ids(gateway):
    listed = httpx.get(f"{gateway.url}/v1/models", headers=_headers()).json()
    assert listed["discovered"] == "available"
    by_id = {m["id"]: m for m in listed["data"]}
    assert list(by_id) == ["f5-tts", "tts-1", "tts-1-hd", "gpt-4o-mini-tts", FR_ID]
    assert {i: (m["triton_model"], m["alias_of"]) for i, m in by_id.items()} == {
        "f5-tts": ("f5_tts", None),
        "tts-1": ("f5_tts", "f5-tts"),
        "tts-1-hd": ("f5_tts", "f5-tts"),
        "gpt-4o-mini-tts": ("f5_tts", "f5-tts"),
        FR_ID: (FR_TRITON, None),
    }
    fr = by_id[FR_ID]
    assert (fr["name"], fr["stream_model"], fr["default"], fr["demo_model"]) == (
        FR_MODEL,
        "f5_tts_fr_stream",
        False,
        False,
    )
    # each model's architecture as its export named it (the v0 layout for fr), and its own byte limit
    assert (by_id["f5-tts"]["architecture"], fr["architecture"]) == ("F5TTS_v1_Base_tiny", "F5TTS_Base_tiny")
    assert fr["max_input_bytes"] == by_id["f5-tts"]["max_input_bytes"] == contract.LIMITS.max_target_text_bytes
    # the SDK sees the same ids, and each of the repository's spellings
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=GATEWAY_KEY, max_retries=0)
    assert [m.id for m in client.models.list()] == list(by_id)
    for asked in (FR_MODEL, FR_TRITON):
        got = httpx.get(f"{gateway.url}/v1/models/{asked}", headers=_headers()).json()
        assert (got["id"], got["triton_model"], got["alias_of"]) == (asked, FR_TRITON, FR_ID)


def test_multi_model_speech_is_tritons_answer_of_the_model_named(gateway, server, shared_voice):
    """The same request to f5_tts_fr_stream directly (same reference, text, seed and steps: its chunks are
    f5_tts_fr's answers) gives the same samples; the default model's answer differs (other weights, vocab)."""
    want = _triton_stream(server, "f5_tts_fr_stream")
    fr = _pcm(_speech(gateway, FR_ID))
    np.testing.assert_array_equal(fr, want)
    for spelling in (FR_MODEL, FR_TRITON):  # the short and Triton names mean the same model
        np.testing.assert_array_equal(_pcm(_speech(gateway, spelling)), want)
    default = _pcm(_speech(gateway, "f5-tts"))
    np.testing.assert_array_equal(default, _triton_stream(server, contract.STREAM_MODEL))
    assert default.shape != fr.shape or not np.array_equal(default, fr)
    assert f"({FR_TRITON})" in gateway.log_text()  # the gateway's line for each answer names its model


def test_multi_model_fr_streams_as_sse_and_as_audio(gateway, server, shared_voice):
    want = _triton_stream(server, "f5_tts_fr_stream")
    sse = _speech(gateway, FR_ID, stream_format="sse")
    assert sse.status_code == 200 and sse.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in sse.text.splitlines() if line.startswith("data: ")]
    assert events[-1]["type"] == "speech.audio.done"
    deltas = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    np.testing.assert_array_equal(np.frombuffer(deltas, "<i2"), want)
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/audio/speech",
        headers=_headers(),
        timeout=120,
        json={"model": FR_ID, "input": FRENCH_TEXT, "voice": SHARED, "response_format": "wav", "nfe_step": NFE}
        | {"seed": SEED, "stream_format": "audio"},
    ) as response:
        assert response.status_code == 200 and response.headers.get("transfer-encoding") == "chunked"
        body = response.read()
    samples, rate = sf.read(io.BytesIO(body), dtype="int16")
    assert rate == contract.SAMPLE_RATE
    np.testing.assert_array_equal(samples, want)


def test_multi_model_an_unknown_model_is_openais_404_naming_the_ids(gateway):
    response = _speech(gateway, "f5-tts-de", voice=VOICE)
    assert response.status_code == 404
    error = response.json()["error"]
    assert error == {
        "message": "the model 'f5-tts-de' does not exist; available: f5-tts, tts-1, tts-1-hd, gpt-4o-mini-tts, "
        f"{FR_ID} (GET /v1/models); a model may also be named by its short name or its Triton name (fr or "
        "f5_tts_fr for f5-tts-fr)",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=GATEWAY_KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError, match="the model 'de' does not exist"):
        client.audio.speech.create(model="de", voice=VOICE, input="Hi.")
    with pytest.raises(openai.NotFoundError, match="the model 'tts-2' does not exist"):
        client.models.retrieve("tts-2")


def test_multi_model_a_voice_belongs_to_its_model(gateway, server, shared_voice):
    """`nature` is registered for the default model; a voice uploaded for fr is fr's; the shared one is both's."""
    created = _upload(gateway, "fr-only", FR_ID)
    assert created.status_code == 201 and created.json()["model"] == FR_ID, created.text
    assert json.loads((gateway.voices_dir / "fr-only" / "voice.json").read_text())["model"] == FR_MODEL
    # fr's own voice is the same reference: the same audio as the shared one for fr
    np.testing.assert_array_equal(_pcm(_speech(gateway, FR_ID, voice="fr-only")), _pcm(_speech(gateway, FR_ID)))
    for model, voice, owner in [(FR_ID, VOICE, "f5-tts"), ("tts-1", "fr-only", FR_ID)]:
        refused = _speech(gateway, model, voice=voice, text="Hello.")
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert (error["param"], error["code"]) == ("voice", "voice_model_mismatch")
        assert error["message"].startswith(f"voice '{voice}' belongs to the model {owner}, not to ")
    for_fr = httpx.get(f"{gateway.url}/v1/audio/voices", params={"model": FR_MODEL}, headers=_headers()).json()
    assert [(v["id"], v["model"]) for v in for_fr["data"]] == [("fr-only", FR_ID), (SHARED, None)]
    everything = httpx.get(f"{gateway.url}/v1/audio/voices", headers=_headers()).json()
    assert (VOICE, "registered", "f5-tts") in [(v["id"], v["source"], v["model"]) for v in everything["data"]]
    assert httpx.delete(f"{gateway.url}/v1/audio/voices/fr-only", headers=_headers()).status_code == 200
