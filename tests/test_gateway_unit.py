"""The gateway's app without a server: FastAPI's TestClient in front of a stand-in for the Triton side
(the SpeechServer interface of gateway/triton.py). Request parsing, OpenAI's error shape, the API key,
the in-flight limit (429), health, the voice library (transcribed uploads, corrected transcripts),
transcriptions, and how Triton's failures are answered."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import io
import json
import threading
import time

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

import contract
from client.api import SynthesisError
from client.request import SynthesisOptions
from contract import errors
from contract.captions import Cue, Word
from export.repository import REFERENCE_TEXT, REFERENCE_WAV
from gateway.app import create_app
from gateway.errors import APIError
from gateway.settings import Settings
from gateway.triton import ModelInfo, Piece, ServerInfo, Speaker, Transcription, api_error, transcription_error
from gateway.voice_library import META_FILE, VoiceLibrary

pytestmark = pytest.mark.unit

KEY = "unit-key"
VOICE = "nature"
PIECE = 2400  # samples per piece the stand-in sends: 0.1 s
URL = "triton.test:8001"


HEARD = "w24390 w16418 w36460"  # what the stand-in's transcriber hears, as the tests' tiny Whisper writes


class FakeTriton:
    """Answers as Triton would: registered voices and limits, a transcriber, readiness, and `pieces` pieces of
    speech per request. `fail` is raised instead of the first piece; the second piece waits for `hold`.
    Transcriptions answer `heard` (and the language asked for, else `detected`), or raise `transcribe_error`."""

    def __init__(self, voices=(VOICE,), pieces: int = 2) -> None:
        self.server_info = ServerInfo(
            (ModelInfo(contract.TTS_MODEL, tuple(voices)),), transcriber_model=contract.TRANSCRIBER_MODEL
        )
        self.heard = HEARD
        self.detected = "en"
        self.transcribe_error: Exception | None = None
        self.transcriptions: list[dict] = []
        self.pieces = pieces
        self.cues: list[list[Cue]] = []  # piece i's cues, where given
        self.ready: dict[str, str | None] = {URL: None}
        self.fail: Exception | None = None
        self.info_error: APIError | None = None
        self.hold = threading.Event()
        self.hold.set()
        self.requests: list[tuple[str, Speaker, SynthesisOptions]] = []
        self.models: list[str] = []  # the Triton model of each request
        self.refreshes = 0  # info(refresh=True) calls
        self.events: list[str] = []

    async def start(self) -> None:
        self.events.append("start")

    async def close(self) -> None:
        self.events.append("close")

    async def readiness(self) -> dict[str, str | None]:
        return dict(self.ready)

    async def info(self, refresh: bool = False) -> ServerInfo:
        self.refreshes += refresh
        if self.info_error:
            raise self.info_error
        return self.server_info

    async def stream(self, text, speaker, options, model=contract.TTS_MODEL):
        self.requests.append((text, speaker, options))
        self.models.append(model)
        if self.fail:
            raise self.fail
        for i in range(self.pieces):
            while i and not self.hold.is_set():
                await asyncio.sleep(0.005)
            yield Piece(np.full(PIECE, 0.25, np.float32), self.cues[i] if i < len(self.cues) else [])

    async def transcribe(self, audio, sample_rate, as_reference=True, language=None, detect_language=False):
        self.transcriptions.append(
            {
                "audio": audio,
                "sample_rate": sample_rate,
                "as_reference": as_reference,
                "language": language,
                "detect_language": detect_language,
            }
        )
        if self.transcribe_error:
            raise self.transcribe_error
        wants_language = detect_language or language is not None
        return Transcription(self.heard, (language or self.detected) if wants_language else None)


@pytest.fixture
def triton() -> FakeTriton:
    return FakeTriton()


@pytest.fixture
def make_client(tmp_path, triton):
    """A TestClient over create_app(settings) with the stand-in; settings default to an API key."""
    clients = []

    def make(**settings) -> TestClient:
        settings = {"api_key": KEY, "voices_dir": tmp_path / "voices", **settings}
        library = VoiceLibrary(settings["voices_dir"])
        library.open()
        client = TestClient(
            create_app(Settings(**settings), triton=triton, library=library),
            headers={"Authorization": f"Bearer {settings['api_key']}"} if settings["api_key"] else {},
        )
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


def speech(client: TestClient, **fields):
    body = {"model": "f5-tts", "input": "Hello there.", "voice": VOICE, "response_format": "pcm", **fields}
    return client.post("/v1/audio/speech", json={k: v for k, v in body.items() if v is not None})


def openai_error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == ("invalid_request_error" if status < 500 else "server_error") or status == 429
    return error


# --- speech: what reaches Triton ---------------------------------------------------------------------------------


def test_a_request_reaches_triton_as_text_voice_and_options(client, triton):
    response = speech(
        client,
        speed=2.0,
        nfe_step=8,
        seed=7,
        cfg_strength=1.5,
        sway_sampling_coef=0,
        duration=9,
        instructions="calmly",
        stream=True,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("audio/pcm")
    assert response.headers["cache-control"] == "no-store" and response.headers["x-first-audio-ms"].isdigit()
    samples = np.frombuffer(response.content, "<i2")
    assert samples.size == 2 * PIECE and np.all(samples == round(0.25 * 32767))
    [(text, speaker, options)] = triton.requests
    assert text == "Hello there." and speaker == Speaker(voice=VOICE)
    assert options == SynthesisOptions(
        speed=2.0, nfe_step=8, seed=7, cfg_strength=1.5, sway_sampling_coef=0.0, duration=9.0
    )
    assert isinstance(options.nfe_step, int) and isinstance(options.cfg_strength, float)


@pytest.mark.parametrize("asked,sent", [(0.25, 0.3), (4.0, 3.0), (1.5, 1.5), (None, None)])
def test_openais_speed_is_mapped_onto_the_models_range(client, triton, asked, sent):
    assert speech(client, speed=asked).status_code == 200
    assert triton.requests[-1][2].speed == sent


def test_the_voice_may_be_an_alias_or_openais_id_form(make_client, triton):
    client = make_client(voice_aliases=(("alloy", VOICE),))
    assert speech(client, voice="alloy").status_code == 200
    assert speech(client, voice={"id": VOICE}).status_code == 200
    assert [r[1] for r in triton.requests] == [Speaker(voice=VOICE)] * 2


def test_sse_events_carry_the_audio_and_the_usage(client):
    response = speech(client, stream_format="sse", input="Hi.")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = [line for line in response.text.splitlines() if line.startswith("data:")]
    assert len(events) == 3 and '"speech.audio.done"' in events[-1]
    assert f'"output_tokens":{2 * PIECE // contract.HOP_LENGTH}' in events[-1] and '"input_tokens":3' in events[-1]


# --- bad requests: OpenAI's error shape ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields,status,param,code,message",
    [
        ({"model": None}, 400, "model", "missing_required_parameter", "'model' is required"),
        ({"input": "   "}, 400, "input", None, "'input' is empty or whitespace only; give the text to speak"),
        (
            {"input": "a" * 4097},
            400,
            "input",
            "string_above_max_length",
            "'input' is 4097 characters; at most 4096 are allowed",
        ),
        ({"input": 5}, 400, "input", None, "'input' must be a string, got integer"),
        ({"voice": ["a"]}, 400, "voice", None, "'voice' must be a voice name or {\"id\": name}, got array ['a']"),
        (
            {"voice": "nobody"},
            400,
            "voice",
            "voice_not_found",
            "unknown voice 'nobody'; known voices: nature (upload one with POST /v1/audio/voices)",
        ),
        ({"model": "tts-2"}, 404, "model", "model_not_found", "the model 'tts-2' does not exist; available: f5-tts"),
        (
            {"temperature": 0.5},
            400,
            "temperature",
            "unknown_parameter",
            "unrecognized request argument(s) supplied: 'temperature'; allowed: model, input, voice",
        ),
        (
            {"response_format": "ogg"},
            400,
            "response_format",
            None,
            "'response_format' is 'ogg'; allowed: mp3, opus, aac, flac, wav, pcm",
        ),
        ({"speed": 5}, 400, "speed", None, "'speed' is 5.0; allowed range is [0.25, 4.0]"),
        ({"speed": True}, 400, "speed", None, "'speed' must be a finite number, got boolean True"),
        ({"nfe_step": 1.5}, 400, "nfe_step", None, "'nfe_step' must be an integer, got number 1.5"),
        ({"seed": -(2**63) - 1}, 400, "seed", None, "'seed' is -9223372036854775809, outside the INT64 range"),
        ({"cfg_strength": "2"}, 400, "cfg_strength", None, "'cfg_strength' must be a finite number, got string '2'"),
        ({"stream": 1}, 400, "stream", None, "'stream' must be true or false, got integer 1"),
        ({"stream": True, "stream_format": "sse"}, 400, "stream", None, "'stream': true means stream_format 'audio'"),
        (
            {"instructions": "x" * 4097},
            400,
            "instructions",
            "string_above_max_length",
            "'instructions' is 4097 characters; at most 4096 are allowed (F5-TTS takes the manner of speaking",
        ),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else None,
)
def test_bad_fields_are_refused_in_openais_shape(client, triton, fields, status, param, code, message):
    error = openai_error(speech(client, **fields), status)
    assert (error["param"], error["code"]) == (param, code)
    assert error["message"].startswith(message), error["message"]
    assert not triton.requests  # refused before Triton


def test_nan_is_not_a_number_here(client):
    """Python's JSON reads NaN and Infinity; OpenAI's fields and ours want finite numbers."""
    for literal in (b"NaN", b"Infinity"):
        body = b'{"model": "f5-tts", "input": "Hi.", "voice": "nature", "cfg_strength": ' + literal + b"}"
        error = openai_error(
            client.post("/v1/audio/speech", content=body, headers={"Content-Type": "application/json"}), 400
        )
        assert error["param"] == "cfg_strength" and error["message"].startswith(
            "'cfg_strength' must be a finite number, got number "
        )


def test_a_body_that_is_not_a_json_object_is_refused(client):
    not_json = client.post("/v1/audio/speech", content=b"{oops", headers={"Content-Type": "application/json"})
    assert openai_error(not_json, 400)["message"].startswith("the request body is not valid JSON")
    assert (
        openai_error(client.post("/v1/audio/speech", json=[1]), 400)["message"]
        == "the request body must be a JSON object, got array"
    )
    json = {"Content-Type": "application/json"}
    too_big = openai_error(client.post("/v1/audio/speech", content=b" " * ((1 << 20) + 1), headers=json), 413)
    assert too_big["code"] == "request_too_large" and too_big["message"].startswith(
        "the request body is 1048577 bytes, larger than this gateway's limit of 1048576 bytes"
    )
    chunked = openai_error(client.post("/v1/audio/speech", content=iter([b" " * (1 << 19)] * 3), headers=json), 413)
    assert chunked["message"].startswith("the request body is more than 1048576 bytes")


def test_a_format_this_gateway_cannot_encode_is_a_400(client):
    client.app.state.services.formats["aac"] = "PyAV is not installed (av)"
    error = openai_error(speech(client, response_format="aac"), 400)
    assert error["code"] == "unsupported_response_format"
    assert error["message"].startswith(
        "response_format 'aac' cannot be produced by this gateway: PyAV is not "
        "installed (av); available: mp3, opus, flac, wav, pcm"
    )


def test_unknown_routes_and_methods_answer_in_openais_shape(client):
    assert openai_error(client.get("/v1/nothing"), 404)["message"].startswith("no route GET /v1/nothing")
    assert openai_error(client.put("/v1/audio/speech"), 405)["message"] == "PUT is not allowed on /v1/audio/speech"


# --- Triton's answers --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message,status,answer,code",
    [
        (f"{errors.SHUTTING_DOWN}: stream stopped after 1 of 3 chunks", None, 503, "triton_unavailable"),
        ("Request for unknown model: 'f5_tts' is not found", None, 503, "triton_unavailable"),
        ("failed to connect to all addresses", errors.GRPC_UNAVAILABLE, 503, "triton_unavailable"),
        ("timed out", errors.GRPC_DEADLINE_EXCEEDED, 504, "timeout"),
        (f"internal error during synthesis; {errors.SEE_SERVER_LOG}", None, 500, "triton_error"),
        ("Segmentation fault", "StatusCode.INTERNAL", 500, "triton_error"),
        (f"input '{contract.NFE_STEP}' is 500; allowed range is [1, 128]", None, 400, "triton_invalid_argument"),
    ],
)
def test_tritons_failures_are_told_apart_by_the_contracts_words(client, triton, message, status, answer, code):
    """The stream carries no status: the phrases the models write (contract.errors) decide the answer."""
    triton.fail = api_error(SynthesisError(message, status), URL)
    error = openai_error(speech(client), answer)
    assert error["code"] == code
    if answer != 400:
        assert error["message"].endswith(message)
    else:  # the contract's input names, as the API names them
        assert error["param"] == contract.NFE_STEP
        assert error["message"] == "'nfe_step' is 500; allowed range is [1, 128]"
    if answer == 503:
        assert speech(client).headers["retry-after"] == "5"


def test_the_text_limit_on_triton_names_the_apis_field():
    error = api_error(
        SynthesisError(
            f"input '{contract.TARGET_TEXT}' is 16388 bytes; at most 16384 bytes of UTF-8 are allowed",
            "StatusCode.INVALID_ARGUMENT",
        ),
        URL,
    )
    assert (error.status, error.param) == (400, "input")
    assert error.message == "'input' is 16388 bytes; at most 16384 bytes of UTF-8 are allowed"


# --- the API key ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header,message",
    [
        (None, "missing API key: send the header 'Authorization: Bearer <key>'"),
        ("Bearer ", "missing API key"),
        (f"Basic {KEY}", "missing API key"),
        ("Bearer wrong", "incorrect API key provided"),
        (f"Bearer {KEY}x", "incorrect API key provided"),
    ],
)
def test_v1_wants_the_key(client, triton, header, message):
    client.headers.pop("Authorization")
    headers = {"Authorization": header} if header else {}
    for response in (
        client.get("/v1/models", headers=headers),
        client.post("/v1/audio/speech", json={"model": "f5-tts"}, headers=headers),
    ):
        error = openai_error(response, 401)
        assert error["code"] == "invalid_api_key" and error["message"].startswith(message)
        assert response.headers["www-authenticate"] == "Bearer"
    assert not triton.requests


def test_the_key_is_taken_in_any_case_of_bearer_and_health_needs_none(client):
    assert client.get("/v1/models", headers={"Authorization": f"bearer  {KEY} "}).status_code == 200
    client.headers.pop("Authorization")
    assert client.get("/health/live").json() == {"status": "live"}
    assert client.get("/").status_code == 200 and client.get("/").headers["cache-control"] == "no-cache"


def test_without_a_key_everything_is_open(make_client):
    client = make_client(api_key=None)
    assert client.get("/v1/models").status_code == 200 and speech(client).status_code == 200


# --- the in-flight limit ----------------------------------------------------------------------------------------


def test_past_max_concurrency_a_request_is_a_429(make_client, triton):
    client = make_client(max_concurrency=2)
    admission = client.app.state.services.admission
    admission.in_flight = 2
    response = speech(client)
    assert response.status_code == 429 and response.headers["retry-after"] == "1"
    assert response.json()["error"] == {
        "message": "2 speech requests are in flight, this gateway's limit (--max-concurrency); retry shortly",
        "type": "rate_limit_error",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    assert not triton.requests
    admission.in_flight = 1
    assert speech(client).status_code == 200 and admission.in_flight == 1  # its own slot given back


def test_a_request_in_flight_holds_its_slot_until_its_answer_ends(make_client, triton):
    client = make_client(max_concurrency=1)
    admission = client.app.state.services.admission
    triton.hold.clear()  # the first answer stops after its first piece
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(speech, client)
        deadline = time.monotonic() + 30
        while admission.in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert admission.in_flight == 1
        assert speech(client).status_code == 429
        triton.hold.set()
        assert first.result(timeout=30).status_code == 200
    assert admission.in_flight == 0
    assert speech(client).status_code == 200


def test_a_refusal_before_the_first_piece_gives_the_slot_back(make_client, triton):
    client = make_client(max_concurrency=1)
    triton.fail = api_error(SynthesisError("input 'seed' is -2; allowed range is [-1, 9223372036854775807]"), URL)
    for _ in range(3):
        assert openai_error(speech(client), 400)["param"] == "seed"
    assert client.app.state.services.admission.in_flight == 0


# --- health, models, the app's life ------------------------------------------------------------------------------


def test_ready_when_one_triton_is(client, triton):
    assert client.get("/health/ready").json() == {"status": "ready", "triton": {URL: "ready"}}
    triton.ready = {URL: "model f5_tts not ready", "other:8001": "unreachable (refused)"}
    error = openai_error(client.get("/health/ready"), 503)
    assert error["code"] == "triton_unavailable" and error["message"] == (
        f"no Triton server is ready: {URL}: model f5_tts not ready; other:8001: unreachable (refused)"
    )


def test_models_are_listed_with_the_servers_limits(client, triton):
    assert [m["id"] for m in client.get("/v1/models").json()["data"]] == [
        "f5-tts",
        "tts-1",
        "tts-1-hd",
        "gpt-4o-mini-tts",
    ]
    triton.server_info = ServerInfo(
        (ModelInfo(contract.TTS_MODEL, (VOICE,), contract.Limits(max_target_text_bytes=100), demo_model=True),)
    )
    assert client.get("/v1/models/tts-1").json() == {
        "id": "tts-1",
        "object": "model",
        "created": 0,
        "owned_by": "f5-tts-triton",
        "name": "default",
        "triton_model": "f5_tts",
        "stream_model": "f5_tts_stream",
        "default": True,
        "alias_of": "f5-tts",
        "architecture": "unknown",
        "demo_model": True,
        "max_input_chars": 4096,
        "max_input_bytes": 100,
    }


def test_the_app_starts_and_closes_its_triton_side(tmp_path, triton):
    app = create_app(Settings(voices_dir=tmp_path / "voices"), triton=triton)
    assert triton.events == []
    with TestClient(app):
        assert triton.events == ["start"]
    assert triton.events == ["start", "close"]
    assert (tmp_path / "voices").is_dir()  # opened by create_app when none is given


# --- the voice library ------------------------------------------------------------------------------------------


def _upload(client, name, data=None, transcript=REFERENCE_TEXT):
    data = REFERENCE_WAV.read_bytes() if data is None else data
    return client.post(
        "/v1/audio/voices",
        data={"name": name, "transcript": transcript},
        files={"audio_sample": ("ref.wav", data, "audio/wav")},
    )


def test_an_uploaded_voice_is_listed_spoken_with_and_deleted(make_client, triton):
    client = make_client(voice_aliases=(("alloy", VOICE),))
    created = _upload(client, "mine")
    assert created.status_code == 201, created.text
    assert created.json()["id"] == "mine" and created.json()["transcript"] == REFERENCE_TEXT
    listed = client.get("/v1/audio/voices").json()
    assert [(v["id"], v["source"]) for v in listed["data"]] == [
        (VOICE, "registered"),
        ("mine", "library"),
        ("alloy", "alias"),
    ]
    assert listed["registered"] == "available"
    assert speech(client, voice="mine").status_code == 200
    speaker = triton.requests[-1][1]
    audio, rate = sf.read(str(REFERENCE_WAV), dtype="float32", always_2d=True)
    assert speaker.voice is None and speaker.text == REFERENCE_TEXT and speaker.sample_rate == rate
    np.testing.assert_array_equal(speaker.audio, audio.T)
    assert client.delete("/v1/audio/voices/mine").json() == {
        "id": "mine",
        "object": "audio.voice.deleted",
        "deleted": True,
    }
    assert openai_error(client.delete("/v1/audio/voices/mine"), 404)["code"] == "voice_not_found"
    assert openai_error(client.delete(f"/v1/audio/voices/{VOICE}"), 400)["message"].startswith(
        f"voice '{VOICE}' is registered on the server at export"
    )


@pytest.mark.parametrize(
    "name,data,transcript,param,message",
    [
        ("x" * 65, None, REFERENCE_TEXT, "name", "voice name '" + "x" * 65 + "' is not allowed: use letters, digits"),
        ("ok", None, "é" * 501, "transcript", "'transcript' is 1002 bytes; at most 1000 bytes of UTF-8 are allowed"),
        ("ok", b"RIFF", REFERENCE_TEXT, "audio_sample", "the uploaded audio 'ref.wav' (4 bytes) is not an audio file"),
    ],
)
def test_a_bad_upload_is_refused_in_openais_shape(client, name, data, transcript, param, message):
    error = openai_error(_upload(client, name, data, transcript), 400)
    assert error["param"] == param and error["message"].startswith(message), error


def test_the_library_is_listed_while_triton_cannot_be_asked(client, triton):
    assert _upload(client, "kept").status_code == 201
    triton.info_error = APIError(503, "Triton is not reachable")
    listed = client.get("/v1/audio/voices").json()
    assert [v["id"] for v in listed["data"]] == ["kept"] and listed["registered"] == "unknown: Triton is not reachable"


# --- transcripts: uploads without one, corrections, transcriptions -------------------------------------------------


def _upload_untold(client, name, transcript=None, data=None):
    """An upload without its transcript (absent, or `transcript` as sent)."""
    fields = {"name": name} if transcript is None else {"name": name, "transcript": transcript}
    data = REFERENCE_WAV.read_bytes() if data is None else data
    return client.post("/v1/audio/voices", data=fields, files={"audio_sample": ("ref.wav", data, "audio/wav")})


def _stored(tmp_path, name) -> dict:
    return json.loads((tmp_path / "voices" / name / META_FILE).read_text())


@pytest.mark.parametrize("transcript", [None, "", "  \n"], ids=["absent", "empty", "blank"])
def test_a_voice_uploaded_without_transcript_is_transcribed_as_its_reference(client, triton, tmp_path, transcript):
    created = _upload_untold(client, "untold", transcript)
    assert created.status_code == 201, created.text
    voice = created.json()
    assert (voice["transcript"], voice["transcript_source"]) == (HEARD, "transcribed")
    [asked] = triton.transcriptions
    # The part f5_tts hears as the reference, as the file decodes: the transcript a voice needs.
    audio, rate = sf.read(str(REFERENCE_WAV), dtype="float32", always_2d=True)
    assert asked["as_reference"] is True and asked["language"] is None and asked["sample_rate"] == rate
    np.testing.assert_array_equal(asked["audio"], audio.T)
    stored = _stored(tmp_path, "untold")
    assert (stored["transcript"], stored["transcript_source"]) == (HEARD, "transcribed")
    listed = {v["id"]: v for v in client.get("/v1/audio/voices").json()["data"]}
    assert listed["untold"]["transcript"] == HEARD and listed["untold"]["transcript_source"] == "transcribed"
    assert speech(client, voice="untold").status_code == 200
    assert triton.requests[-1][1].text == HEARD  # spoken with the transcript it was given


def test_a_voice_uploaded_with_its_transcript_is_not_transcribed(client, triton, tmp_path):
    created = _upload(client, "told")
    assert created.status_code == 201, created.text
    assert (created.json()["transcript"], created.json()["transcript_source"]) == (REFERENCE_TEXT, "given")
    assert triton.transcriptions == [] and _stored(tmp_path, "told")["transcript_source"] == "given"


def test_a_voice_stored_before_transcription_existed_reads_as_given(client, tmp_path):
    assert _upload(client, "older").status_code == 201
    meta = _stored(tmp_path, "older")
    del meta["transcript_source"]
    (tmp_path / "voices" / "older" / META_FILE).write_text(json.dumps(meta))
    listed = {v["id"]: v for v in client.get("/v1/audio/voices").json()["data"]}
    assert listed["older"]["transcript_source"] == "given"


def test_without_a_transcriber_an_upload_without_transcript_says_how_to_get_one(client, triton, tmp_path):
    triton.server_info = ServerInfo((ModelInfo(contract.TTS_MODEL, (VOICE,)),))  # exported without --asr
    error = openai_error(_upload_untold(client, "untold"), 400)
    assert (error["param"], error["code"]) == ("transcript", "missing_required_parameter")
    assert error["message"] == (
        "'transcript' is required: this server has no transcriber to transcribe the audio sample (its repository "
        "has no 'transcriber' model); give the words spoken in the sample, or re-export the repository with "
        "`python -m export ... --asr`"
    )
    assert triton.transcriptions == [] and not (tmp_path / "voices" / "untold").exists()
    assert _upload(client, "told").status_code == 201  # with its transcript, as before


def test_a_transcription_that_hears_nothing_asks_for_the_transcript(client, triton, tmp_path):
    triton.heard = ""
    error = openai_error(_upload_untold(client, "untold"), 400)
    assert (error["param"], error["code"]) == ("transcript", "no_speech")
    assert error["message"].startswith(
        "the transcriber heard no speech in the audio sample (its transcript is empty); give 'transcript'"
    )
    assert not (tmp_path / "voices" / "untold").exists()


def test_a_transcription_longer_than_a_transcript_may_be_is_refused(client, triton, tmp_path):
    triton.heard = "w" * 1001
    error = openai_error(_upload_untold(client, "untold"), 400)
    assert error["param"] == "transcript" and error["message"].startswith(
        "the transcription of the audio sample is 1001 bytes, more than a transcript may be (1000 bytes of UTF-8)"
    )
    assert not (tmp_path / "voices" / "untold").exists()


def test_a_transcriber_outage_is_the_503_and_stores_nothing(client, triton, tmp_path):
    triton.transcribe_error = api_error(SynthesisError("failed to connect", errors.GRPC_UNAVAILABLE), URL)
    response = _upload_untold(client, "untold")
    assert openai_error(response, 503)["code"] == "triton_unavailable"
    assert response.headers["retry-after"] == "5"
    assert not (tmp_path / "voices" / "untold").exists()


def test_a_bad_audio_sample_is_refused_before_it_is_transcribed(client, triton):
    error = openai_error(_upload_untold(client, "untold", data=b"RIFF"), 400)
    assert error["param"] == "audio_sample" and triton.transcriptions == []


@pytest.mark.parametrize(
    "message,status,answer,param",
    [
        (
            "input 'language' is 'klingon', which this Whisper does not know; known: af, am, ar",
            "StatusCode.INVALID_ARGUMENT",
            400,
            "language",
        ),
        ("Request for unknown model: 'transcriber' is not found", "StatusCode.NOT_FOUND", 503, None),
        (f"internal error in the transcriber; {errors.SEE_SERVER_LOG}", "StatusCode.INTERNAL", 500, None),
        ("timed out", errors.GRPC_DEADLINE_EXCEEDED, 504, None),
    ],
)
def test_the_transcribers_failures_are_told_apart(message, status, answer, param):
    error = transcription_error(message, status, URL)
    assert (error.status, error.param) == (answer, param)
    if answer == 400:
        assert error.message == "'language' is 'klingon', which this Whisper does not know; known: af, am, ar"
    else:
        assert error.message.endswith(message) and URL in error.message


def test_a_transcript_is_corrected_and_the_correction_persists(client, triton, tmp_path):
    assert _upload_untold(client, "untold").status_code == 201
    corrected = client.patch("/v1/audio/voices/untold", json={"transcript": "  The words, as spoken.  "})
    assert corrected.status_code == 200, corrected.text
    voice = corrected.json()
    assert (voice["id"], voice["transcript"], voice["transcript_source"]) == (
        "untold",
        "The words, as spoken.",
        "given",
    )
    assert voice["seconds"] == pytest.approx(5.333, abs=1e-3)  # the audio is kept
    stored = _stored(tmp_path, "untold")
    assert (stored["transcript"], stored["transcript_source"]) == ("The words, as spoken.", "given")
    left = sorted(p.name for p in (tmp_path / "voices" / "untold").iterdir())
    assert left == sorted(["audio.wav", META_FILE])  # no temporary file left
    listed = {v["id"]: v for v in client.get("/v1/audio/voices").json()["data"]}
    assert listed["untold"]["transcript"] == "The words, as spoken."
    other = VoiceLibrary(tmp_path / "voices")  # another gateway process on the same directory
    assert other.get("untold").transcript == "The words, as spoken."
    assert speech(client, voice="untold").status_code == 200
    assert triton.requests[-1][1].text == "The words, as spoken."
    assert len(triton.transcriptions) == 1  # a correction is not transcribed again


def test_a_transcript_correction_needs_the_key(client):
    assert _upload(client, "mine").status_code == 201
    client.headers.pop("Authorization")
    error = openai_error(client.patch("/v1/audio/voices/mine", json={"transcript": "x"}), 401)
    assert error["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    "name,body,status,param,message",
    [
        ("nobody", {"transcript": "Hi."}, 404, "voice", "no voice 'nobody' in the library; GET /v1/audio/voices"),
        (VOICE, {"transcript": "Hi."}, 400, "voice", "voice 'nature' is registered on the server at export and "),
        ("alloy", {"transcript": "Hi."}, 400, "voice", "'alloy' is an alias of the voice 'nature' (--voice-alias)"),
        ("mine", {"transcript": "  "}, 400, "transcript", "'transcript' is empty or whitespace only"),
        ("mine", {"transcript": "é" * 501}, 400, "transcript", "'transcript' is 1002 bytes; at most 1000 bytes"),
        ("mine", {"transcript": 5}, 400, "transcript", "'transcript' must be a string"),
        ("mine", {}, 400, "transcript", "'transcript' is required"),
        ("mine", {"transcript": "Hi.", "name": "x"}, 400, "name", "unrecognized request argument(s) supplied: 'name'"),
        ("mine", ["Hi."], 400, None, 'the request body must be a JSON object {"transcript": "..."}'),
        ("mine", b"{oops", 400, None, "the request body is not valid JSON"),
    ],
    ids=[
        "unknown",
        "registered",
        "alias",
        "blank",
        "too-long",
        "not-text",
        "missing",
        "unknown-field",
        "array",
        "json",
    ],
)
def test_bad_transcript_corrections_are_refused(make_client, tmp_path, name, body, status, param, message):
    client = make_client(voice_aliases=(("alloy", VOICE),))
    assert _upload(client, "mine").status_code == 201
    if isinstance(body, bytes):
        response = client.patch(f"/v1/audio/voices/{name}", content=body, headers={"Content-Type": "application/json"})
    else:
        response = client.patch(f"/v1/audio/voices/{name}", json=body)
    error = openai_error(response, status)
    assert error["param"] == param and error["message"].startswith(message), error
    assert _stored(tmp_path, "mine")["transcript"] == REFERENCE_TEXT  # unchanged


def test_concurrent_transcript_corrections_are_read_whole(tmp_path):
    """Readers (other processes: a fresh library each time) see one whole transcript or another, never a part."""
    library = VoiceLibrary(tmp_path / "voices")
    library.open()
    audio, rate = sf.read(str(REFERENCE_WAV), dtype="float32", always_2d=True)
    library.add("mine", "first", audio.T, rate, "ref.wav")
    written = {"first"} | {f"transcript number {i} " * 20 for i in range(20)}
    stop = threading.Event()
    seen = set()

    def read():
        while not stop.is_set():
            seen.add(VoiceLibrary(tmp_path / "voices").get("mine").transcript)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for text in sorted(written - {"first"}):
            assert library.set_transcript("mine", text.strip()).transcript == text.strip()
    finally:
        stop.set()
        reader.join()
    assert seen and seen <= {t.strip() for t in written}
    assert library.get("mine").transcript == max(written - {"first"}).strip()
    assert library.set_transcript("nobody", "x") is None and library.set_transcript("../up", "x") is None


def _transcription(client, data=None, filename="speech.wav", **fields):
    data = REFERENCE_WAV.read_bytes() if data is None else data
    return client.post(
        "/v1/audio/transcriptions",
        data={k: v for k, v in fields.items() if v is not None},
        files={"file": (filename, data, "audio/wav")},
    )


def test_transcriptions_answer_in_openais_formats(client, triton):
    audio, rate = sf.read(str(REFERENCE_WAV), dtype="float32", always_2d=True)
    for model in ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", contract.TRANSCRIBER_MODEL, None):
        response = _transcription(client, model=model)
        assert response.status_code == 200, response.text
        assert response.json() == {"text": HEARD}
    asked = triton.transcriptions[-1]
    assert (asked["as_reference"], asked["language"], asked["detect_language"]) == (False, None, False)  # all of it
    np.testing.assert_array_equal(asked["audio"], audio.T)
    text = _transcription(client, model="whisper-1", response_format="text")
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain") and text.text == HEARD
    verbose = _transcription(client, model="whisper-1", response_format="verbose_json")
    assert verbose.json() == {"text": HEARD, "language": "en", "duration": 5.333}
    assert triton.transcriptions[-1]["detect_language"] is True
    told = _transcription(client, model="whisper-1", response_format="verbose_json", language=" de ")
    assert told.json()["language"] == "de" and triton.transcriptions[-1]["language"] == "de"
    # OpenAI's other fields are accepted and ignored, so that its clients work unchanged.
    ignored = _transcription(client, model="whisper-1", prompt="names", temperature="0.2", **{"include[]": "logprobs"})
    assert ignored.status_code == 200 and ignored.json() == {"text": HEARD}


def test_bad_transcription_requests_are_refused_in_openais_shape(client, triton):
    long_wav = io.BytesIO()
    sf.write(long_wav, np.full(31 * 16_000, 0.1, np.float32), 16_000, format="WAV")
    for response, status, param, message in (
        (
            _transcription(client, data=long_wav.getvalue(), model="whisper-1"),
            400,
            "file",
            "the uploaded audio 'speech.wav' (992044 bytes) is 31.00 s long; this server transcribes at most 30 s "
            "(its reference limit, set at export with --max-reference-seconds); send a shorter clip",
        ),
        (_transcription(client, data=b"RIFF"), 400, "file", "the uploaded audio 'speech.wav' (4 bytes) is not an"),
        (
            _transcription(client, response_format="srt"),
            400,
            "response_format",
            "'response_format' is 'srt'; allowed: json, text, verbose_json (the transcriber gives no timestamps",
        ),
        (_transcription(client, stream="true"), 400, "stream", "'stream' is not offered here"),
        (
            client.post("/v1/audio/transcriptions", data={"model": "whisper-1"}, files={"other": ("a", b"?")}),
            400,
            "file",
            "'file' is required (the audio to transcribe)",
        ),
        (client.post("/v1/audio/transcriptions", json={"file": "x"}), 400, None, "send multipart/form-data"),
    ):
        error = openai_error(response, status)
        assert error["param"] == param and error["message"].startswith(message), error
    assert triton.transcriptions == []
    triton.server_info = ServerInfo((ModelInfo(contract.TTS_MODEL, (VOICE,)),))  # exported without --asr
    error = openai_error(_transcription(client, model="whisper-1"), 404)
    assert (error["param"], error["code"]) == ("model", "model_not_found")
    assert error["message"] == (
        "this server has no transcriber (its repository has no 'transcriber' model); re-export it with "
        "`python -m export ... --asr` to transcribe audio"
    )


def test_a_transcription_in_an_unknown_language_names_the_field(client, triton):
    triton.transcribe_error = transcription_error(
        "input 'language' is 'klingon', which this Whisper does not know; known: af, am",
        "StatusCode.INVALID_ARGUMENT",
        URL,
    )
    error = openai_error(_transcription(client, language="klingon"), 400)
    assert (
        error["param"] == "language"
        and error["message"] == "'language' is 'klingon', which this Whisper does not know; known: af, am"
    )


# --- captions ------------------------------------------------------------------------------------------------------


def _sse_events(response) -> list[dict]:
    return [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]


def test_captions_travel_as_sse_events_before_the_audio_they_caption(client, triton):
    first = Cue(0, 0, PIECE, contract.SAMPLE_RATE, "Hello there.", None, (Word("Hello", 0.0, 0.001, True),))
    second = Cue(1, PIECE, 2 * PIECE, contract.SAMPLE_RATE, "Bye.", None, ())
    triton.cues = [[first], [second]]
    response = speech(client, stream_format="sse", captions="vtt")
    assert response.status_code == 200, response.text
    events = _sse_events(response)
    kinds = [e["type"] for e in events]
    assert kinds == [
        "speech.captions",
        "speech.audio.delta",
        "speech.captions",
        "speech.audio.delta",
        "speech.captions.done",
        "speech.audio.done",
    ]
    assert [Cue.from_dict(c) for e in events if e["type"] == "speech.captions" for c in e["chunks"]] == [first, second]
    done = events[4]
    assert done["format"] == "vtt" and done["text"].startswith("WEBVTT") and "Bye." in done["text"]


def test_sse_without_captions_asked_sends_no_caption_event(client, triton):
    triton.cues = [[Cue(0, 0, PIECE, contract.SAMPLE_RATE, "Hello there.", None, ())]]
    events = _sse_events(speech(client, stream_format="sse"))
    assert [e["type"] for e in events] == ["speech.audio.delta", "speech.audio.delta", "speech.audio.done"]


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"captions": "vtt"}, "send 'stream_format': 'sse' with it"),
        ({"captions": "ass", "stream_format": "sse"}, "'captions' is 'ass'; allowed: 'srt', 'vtt', 'json'"),
        ({"captions": True, "stream_format": "sse"}, "'captions' is True; allowed"),
    ],
)
def test_a_captions_request_the_gateway_cannot_answer_is_a_400_naming_the_field(client, triton, fields, message):
    error = openai_error(speech(client, **fields), 400)
    assert message in error["message"] and error["param"] == "captions"
    assert triton.requests == []


# --- several models ------------------------------------------------------------------------------------------------

FR = ModelInfo(
    "f5_tts_fr",
    ("marie",),
    contract.Limits(max_target_text_bytes=200, max_reference_seconds=10.0),
    architecture="F5TTS_Base",
)
IDS = ["f5-tts", "tts-1", "tts-1-hd", "gpt-4o-mini-tts", "f5-tts-fr"]


@pytest.fixture
def two_models(triton) -> FakeTriton:
    """The stand-in serving the default model (voice nature) and `fr` (voice marie, limits of its own)."""
    default = ModelInfo(contract.TTS_MODEL, (VOICE,), architecture="F5TTS_v1_Base")
    triton.server_info = ServerInfo((default, FR), transcriber_model=contract.TRANSCRIBER_MODEL)
    return triton


def _upload_for(client, name, model=None):
    fields = {"name": name, "transcript": REFERENCE_TEXT, **({"model": model} if model is not None else {})}
    return client.post(
        "/v1/audio/voices", data=fields, files={"audio_sample": ("ref.wav", REFERENCE_WAV.read_bytes(), "audio/wav")}
    )


def test_multi_model_ids_are_listed_with_the_model_each_names(client, two_models):
    listed = client.get("/v1/models").json()
    assert listed["discovered"] == "available"
    assert [(m["id"], m["triton_model"], m["alias_of"]) for m in listed["data"]] == [
        ("f5-tts", "f5_tts", None),
        ("tts-1", "f5_tts", "f5-tts"),
        ("tts-1-hd", "f5_tts", "f5-tts"),
        ("gpt-4o-mini-tts", "f5_tts", "f5-tts"),
        ("f5-tts-fr", "f5_tts_fr", None),
    ]
    fr = listed["data"][-1]
    assert fr == {
        "id": "f5-tts-fr",
        "object": "model",
        "created": 0,
        "owned_by": "f5-tts-triton",
        "name": "fr",
        "triton_model": "f5_tts_fr",
        "stream_model": "f5_tts_fr_stream",
        "default": False,
        "alias_of": None,
        "architecture": "F5TTS_Base",
        "demo_model": False,
        "max_input_chars": 4096,
        "max_input_bytes": 200,  # its own limit
    }
    assert listed["data"][0]["architecture"] == "F5TTS_v1_Base" and listed["data"][0]["max_input_bytes"] == 16384
    # the repository's spellings are accepted, and say which id they are an alias of
    for asked, own in [("fr", "f5-tts-fr"), ("f5_tts_fr", "f5-tts-fr"), ("default", "f5-tts"), ("f5_tts", "f5-tts")]:
        got = client.get(f"/v1/models/{asked}").json()
        assert (got["id"], got["alias_of"]) == (asked, own)
    assert client.get("/v1/models/f5-tts-fr").json() == fr


def test_multi_model_speech_is_sent_to_the_model_it_names(client, two_models):
    for model in ("f5-tts-fr", "fr", "f5_tts_fr", "f5-tts", "tts-1", "default"):
        assert speech(client, model=model, voice="marie" if "fr" in model else VOICE).status_code == 200, model
    assert two_models.models == ["f5_tts_fr"] * 3 + ["f5_tts"] * 3
    assert two_models.requests[0][1] == Speaker(voice="marie")  # fr's registered voice, by name


@pytest.mark.parametrize("model", ["f5-tts-de", "de", "f5_tts_de", "tts-2", "f5-tts-", "F5-TTS"])
def test_multi_model_an_unknown_model_is_openais_404_naming_the_ids(client, two_models, model):
    error = openai_error(speech(client, model=model, voice=VOICE), 404)
    assert (error["param"], error["code"]) == ("model", "model_not_found")
    assert error["message"] == (
        f"the model {model!r} does not exist; available: {', '.join(IDS)} (GET /v1/models); a model may also be "
        "named by its short name or its Triton name (fr or f5_tts_fr for f5-tts-fr)"
    )
    assert two_models.requests == []
    # a name that could be a model (f5_tts_NAME) is looked up on Triton again: it may have been loaded since
    assert two_models.refreshes == (1 if "de" in model else 0)
    assert openai_error(client.get(f"/v1/models/{model}"), 404)["message"] == error["message"]


def test_multi_model_a_model_loaded_later_is_served_at_once(client, two_models):
    assert openai_error(speech(client, model="f5-tts-de"), 404)["code"] == "model_not_found"
    de = ModelInfo("f5_tts_de", ("hans",), contract.LIMITS)
    two_models.server_info = dataclasses.replace(two_models.server_info, models=(*two_models.server_info.models, de))
    assert speech(client, model="f5-tts-de", voice="hans").status_code == 200
    assert two_models.models == ["f5_tts_de"] and two_models.refreshes == 1


def test_multi_model_voices_belong_to_a_model_or_are_shared(client, two_models, tmp_path):
    fr_voice = _upload_for(client, "fr-voice", "fr")
    assert fr_voice.status_code == 201, fr_voice.text
    assert fr_voice.json()["model"] == "f5-tts-fr"
    assert _stored(tmp_path, "fr-voice")["model"] == "fr"  # the model's short name, as its export named it
    shared = _upload_for(client, "shared")
    assert shared.status_code == 201 and shared.json()["model"] is None
    assert "model" not in _stored(tmp_path, "shared")  # as every voice stored before models existed
    assert _upload_for(client, "mine", "f5_tts").json()["model"] == "f5-tts"

    def listed(model=None):
        query = {} if model is None else {"model": model}
        return [(v["id"], v["source"], v["model"]) for v in client.get("/v1/audio/voices", params=query).json()["data"]]

    assert listed() == [
        (VOICE, "registered", "f5-tts"),
        ("marie", "registered", "f5-tts-fr"),
        ("fr-voice", "library", "f5-tts-fr"),
        ("mine", "library", "f5-tts"),
        ("shared", "library", None),
    ]
    assert (
        listed("f5-tts-fr")
        == listed("fr")
        == [
            ("marie", "registered", "f5-tts-fr"),
            ("fr-voice", "library", "f5-tts-fr"),
            ("shared", "library", None),
        ]
    )
    assert listed("tts-1") == [
        (VOICE, "registered", "f5-tts"),
        ("mine", "library", "f5-tts"),
        ("shared", "library", None),
    ]
    assert openai_error(client.get("/v1/audio/voices", params={"model": "de"}), 404)["code"] == "model_not_found"

    # each voice with its own model, a shared one with either
    for model, voice in [
        ("fr", "fr-voice"),
        ("fr", "marie"),
        ("fr", "shared"),
        ("f5-tts", "shared"),
        ("f5-tts", "mine"),
    ]:
        assert speech(client, model=model, voice=voice).status_code == 200, (model, voice)
    # another model's voice: a 400 naming the voice's model
    for model, voice, owner, asked in [
        ("f5-tts", "fr-voice", "f5-tts-fr", "f5-tts"),
        ("tts-1", "marie", "f5-tts-fr", "f5-tts"),
        ("fr", VOICE, "f5-tts", "f5-tts-fr"),
        ("fr", "mine", "f5-tts", "f5-tts-fr"),
    ]:
        error = openai_error(speech(client, model=model, voice=voice), 400)
        assert (error["param"], error["code"]) == ("voice", "voice_model_mismatch")
        assert error["message"] == (
            f"voice {voice!r} belongs to the model {owner}, not to {asked}: speak it with that model, or pick a "
            f"voice of {asked} or a shared one (GET /v1/audio/voices?model={asked})"
        )
    unknown = openai_error(speech(client, model="fr", voice="nobody"), 400)
    assert unknown["message"] == (
        "unknown voice 'nobody'; known voices: fr-voice, marie, shared (for f5-tts-fr) (upload one with POST "
        "/v1/audio/voices)"
    )


def test_multi_model_an_alias_is_listed_with_its_voices_model(make_client, two_models):
    client = make_client(voice_aliases=(("alloy", VOICE), ("nova", "marie"), ("echo", "missing")))
    aliases = {v["id"]: v["model"] for v in client.get("/v1/audio/voices").json()["data"] if v["source"] == "alias"}
    assert aliases == {"alloy": "f5-tts", "nova": "f5-tts-fr", "echo": None}
    for_fr = [v["id"] for v in client.get("/v1/audio/voices?model=fr").json()["data"]]
    assert for_fr == ["marie", "nova", "echo"]  # not alloy: nature is the default model's
    assert speech(client, model="fr", voice="nova").status_code == 200
    error = openai_error(speech(client, model="fr", voice="alloy"), 400)
    assert error["message"].startswith(
        "voice 'nature' (the alias 'alloy' names it: --voice-alias) belongs to the model f5-tts"
    )


def test_multi_model_uploads_meet_their_models_limits(client, two_models, tmp_path):
    """fr takes references of at most 4 s (its export's); the 5.3 s sample is refused for it, and as a shared
    voice (a shared voice must suit every model), but taken for the default model."""
    short = dataclasses.replace(FR, limits=contract.Limits(max_reference_seconds=4.0))
    two_models.server_info = dataclasses.replace(two_models.server_info, models=(two_models.server_info.default, short))
    for model in ("fr", None):
        error = openai_error(_upload_for(client, "long", model), 400)
        assert error["param"] == "audio_sample" and "5.33 s long" in error["message"] and "4 s" in error["message"]
    assert not (tmp_path / "voices" / "long").exists()
    assert _upload_for(client, "long", "f5-tts").status_code == 201
    unknown = openai_error(_upload_for(client, "other", "de"), 404)
    assert (unknown["param"], unknown["code"]) == ("model", "model_not_found")
    taken = openai_error(_upload_for(client, "marie", None), 409)
    assert taken["message"] == (
        "voice 'marie' is registered on the server (at export) for the model f5-tts-fr; choose another name"
    )


class FakeGrpc:
    """tritonclient.grpc.aio's InferenceServerClient, as far as Triton.info asks it: the repository index and
    the models' configs."""

    def __init__(self) -> None:
        self.index = {
            "f5_tts": "READY",
            "f5_tts_stream": "READY",
            "vocoder": "READY",
            "transcriber": "READY",
            "f5_tts_fr": "READY",
            "f5_tts_fr_stream": "READY",
            "f5_tts_de": "UNAVAILABLE",  # not loaded (yet)
        }
        self.configs = {
            "f5_tts": {"voices": "nature", "f5_model_name": "F5TTS_v1_Base", "transcriber_model": "transcriber"},
            "f5_tts_fr": {"f5_model_name": "F5TTS_Base", "max_target_text_bytes": "200", "some_new_knob": "1"},
            "f5_tts_de": {"voices": "hans"},
        }
        self.asked = 0

    async def get_model_repository_index(self, as_json=False, client_timeout=None):
        self.asked += 1
        return {"models": [{"name": n, "version": "1", "state": s} for n, s in self.index.items()]}

    async def get_model_config(self, name, as_json=False, client_timeout=None):
        params = {k: {"string_value": v} for k, v in self.configs[name].items()}
        return {"config": {"name": name, "parameters": params}}


def test_multi_model_triton_finds_the_models_in_its_repository_index():
    """Every READY model that contract.is_tts_model names (not streams, vocoders or the transcriber), each
    with its config's voices, limits and architecture; asked again after info_ttl, or on refresh once
    refresh_interval has passed; without a ready f5_tts the server is unavailable."""
    from gateway.triton import Triton

    async def run():
        grpc = FakeGrpc()
        triton = Triton((URL,), timeout=10, info_ttl=3600, refresh_interval=3600)
        triton._clients = [grpc]
        info = await triton.info()
        assert [m.triton_model for m in info.models] == ["f5_tts", "f5_tts_fr"]
        assert info.transcriber_model == "transcriber" and info.voices == ("nature",)
        fr = info.model("f5_tts_fr")
        assert (fr.name, fr.stream_model, fr.architecture, fr.voices) == ("fr", "f5_tts_fr_stream", "F5TTS_Base", ())
        assert fr.limits.max_target_text_bytes == 200 and info.default.limits.max_target_text_bytes == 16384
        grpc.index["f5_tts_de"] = "READY"  # loaded since
        assert await triton.info(refresh=True) is info and grpc.asked == 1  # asked a moment ago: not again
        triton.refresh_interval = 0
        info = await triton.info(refresh=True)
        assert [m.triton_model for m in info.models] == ["f5_tts", "f5_tts_fr"]  # speech needs its stream model
        grpc.index["f5_tts_de_stream"] = "READY"
        info = await triton.info(refresh=True)
        assert [m.triton_model for m in info.models] == ["f5_tts", "f5_tts_de", "f5_tts_fr"] and grpc.asked == 3
        assert info.owners("hans") == [info.model("f5_tts_de")]
        triton.info_ttl = 0
        grpc.index["f5_tts"] = "UNAVAILABLE"
        with pytest.raises(APIError) as refused:
            await triton.info()
        assert refused.value.status == 503 and refused.value.message == (
            f"Triton is not reachable or serves no f5_tts model: {URL}: model f5_tts is not ready (F5-TTS "
            "models ready: f5_tts_de, f5_tts_fr)"
        )

    asyncio.run(run())
