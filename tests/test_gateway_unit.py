"""The gateway's app without a server: FastAPI's TestClient in front of a stand-in for the Triton side
(the SpeechServer interface of gateway/triton.py). Request parsing, OpenAI's error shape, the API key,
the in-flight limit (429), health, the voice library and how Triton's failures are answered."""

from __future__ import annotations

import asyncio
import concurrent.futures
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
from export.repository import REFERENCE_TEXT, REFERENCE_WAV
from gateway.app import create_app
from gateway.errors import APIError
from gateway.settings import Settings
from gateway.triton import ServerInfo, Speaker, api_error
from gateway.voice_library import VoiceLibrary

pytestmark = pytest.mark.unit

KEY = "unit-key"
VOICE = "nature"
PIECE = 2400  # samples per piece the stand-in sends: 0.1 s
URL = "triton.test:8001"


class FakeTriton:
    """Answers as Triton would: registered voices and limits, readiness, and `pieces` pieces of speech per
    request. `fail` is raised instead of the first piece; the second piece waits for `hold`."""

    def __init__(self, voices=(VOICE,), pieces: int = 2) -> None:
        self.server_info = ServerInfo(tuple(voices), contract.LIMITS)
        self.pieces = pieces
        self.ready: dict[str, str | None] = {URL: None}
        self.fail: Exception | None = None
        self.info_error: APIError | None = None
        self.hold = threading.Event()
        self.hold.set()
        self.requests: list[tuple[str, Speaker, SynthesisOptions]] = []
        self.events: list[str] = []

    async def start(self) -> None:
        self.events.append("start")

    async def close(self) -> None:
        self.events.append("close")

    async def readiness(self) -> dict[str, str | None]:
        return dict(self.ready)

    async def info(self) -> ServerInfo:
        if self.info_error:
            raise self.info_error
        return self.server_info

    async def stream(self, text, speaker, options):
        self.requests.append((text, speaker, options))
        if self.fail:
            raise self.fail
        for i in range(self.pieces):
            while i and not self.hold.is_set():
                await asyncio.sleep(0.005)
            yield np.full(PIECE, 0.25, np.float32)


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
    triton.server_info = ServerInfo((VOICE,), contract.Limits(max_target_text_bytes=100), demo_model=True)
    assert client.get("/v1/models/tts-1").json() == {
        "id": "tts-1",
        "object": "model",
        "created": 0,
        "owned_by": "f5-tts-triton",
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
        ("ok", None, "  ", "transcript", "'transcript' is empty or whitespace only; give the words spoken"),
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
