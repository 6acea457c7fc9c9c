"""The OpenAI-compatible gateway (gateway/) in front of a real tritonserver: the official `openai` SDK,
curl, every response format decoded back to samples and compared with Triton's own answer, bad inputs,
the voice library (voices transcribed by the server's transcriber, corrected transcripts), transcriptions,
a client that leaves mid-stream, and a Triton that is not there."""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf
from conftest import (
    GATEWAY_KEY,
    LONG_TEXT,
    SHORT_TEXT,
    VOICE,
    Gateway,
    assert_same_audio,
    behind_a_long_request,
    calls_shared_a_batch,
    wait_for,
)

import contract
from client import SynthesisOptions, stream_synthesize
from client.audio import pcm16
from export.repository import REFERENCE_TEXT, REFERENCE_WAV
from launcher.server import free_port

NFE = 4
SEED = 7
VERY_LONG_TEXT = " ".join([LONG_TEXT] * 3)  # many text chunks: a client that leaves early leaves most undone
FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
MP3_FRAME = 576  # samples per MPEG-2 layer III frame (24 kHz)
MP3_DELAY = 1105  # libmp3lame's delay with the decoder's (576 + 529): what an unmarked mp3 starts with
AAC_FRAME = AAC_DELAY = 1024  # FFmpeg's AAC: one frame of priming, which ADTS cannot mark


def sdk(gateway, **kwargs) -> openai.OpenAI:
    # No retries: a test must see the first answer (the SDK retries 429/5xx by default).
    return openai.OpenAI(
        base_url=f"{gateway.url}/v1", api_key=kwargs.pop("api_key", GATEWAY_KEY), max_retries=0, timeout=120, **kwargs
    )


def speech_body(text=LONG_TEXT, **fields) -> dict:
    body = {"model": "f5-tts", "input": text, "voice": VOICE, "nfe_step": NFE, "seed": SEED}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


def post(gateway, path, key=GATEWAY_KEY, headers=None, **kwargs) -> httpx.Response:
    headers = {**({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
    return httpx.post(f"{gateway.url}{path}", headers=headers, timeout=120, **kwargs)


_triton_answers: dict = {}


def triton_answer(server, text=LONG_TEXT, voice=VOICE, **options) -> np.ndarray:
    """What Triton's stream model answers the project's gRPC client for the same request (joined pieces)."""
    options = {"nfe_step": NFE, "seed": SEED, **options}
    key = (text, voice, tuple(sorted(options.items())))
    if key not in _triton_answers:
        pieces = stream_synthesize(
            text, voice=voice, url=server.grpc_url, options=SynthesisOptions(**options), timeout=120
        )
        _triton_answers[key] = np.concatenate(list(pieces))
    return _triton_answers[key]


def as_int16(wave: np.ndarray) -> np.ndarray:
    return np.frombuffer(pcm16(wave), dtype="<i2")


def decode(fmt: str, data: bytes) -> tuple[np.ndarray, int]:
    """The answer's samples (int16 for the lossless formats) and sample rate, decoded by libraries."""
    if fmt == "pcm":
        assert len(data) % 2 == 0
        return np.frombuffer(data, dtype="<i2"), contract.SAMPLE_RATE  # the rate is the format's definition
    if fmt == "aac":  # libsndfile has no AAC: FFmpeg's decoder through PyAV
        import av

        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.audio[0]
            frames = [f.to_ndarray().reshape(-1) for f in container.decode(stream)]
            return np.concatenate(frames), stream.codec_context.sample_rate
    dtype = "int16" if fmt in ("wav", "flac") else "float32"
    samples, rate = sf.read(io.BytesIO(data), dtype=dtype)
    assert samples.ndim == 1  # mono
    return samples, rate


def metric(server, name: str, labels: str) -> float:
    with urllib.request.urlopen(server.metrics_url, timeout=10) as r:
        text = r.read().decode()
    found = re.search(rf"^{name}{{{re.escape(labels)}}} (\S+)$", text, re.M)
    assert found, f"{name}{{{labels}}} is not on {server.metrics_url}"
    return float(found.group(1))


def _stats(server) -> int:
    with urllib.request.urlopen(f"http://{server.http_url}/v2/models/{contract.TTS_MODEL}/stats", timeout=10) as r:
        return int(json.load(r)["model_stats"][0]["inference_stats"]["success"]["count"])


# --- the official openai SDK ---------------------------------------------------------------------------------------


def test_openai_sdk_speech_create_answers_mp3_by_default(gateway, server):
    answer = sdk(gateway).audio.speech.create(
        model="f5-tts", voice=VOICE, input=LONG_TEXT, extra_body={"nfe_step": NFE, "seed": SEED}
    )
    assert answer.response.headers["content-type"] == "audio/mpeg"
    samples, rate = decode("mp3", answer.content)  # libsndfile's mpg123 reads the LAME tag too
    want = triton_answer(server)
    assert rate == contract.SAMPLE_RATE
    assert want.size <= samples.size < want.size + MP3_FRAME  # the encoder delay dropped, at most padding left


def test_openai_sdk_streams_a_wav_to_a_file_equal_to_tritons_answer(gateway, server, tmp_path):
    path = tmp_path / "speech.wav"
    with sdk(gateway).audio.speech.with_streaming_response.create(
        model="f5-tts", voice=VOICE, input=LONG_TEXT, response_format="wav", extra_body={"nfe_step": NFE, "seed": SEED}
    ) as response:
        assert response.headers.get("transfer-encoding") == "chunked"  # sent as produced, length unknown
        response.stream_to_file(path)
    samples, rate = sf.read(str(path), dtype="int16")
    assert rate == contract.SAMPLE_RATE
    np.testing.assert_array_equal(samples, as_int16(triton_answer(server)))


def test_openai_sdk_sse_events_carry_the_audio(gateway, server):
    with sdk(gateway).audio.speech.with_streaming_response.create(
        model="f5-tts",
        voice=VOICE,
        input=LONG_TEXT,
        response_format="pcm",
        stream_format="sse",
        extra_body={"nfe_step": NFE, "seed": SEED},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[len("data:") :]) for line in response.iter_lines() if line.startswith("data:")]
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert len(deltas) >= 3 and events[-1]["type"] == "speech.audio.done"  # one delta per text chunk, then done
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1)
    audio = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    want = as_int16(triton_answer(server))
    np.testing.assert_array_equal(np.frombuffer(audio, dtype="<i2"), want)
    usage = events[-1]["usage"]
    assert usage["input_tokens"] == len(LONG_TEXT)
    assert usage["output_tokens"] == want.size // contract.HOP_LENGTH
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_openai_sdk_lists_and_retrieves_models(gateway):
    """Ours and OpenAI's ids, which clients such as Open WebUI and Home Assistant hardcode (the default model's),
    then the session's second model (test_gateway_multi_model)."""
    client = sdk(gateway)
    assert [m.id for m in client.models.list()] == ["f5-tts", "tts-1", "tts-1-hd", "gpt-4o-mini-tts", "f5-tts-fr"]
    assert client.models.retrieve("f5-tts").owned_by == "f5-tts-triton"
    assert client.models.retrieve("tts-1").id == "tts-1"
    with pytest.raises(
        openai.NotFoundError,
        match="the model 'tts-2' does not exist; available: f5-tts, tts-1, tts-1-hd, gpt-4o-mini-tts",
    ):
        client.models.retrieve("tts-2")


def test_openais_model_ids_speak_as_f5_tts(gateway, server):
    for model in ("tts-1", "gpt-4o-mini-tts"):
        answer = sdk(gateway).audio.speech.create(
            model=model,
            voice=VOICE,
            input=SHORT_TEXT,
            response_format="pcm",
            extra_body={"nfe_step": NFE, "seed": SEED},
        )
        np.testing.assert_array_equal(np.frombuffer(answer.content, "<i2"), as_int16(triton_answer(server, SHORT_TEXT)))


# --- every format, decoded -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_decodes_to_the_tritons_answer(gateway, server, fmt):
    response = post(gateway, "/v1/audio/speech", json=speech_body(response_format=fmt))
    assert response.status_code == 200, response.text
    samples, rate = decode(fmt, response.content)
    want = as_int16(triton_answer(server))
    assert rate == contract.SAMPLE_RATE
    if fmt in ("pcm", "wav", "flac"):  # lossless: exactly the 16-bit samples of Triton's answer
        np.testing.assert_array_equal(samples, want)
    elif fmt == "opus":  # Ogg keeps the exact length (pre-skip and end trimming)
        assert samples.size == want.size
    elif fmt == "mp3":  # the LAME tag drops the encoder delay; at most padding is left (test_mp3_...)
        assert want.size <= samples.size < want.size + MP3_FRAME, (samples.size, want.size)
    else:  # ADTS cannot mark the encoder delay (test_aac_...)
        assert want.size + AAC_DELAY <= samples.size < want.size + AAC_DELAY + AAC_FRAME, (samples.size, want.size)
    assert np.abs(samples).max() > 0


def test_a_format_that_is_not_openais_is_a_400(gateway):
    response = post(gateway, "/v1/audio/speech", json=speech_body(response_format="ogg"))
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": "'response_format' is 'ogg'; allowed: mp3, opus, aac, flac, wav, pcm",
        "type": "invalid_request_error",
        "param": "response_format",
        "code": None,
    }


@pytest.mark.slow  # a gateway process of its own
def test_a_format_the_gateway_cannot_encode_is_a_400_not_a_500(server, tmp_path, monkeypatch):
    """PyAV missing (a slim install): mp3 and aac are refused up front, the others still work."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "av.py").write_text("raise ImportError('no PyAV here', name='av')\n")
    monkeypatch.setenv("PYTHONPATH", str(shim))
    gw = Gateway([server.grpc_url], tmp_path / "voices", tmp_path / "gateway.log")
    try:
        gw.wait_live()
        response = post(gw, "/v1/audio/speech", json=speech_body(SHORT_TEXT, response_format="aac"))
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["param"] == "response_format" and error["code"] == "unsupported_response_format"
        assert error["message"] == (
            "response_format 'aac' cannot be produced by this gateway: PyAV (FFmpeg aac) is "
            "not installed (av); available: opus, flac, wav, pcm"
        )
        assert post(gw, "/v1/audio/speech", json=speech_body(SHORT_TEXT, response_format="opus")).status_code == 200
    finally:
        gw.stop()


# --- curl ----------------------------------------------------------------------------------------------------------


def test_curl_from_the_readme(gateway, server, tmp_path):
    curl = shutil.which("curl")
    assert curl, "curl is not installed"
    out = tmp_path / "speech.flac"
    body = json.dumps(speech_body(response_format="flac"))
    proc = subprocess.run(
        [
            curl,
            "-sS",
            "-f",
            f"{gateway.url}/v1/audio/speech",
            "-H",
            f"Authorization: Bearer {GATEWAY_KEY}",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
            "-o",
            str(out),
            "-D",
            "-",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "content-type: audio/flac" in proc.stdout.lower()
    samples, rate = sf.read(str(out), dtype="int16")
    assert rate == contract.SAMPLE_RATE
    np.testing.assert_array_equal(samples, as_int16(triton_answer(server)))
    refused = subprocess.run(
        [
            curl,
            "-sS",
            f"{gateway.url}/v1/audio/speech",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
            "-w",
            "%{http_code}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.stdout.endswith("401") and '"code":"invalid_api_key"' in refused.stdout


# --- bad inputs ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body,status,param,message",
    [
        pytest.param(speech_body(""), 400, "input", "'input' is empty or whitespace only", id="empty_input"),
        pytest.param(speech_body("   "), 400, "input", "'input' is empty or whitespace only", id="blank_input"),
        pytest.param(
            speech_body("a" * 4097),
            400,
            "input",
            "'input' is 4097 characters; at most 4096 are allowed",
            id="input_over_openais_limit",
        ),
        pytest.param(
            speech_body(voice="alloy"),
            400,
            "voice",
            "unknown voice 'alloy'; known voices: nature (upload one with POST /v1/audio/voices)",
            id="openai_voice_is_not_invented",
        ),
        pytest.param(
            speech_body(voice={"id": "nobody"}), 400, "voice", "unknown voice 'nobody'", id="unknown_voice_id"
        ),
        pytest.param(
            speech_body(voice=42),
            400,
            "voice",
            "'voice' must be a voice name or {\"id\": name}",
            id="voice_not_a_string",
        ),
        pytest.param(
            speech_body(model="tts-2"),
            404,
            "model",
            "the model 'tts-2' does not exist; available: f5-tts, tts-1, tts-1-hd, gpt-4o-mini-tts, f5-tts-fr (GET "
            "/v1/models)",
            id="unknown_model",
        ),
        pytest.param(
            speech_body(speed=4.5), 400, "speed", "'speed' is 4.5; allowed range is [0.25, 4.0]", id="speed_too_high"
        ),
        pytest.param(
            speech_body(speed=0.1), 400, "speed", "'speed' is 0.1; allowed range is [0.25, 4.0]", id="speed_too_low"
        ),
        pytest.param(
            speech_body(speed="fast"),
            400,
            "speed",
            "'speed' must be a finite number, got string 'fast'",
            id="speed_not_a_number",
        ),
        pytest.param(
            speech_body(stream_format="chunks"),
            400,
            "stream_format",
            "'stream_format' is 'chunks'; allowed: audio, sse",
            id="unknown_stream_format",
        ),
        pytest.param(
            speech_body(stream=True, stream_format="sse"),
            400,
            "stream",
            "'stream': true means stream_format 'audio' (raw audio bytes), but 'stream_format' is 'sse'; send one "
            "of the two",
            id="stream_true_with_sse",
        ),
        pytest.param(
            speech_body(stream="yes"),
            400,
            "stream",
            "'stream' must be true or false, got string 'yes'",
            id="stream_not_a_boolean",
        ),
        pytest.param(
            speech_body(instructions="x" * 4097),
            400,
            "instructions",
            "'instructions' is 4097 characters; at most 4096 are allowed",
            id="instructions_over_openais_limit",
        ),
        pytest.param(
            speech_body(nfe_step="16"),
            400,
            "nfe_step",
            "'nfe_step' must be an integer, got string '16'",
            id="nfe_step_not_an_integer",
        ),
        pytest.param(
            speech_body(nfe_step=500),
            400,
            "nfe_step",
            "'nfe_step' is 500; allowed range is [1, 128]",
            id="nfe_step_out_of_range_says_triton",
        ),
        pytest.param(
            speech_body(seed=2**64),
            400,
            "seed",
            "'seed' is 18446744073709551616, outside the INT64 range",
            id="seed_too_large",
        ),
        pytest.param(
            speech_body(duration=1.0),
            400,
            "duration",
            "'duration' is 1.0 s but must exceed the reference",
            id="duration_shorter_than_the_reference_says_triton",
        ),
        pytest.param(
            speech_body(temperature=0.7),
            400,
            "temperature",
            "unrecognized request argument(s) supplied: 'temperature'; allowed: model, input, voice",
            id="unknown_argument",
        ),
        pytest.param({"input": "Hello.", "voice": VOICE}, 400, "model", "'model' is required", id="missing_model"),
        pytest.param([1, 2], 400, None, "the request body must be a JSON object, got array", id="not_an_object"),
    ],
)
def test_bad_requests_get_openais_error_shape(gateway, body, status, param, message):
    response = post(gateway, "/v1/audio/speech", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert message in error["message"], error["message"]


def test_bad_json_and_wrong_keys(gateway):
    not_json = post(gateway, "/v1/audio/speech", content=b"{oops", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400 and "the request body is not valid JSON" in not_json.json()["error"]["message"]
    for key, message in (
        (None, "missing API key: send the header 'Authorization: Bearer <key>'"),
        ("wrong", "incorrect API key provided"),
    ):
        refused = post(gateway, "/v1/audio/speech", key=key, json=speech_body())
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert refused.json()["error"] == {
            "message": refused.json()["error"]["message"],
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
        assert message in refused.json()["error"]["message"]
    with pytest.raises(openai.AuthenticationError, match="incorrect API key provided"):
        sdk(gateway, api_key="wrong").audio.speech.create(model="f5-tts", voice=VOICE, input="Hello.")
    with pytest.raises(openai.BadRequestError, match="unknown voice 'alloy'"):
        sdk(gateway).audio.speech.create(model="f5-tts", voice="alloy", input="Hello.")
    assert httpx.get(f"{gateway.url}/health/live").status_code == 200  # health and the page need no key
    assert httpx.get(f"{gateway.url}/").status_code == 200


def test_the_gateway_serves_on_after_bad_requests(gateway, server):
    # after every refusal above (this module runs them first), a good request is answered in full
    response = post(gateway, "/v1/audio/speech", json=speech_body(response_format="pcm"))
    assert response.status_code == 200
    np.testing.assert_array_equal(np.frombuffer(response.content, "<i2"), as_int16(triton_answer(server)))
    assert "Traceback" not in gateway.log_text()


def test_speed_maps_onto_the_models_range(gateway, server):
    """OpenAI's 0.25-4 onto F5-TTS's 0.3-3: equal inside both, the nearest end beyond."""

    def pcm(**fields):
        response = post(gateway, "/v1/audio/speech", json=speech_body(SHORT_TEXT, response_format="pcm", **fields))
        assert response.status_code == 200, response.text
        return np.frombuffer(response.content, "<i2")

    np.testing.assert_array_equal(pcm(speed=2.0), as_int16(triton_answer(server, SHORT_TEXT, speed=2.0)))
    np.testing.assert_array_equal(pcm(speed=4.0), as_int16(triton_answer(server, SHORT_TEXT, speed=3.0)))
    np.testing.assert_array_equal(pcm(speed=0.25), as_int16(triton_answer(server, SHORT_TEXT, speed=0.3)))
    assert pcm(speed=2.0).size < pcm(speed=1.0).size


def test_4096_characters_of_a_four_byte_script_are_spoken(gateway):
    """OpenAI's 4096-character cap, in a script whose every character takes 4 bytes of UTF-8: the server's
    default byte limit covers it. `duration` keeps the one long chunk within the per-chunk audio limit
    (the model still needs a frame per character), and one ODE step keeps the test short."""
    text = "\U0001f600" * contract.MAX_TEXT_CHARS
    assert len(text.encode()) == contract.LIMITS.max_target_text_bytes == 16384
    response = post(
        gateway, "/v1/audio/speech", json=speech_body(text, response_format="pcm", nfe_step=1, duration=8.0)
    )
    assert response.status_code == 200, response.text
    # f5-tts needs a mel frame per character, reference included (~44 s in all): more than `duration` asked
    assert len(response.content) // 2 > 30 * contract.SAMPLE_RATE


def test_stream_true_is_stream_format_audio_and_false_no_preference(gateway, server):
    """Kokoro-style clients send `stream`; its conflict with stream_format "sse" is a 400 (bad requests)."""
    want = as_int16(triton_answer(server, SHORT_TEXT))
    for stream in (True, False):
        response = post(gateway, "/v1/audio/speech", json=speech_body(SHORT_TEXT, response_format="pcm", stream=stream))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("audio/pcm")
        np.testing.assert_array_equal(np.frombuffer(response.content, "<i2"), want)
    events = post(
        gateway,
        "/v1/audio/speech",
        json=speech_body(SHORT_TEXT, response_format="pcm", stream=False, stream_format="sse"),
    )
    assert events.status_code == 200 and events.headers["content-type"].startswith("text/event-stream")


def _decoded_length(data: bytes) -> int:
    """Samples FFmpeg's decoder returns (through PyAV), honouring what the file says to drop."""
    import av

    with av.open(io.BytesIO(data)) as container:
        return sum(frame.samples for frame in container.decode(container.streams.audio[0]))


def test_mp3_marks_its_encoder_delay_so_decoders_drop_it(gateway):
    """The mp3 answer's LAME tag (sent whole: the tag is completed at the end) carries libmp3lame's delay and
    padding: FFmpeg decodes it to the wav answer's length within a frame. The sse deltas cannot carry it
    (the first frame is gone before the length is known): their delay is the documented 1105 samples."""

    def answer(**fields) -> bytes:
        response = post(gateway, "/v1/audio/speech", json=speech_body(**fields))
        assert response.status_code == 200, response.text
        return response.content

    wav, _ = sf.read(io.BytesIO(answer(response_format="wav")), dtype="int16")
    mp3 = answer(response_format="mp3")
    assert b"Info" in mp3[:512]  # the LAME tag's frame: a CBR file's "Info"
    assert wav.size <= _decoded_length(mp3) < wav.size + MP3_FRAME
    events = [
        json.loads(line[5:])
        for line in answer(response_format="mp3", stream_format="sse").decode().splitlines()
        if line.startswith("data:")
    ]
    streamed = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    assert wav.size + MP3_DELAY <= _decoded_length(streamed) < wav.size + MP3_DELAY + 2 * MP3_FRAME


def test_aac_carries_its_documented_encoder_delay(gateway):
    """ADTS has no field for priming: the aac answer decodes to 1024 samples of delay, the speech, and less
    than a frame of padding, as docs/gateway.md says."""
    wav = post(gateway, "/v1/audio/speech", json=speech_body(response_format="wav"))
    aac = post(gateway, "/v1/audio/speech", json=speech_body(response_format="aac"))
    assert wav.status_code == aac.status_code == 200
    samples = sf.read(io.BytesIO(wav.content), dtype="int16")[0].size
    assert samples + AAC_DELAY <= _decoded_length(aac.content) < samples + AAC_DELAY + AAC_FRAME


# --- options: model ids, voice aliases, CORS, the input limit --------------------------------------------------------

ORIGIN = "https://chat.example.com"


@pytest.fixture(scope="module")
def configured(server, tmp_path_factory):
    """A gateway with the options of this section, in front of the session's server."""
    work = tmp_path_factory.mktemp("configured")
    gw = Gateway(
        [server.grpc_url],
        work / "voices",
        work / "gateway.log",
        "--model-id",
        "my-tts",
        "--voice-alias",
        "alloy=nature",
        "--voice-alias",
        "echo=missing",
        "--cors-origin",
        ORIGIN,
        "--max-input-chars",
        "5000",
    )
    try:
        yield gw.wait_live()
    finally:
        gw.stop()


def test_model_id_adds_to_the_default_ids(configured):
    listed = httpx.get(f"{configured.url}/v1/models", headers={"Authorization": f"Bearer {GATEWAY_KEY}"}).json()
    assert [m["id"] for m in listed["data"]] == [
        "f5-tts",
        "tts-1",
        "tts-1-hd",
        "gpt-4o-mini-tts",
        "my-tts",
        "f5-tts-fr",
    ]
    assert {m["id"]: m["alias_of"] for m in listed["data"]}["my-tts"] == "f5-tts"
    assert post(configured, "/v1/audio/speech", json=speech_body(SHORT_TEXT, model="my-tts")).status_code == 200
    assert post(configured, "/v1/audio/speech", json=speech_body(SHORT_TEXT, model="f5-tts")).status_code == 200


def test_a_voice_alias_speaks_as_its_voice_and_is_listed(configured, server):
    response = post(configured, "/v1/audio/speech", json=speech_body(SHORT_TEXT, voice="alloy", response_format="pcm"))
    assert response.status_code == 200, response.text
    np.testing.assert_array_equal(np.frombuffer(response.content, "<i2"), as_int16(triton_answer(server, SHORT_TEXT)))
    listed = httpx.get(f"{configured.url}/v1/audio/voices", headers={"Authorization": f"Bearer {GATEWAY_KEY}"}).json()
    by_id = {v["id"]: v for v in listed["data"]}
    assert by_id["alloy"] == {
        "id": "alloy",
        "object": "audio.voice",
        "name": "alloy",
        "created_at": None,
        "type": "audio_sample",
        "source": "alias",
        "alias_of": "nature",
        "model": "f5-tts",  # its voice's
    }
    assert by_id[VOICE]["source"] == "registered" and listed["registered"] == "available"
    dangling = post(configured, "/v1/audio/speech", json=speech_body(SHORT_TEXT, voice="echo"))
    assert dangling.status_code == 400
    assert dangling.json()["error"]["message"] == (
        "unknown voice 'missing' (the alias 'echo' names it: --voice-alias); known voices: alloy, echo, nature "
        "(upload one with POST /v1/audio/voices)"
    )
    taken = upload(configured, "alloy")
    assert taken.status_code == 409 and taken.json()["error"]["message"] == (
        "'alloy' is an alias of the voice 'nature' (--voice-alias); choose another name"
    )
    kept = httpx.delete(f"{configured.url}/v1/audio/voices/alloy", headers={"Authorization": f"Bearer {GATEWAY_KEY}"})
    assert kept.status_code == 400 and "is an alias of the voice 'nature'" in kept.json()["error"]["message"]


def test_the_servers_default_byte_limit_is_4096_four_byte_characters(configured):
    """Past it (here the gateway allows 5000 characters), Triton's own message comes back with the API's names."""
    response = post(configured, "/v1/audio/speech", json=speech_body("\U00020000" * (contract.MAX_TEXT_CHARS + 1)))
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "input"
    assert "'input' is 16388 bytes; at most 16384 bytes of UTF-8 are allowed" in response.json()["error"]["message"]


def test_cors_preflight_and_answers_for_an_allowed_origin(configured):
    preflight = httpx.options(
        f"{configured.url}/v1/audio/speech",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    answer = post(
        configured, "/v1/audio/speech", json=speech_body(SHORT_TEXT, response_format="pcm"), headers={"Origin": ORIGIN}
    )
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == ORIGIN
    assert "x-first-audio-ms" in answer.headers["access-control-expose-headers"].lower()
    other = httpx.options(
        f"{configured.url}/v1/audio/speech",
        headers={"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"},
    )
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers


def test_no_cors_headers_by_default(gateway):
    preflight = httpx.options(
        f"{gateway.url}/v1/audio/speech", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 405
    listed = httpx.get(f"{gateway.url}/v1/models", headers={"Authorization": f"Bearer {GATEWAY_KEY}", "Origin": ORIGIN})
    assert listed.status_code == 200
    assert not [h for h in listed.headers if h.lower().startswith("access-control-")]


# --- streaming and cancellation ------------------------------------------------------------------------------------


def test_first_bytes_leave_early_and_a_client_that_leaves_cancels_the_rest(gateway, server):
    log_line = "stopped after"
    seen = server.log_text().count(log_line)
    before = _stats(server)
    body = json.dumps(speech_body(VERY_LONG_TEXT, response_format="pcm", nfe_step=16)).encode()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=120) as sock:
        sock.sendall(
            f"POST /v1/audio/speech HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {GATEWAY_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        received = b""
        while b"\r\n\r\n" not in received or len(received.split(b"\r\n\r\n", 1)[1]) < 1000:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed early: {received[:500]!r}"
            received += chunk
        assert received.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in received.lower()
    # the gateway closes its Triton stream; the stream model notices and stops (it logs how far it got)
    deadline = time.monotonic() + 60
    while server.log_text().count(log_line) == seen and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server.log_text().count(log_line) > seen, "the stream model did not notice the cancellation"
    done = _stats(server) - before
    total = int(server.log_text().rsplit(log_line, 1)[1].split(" of ")[1].split()[0])
    assert total >= 6 and done <= 3 < total, f"{done} of {total} chunks synthesized after the client left"
    deadline = time.monotonic() + 30
    while "stopped after" not in gateway.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert re.search(
        r"speech: \d+ chars, voice nature, pcm, speed None: [\d.]+ s of audio, first audio after \d+ ms, "
        r"stopped after",
        gateway.log_text(),
    )


def test_a_caller_that_times_out_before_a_whole_body_answer_cancels_it(gateway, server):
    """mp3 is sent whole at its end (its LAME tag needs the final length): a caller that gives up while it
    waits has received no audio yet, and the gateway still cancels the Triton request when it leaves."""
    log_line = "stopped after"
    seen = server.log_text().count(log_line)
    with pytest.raises(httpx.ReadTimeout):
        with httpx.stream(
            "POST",
            f"{gateway.url}/v1/audio/speech",
            headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
            json=speech_body(VERY_LONG_TEXT, response_format="mp3", nfe_step=16),
            timeout=httpx.Timeout(120, read=2),
        ) as r:
            assert r.status_code == 200
            r.read()
    wait_for(lambda: server.log_text().count(log_line) > seen, "the stream model to log the cancellation")
    done, total = map(int, re.findall(r"stopped after (\d+) of (\d+) chunks", server.log_text())[-1])
    assert done < total
    wait_for(
        lambda: re.search(
            r"speech: \d+ chars, voice nature, mp3, speed None: [\d.]+ s of audio, first audio "
            r"after \d+ ms, stopped after",
            gateway.log_text(),
        ),
        "the gateway to log the stop",
    )


def test_a_stream_cut_short_by_a_triton_shutdown_ends_with_an_error_not_silence(tiny_repo, tmp_path, start_server):
    import os

    srv = start_server(tiny_repo)
    gw = Gateway([srv.grpc_url], tmp_path / "voices", tmp_path / "gateway.log")
    try:
        gw.wait_live()
        headers = {"Authorization": f"Bearer {GATEWAY_KEY}"}
        long = speech_body(VERY_LONG_TEXT, nfe_step=16, response_format="pcm")
        with (
            httpx.Client(base_url=gw.url, headers=headers, timeout=120) as http,
            http.stream("POST", "/v1/audio/speech", json={**long, "stream_format": "sse"}) as sse,
            http.stream("POST", "/v1/audio/speech", json=long) as audio,
        ):
            lines = sse.iter_lines()
            assert json.loads(next(ln for ln in lines if ln.startswith("data:"))[5:])["type"] == "speech.audio.delta"
            raw = audio.iter_raw()
            assert next(raw)
            os.kill(srv.pid, signal.SIGTERM)  # mid-stream: the rest of the text is never synthesized
            last = json.loads([ln for ln in lines if ln.startswith("data:")][-1][5:])
            assert last["type"] == "error" and last["error"]["code"] == "triton_unavailable", last
            assert "cannot serve speech now" in last["error"]["message"]
            with pytest.raises(httpx.RemoteProtocolError):  # the chunked body is aborted, not ended
                for _ in raw:
                    pass
    finally:
        gw.stop()
        srv.stop()
    assert gw.log_text().count("speech stream broke off after") == 2
    assert "Traceback" not in gw.log_text()


@pytest.mark.slow  # a gateway process of its own
def test_past_max_concurrency_is_a_429_that_the_sdk_would_retry(server, tmp_path):
    gw = Gateway([server.grpc_url], tmp_path / "voices", tmp_path / "gateway.log", "--max-concurrency", "1")
    try:
        gw.wait_live()
        with (
            httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {GATEWAY_KEY}"}, timeout=120) as http,
            http.stream(
                "POST", "/v1/audio/speech", json=speech_body(VERY_LONG_TEXT, response_format="pcm", nfe_step=64)
            ) as busy,
        ):
            body = busy.iter_raw()  # kept: a dropped iterator closes the response (the gateway then cancels)
            assert next(body)  # one request in flight (seconds of synthesis left: slow steps, many chunks)
            refused = http.post("/v1/audio/speech", json=speech_body(SHORT_TEXT))
            assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
            assert refused.json()["error"] == {
                "message": "1 speech requests are in flight, this gateway's limit (--max-concurrency); retry shortly",
                "type": "rate_limit_error",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        # the stream above was left early: once the gateway has closed it (it logs that), its slot is free again
        deadline = time.monotonic() + 60
        while "stopped after" not in gw.log_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert post(gw, "/v1/audio/speech", json=speech_body(SHORT_TEXT, response_format="pcm")).status_code == 200
    finally:
        gw.stop()


def test_concurrent_requests_share_tritons_batches(gateway, server):
    def send(seed):
        return post(gateway, "/v1/audio/speech", json=speech_body(SHORT_TEXT, seed=seed, response_format="pcm"))

    answers, batched = behind_a_long_request(server, [lambda seed=seed: send(seed) for seed in (1, 2, 1, 3)])
    assert [a.status_code for a in answers] == [200] * 4
    waves = [np.frombuffer(a.content, "<i2").astype(np.float32) / 32768 for a in answers]
    # same seed, same audio, whichever batch each request joined (batch invariance: test_serving)
    assert_same_audio(waves[2], waves[0])
    assert answers[0].content != answers[1].content  # another seed
    # the gateway's requests reached the dynamic batcher together
    assert calls_shared_a_batch(batched), f"not batched together (batch size: executions): {batched}"


# --- the voice library ---------------------------------------------------------------------------------------------


def upload(gateway, name, audio: bytes | None = None, transcript=REFERENCE_TEXT, filename="ref.wav", **extra):
    files = {"audio_sample": (filename, REFERENCE_WAV.read_bytes() if audio is None else audio, "audio/wav")}
    return post(gateway, "/v1/audio/voices", data={"name": name, "transcript": transcript, **extra}, files=files)


def wav_bytes(samples: np.ndarray, rate: int = 24_000, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt)
    return buf.getvalue()


def test_a_voice_uploaded_with_the_openai_sdk_speaks_like_the_registered_one(gateway, server):
    """The library voice is the shipped reference, which tiny_repo registers as `nature`: same audio."""
    with open(REFERENCE_WAV, "rb") as f:
        voice = sdk(gateway).audio.voices.create(
            name="nature-copy", audio_sample=f, consent="not needed here", extra_body={"transcript": REFERENCE_TEXT}
        )
    assert (voice.id, voice.name, voice.object, voice.type) == (
        "nature-copy",
        "nature-copy",
        "audio.voice",
        "audio_sample",
    )
    assert voice.created_at > 0
    copy = sdk(gateway).audio.speech.create(
        model="f5-tts",
        voice={"id": "nature-copy"},
        input=LONG_TEXT,
        response_format="pcm",
        extra_body={"nfe_step": NFE, "seed": SEED},
    )
    np.testing.assert_array_equal(np.frombuffer(copy.content, "<i2"), as_int16(triton_answer(server)))


def test_a_repeated_library_voice_is_prepared_once_on_the_server(gateway, server):
    """Triton's reference cache, seen in its metrics: the second request of a voice prepares nothing."""
    audio, rate = sf.read(str(REFERENCE_WAV), dtype="float32")
    assert upload(gateway, "cached", wav_bytes(audio[: 3 * rate] * 0.5, rate)).status_code == 201  # a new reference
    counts = []
    for _ in range(3):
        assert (
            post(gateway, "/v1/audio/speech", json=speech_body(voice="cached", response_format="pcm")).status_code
            == 200
        )
        counts.append(
            (
                metric(server, "f5_tts_reference_cache_total", 'model="f5_tts",result="miss"'),
                metric(server, "f5_tts_reference_cache_total", 'model="f5_tts",result="hit"'),
            )
        )
    (miss0, hit0), (miss1, hit1), (miss2, hit2) = counts
    assert miss1 == miss2 == miss0  # prepared during the first request (its first chunk), never again
    assert hit2 - hit1 == hit1 - hit0 >= 3  # every chunk of a repeated request is a hit


def test_voice_list_and_delete(gateway):
    assert upload(gateway, "to-delete").status_code == 201
    listed = httpx.get(f"{gateway.url}/v1/audio/voices", headers={"Authorization": f"Bearer {GATEWAY_KEY}"}).json()
    by_id = {v["id"]: v for v in listed["data"]}
    assert listed["object"] == "list"
    assert by_id[VOICE]["source"] == "registered"
    voice = by_id["to-delete"]
    assert voice["source"] == "library" and voice["transcript"] == REFERENCE_TEXT
    assert voice["sample_rate"] == 24_000 and voice["channels"] == 1 and voice["seconds"] == pytest.approx(5.333, 1e-3)
    deleted = sdk(gateway).audio.voices.delete("to-delete")
    assert (deleted.id, deleted.deleted, deleted.object) == ("to-delete", True, "audio.voice.deleted")
    again = httpx.delete(f"{gateway.url}/v1/audio/voices/to-delete", headers={"Authorization": f"Bearer {GATEWAY_KEY}"})
    assert again.status_code == 404 and again.json()["error"]["code"] == "voice_not_found"
    gone = post(gateway, "/v1/audio/speech", json=speech_body(voice="to-delete"))
    assert gone.status_code == 400 and "unknown voice 'to-delete'" in gone.json()["error"]["message"]
    registered = httpx.delete(
        f"{gateway.url}/v1/audio/voices/{VOICE}", headers={"Authorization": f"Bearer {GATEWAY_KEY}"}
    )
    assert (
        registered.status_code == 400 and "registered on the server at export" in registered.json()["error"]["message"]
    )


def _silence(seconds, rate=24_000):
    return np.zeros(int(seconds * rate), np.float32)


def _tone(seconds, rate=24_000, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    return wave if channels == 1 else np.stack([wave] * channels, axis=1)


@pytest.mark.parametrize(
    "name,audio,transcript,status,param,message",
    [
        (
            "bad-audio",
            b"just some bytes",
            REFERENCE_TEXT,
            400,
            "audio_sample",
            "the uploaded audio 'ref.wav' (15 bytes) is not an audio file libsndfile can read: "
            "Format not recognised (sent as audio/wav, it begins b'just some by'); send WAV, FLAC, OGG, MP3, AIFF",
        ),
        (
            "empty-audio",
            b"",
            REFERENCE_TEXT,
            400,
            "audio_sample",
            "the uploaded audio 'ref.wav' (0 bytes) is empty; send WAV, FLAC, OGG, MP3, AIFF",
        ),
        (
            "too-short",
            wav_bytes(_tone(0.1)),
            REFERENCE_TEXT,
            400,
            "audio_sample",
            "is 0.10 s long; 0.3 to 30 s are allowed",
        ),
        (
            "too-long",
            wav_bytes(_tone(31)),
            REFERENCE_TEXT,
            400,
            "audio_sample",
            "is 31.00 s long; 0.3 to 30 s are allowed",
        ),
        ("silent", wav_bytes(_silence(2)), REFERENCE_TEXT, 400, "audio_sample", "is silent (all samples are zero)"),
        (
            "many-channels",
            wav_bytes(_tone(1, channels=9)),
            REFERENCE_TEXT,
            400,
            "audio_sample",
            "has 9 channels; 1 to 8 are allowed",
        ),
        (
            "low-rate",
            wav_bytes(_tone(1, rate=2000), rate=2000),
            REFERENCE_TEXT,
            400,
            "audio_sample",
            "has a sample rate of 2000 Hz; allowed range is [4000, 192000]",
        ),
        ("long-words", None, "x" * 1001, 400, "transcript", "'transcript' is 1001 bytes; at most 1000 bytes"),
        ("../escape", None, REFERENCE_TEXT, 400, "name", "voice name '../escape' is not allowed"),
        (".hidden", None, REFERENCE_TEXT, 400, "name", "voice name '.hidden' is not allowed"),
        ("has space", None, REFERENCE_TEXT, 400, "name", "voice name 'has space' is not allowed"),
        ("x" * 65, None, REFERENCE_TEXT, 400, "name", "at most 64 characters"),
        (VOICE, None, REFERENCE_TEXT, 409, "name", "voice 'nature' is registered on the server (at export)"),
        (
            "too-big",
            b"RIFF" + bytes(3 * 2**20),
            REFERENCE_TEXT,
            413,
            "audio_sample",
            "bytes, larger than this gateway's limit of 2097152 bytes (--max-upload-mb)",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 20 else None,
)
def test_bad_uploads_are_refused_and_leave_nothing(gateway, name, audio, transcript, status, param, message):
    before = sorted(p.name for p in gateway.voices_dir.iterdir())
    response = upload(gateway, name, audio, transcript)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and message in error["message"], error
    assert sorted(p.name for p in gateway.voices_dir.iterdir()) == before  # no partial voice, no temp files


def test_missing_upload_fields(gateway):
    for data, files, missing in (
        ({"name": "x", "transcript": "y"}, {"other": ("a.txt", b"?")}, "audio_sample"),
        ({"transcript": "y"}, {"audio_sample": ("ref.wav", REFERENCE_WAV.read_bytes())}, "name"),
        ({"name": "x", "transcript": "y", "audio_sample": "text"}, {"f": ("a", b"")}, None),
    ):
        response = post(gateway, "/v1/audio/voices", data=data, files=files)
        assert response.status_code == 400 and response.json()["error"]["param"] == (missing or "audio_sample")
        assert (f"'{missing}' is required" if missing else "'audio_sample' must be a file part") in response.json()[
            "error"
        ]["message"]
    as_json = post(gateway, "/v1/audio/voices", json={"name": "x"})
    assert as_json.status_code == 400 and "send multipart/form-data" in as_json.json()["error"]["message"]
    assert not [p for p in gateway.voices_dir.iterdir() if p.name == "x"]


def test_concurrent_uploads_of_one_name_store_exactly_one(gateway):
    audio, rate = sf.read(str(REFERENCE_WAV), dtype="float32")
    variants = [wav_bytes(audio[: 2 * rate] * (0.2 + 0.1 * i), rate) for i in range(6)]
    barrier = threading.Barrier(len(variants))

    def send(data):
        barrier.wait(timeout=30)
        return upload(gateway, "contested", data)

    with concurrent.futures.ThreadPoolExecutor(len(variants)) as pool:
        answers = list(pool.map(send, variants))
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] + [409] * (len(variants) - 1), [a.text for a in answers]
    winner = variants[[a.status_code for a in answers].index(201)]
    stored, _ = sf.read(str(gateway.voices_dir / "contested" / "audio.wav"), dtype="float32")
    np.testing.assert_array_equal(stored, sf.read(io.BytesIO(winner), dtype="float32")[0])
    assert not [p for p in gateway.voices_dir.iterdir() if p.name.startswith(".")]  # no leftovers


def transcriber_answer(server, audio: np.ndarray, rate: int, as_reference: bool) -> tuple[str, str]:
    """The transcriber model's own (transcript, detected language) for `audio`, asked directly over gRPC."""
    import tritonclient.grpc as grpcclient

    values = {
        contract.REFERENCE_AUDIO: (audio[None].astype(np.float32), "FP32"),
        contract.REFERENCE_SAMPLE_RATE: (np.array([[rate]], dtype=np.int32), "INT32"),
        contract.AS_REFERENCE: (np.array([[as_reference]], dtype=bool), "BOOL"),
    }
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        inputs = []
        for name, (value, dtype) in values.items():
            tensor = grpcclient.InferInput(name, list(value.shape), dtype)
            tensor.set_data_from_numpy(value)
            inputs.append(tensor)
        outputs = (contract.TRANSCRIPT, contract.LANGUAGE)
        result = client.infer(
            contract.TRANSCRIBER_MODEL, inputs, outputs=[grpcclient.InferRequestedOutput(o) for o in outputs]
        )
        return tuple(result.as_numpy(o).reshape(-1)[0].decode() for o in outputs)


def test_a_voice_uploaded_without_transcript_is_transcribed(gateway, server):
    """The server's transcriber hears the part of the sample f5_tts keeps as the reference; the voice speaks with
    that transcript, and a corrected one replaces it for good."""
    audio, rate = sf.read(str(REFERENCE_WAV), dtype="float32", always_2d=True)
    audio = np.ascontiguousarray(audio.T)
    want, _ = transcriber_answer(server, audio, rate, as_reference=True)
    assert want  # the tiny Whisper's random words
    with open(REFERENCE_WAV, "rb") as f:  # the SDK's upload, without extra_body: no transcript
        voice = sdk(gateway).audio.voices.create(name="heard", audio_sample=f, consent="-")
    assert (voice.id, voice.transcript, voice.transcript_source) == ("heard", want, "transcribed")
    stored = json.loads((gateway.voices_dir / "heard" / "voice.json").read_text())
    assert (stored["transcript"], stored["transcript_source"]) == (want, "transcribed")

    def spoken() -> np.ndarray:
        response = post(gateway, "/v1/audio/speech", json=speech_body(SHORT_TEXT, voice="heard", response_format="pcm"))
        assert response.status_code == 200, response.text
        return np.frombuffer(response.content, "<i2")

    def triton_with(transcript: str) -> np.ndarray:
        options = SynthesisOptions(nfe_step=NFE, seed=SEED)
        pieces = stream_synthesize(
            SHORT_TEXT, audio, rate, transcript, url=server.grpc_url, options=options, timeout=120
        )
        return as_int16(np.concatenate(list(pieces)))

    np.testing.assert_array_equal(spoken(), triton_with(want))  # Triton got the transcribed text with the audio

    corrected = httpx.patch(
        f"{gateway.url}/v1/audio/voices/heard",
        json={"transcript": REFERENCE_TEXT},
        headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
    )
    assert corrected.status_code == 200, corrected.text
    assert (corrected.json()["transcript"], corrected.json()["transcript_source"]) == (REFERENCE_TEXT, "given")
    listed = httpx.get(f"{gateway.url}/v1/audio/voices", headers={"Authorization": f"Bearer {GATEWAY_KEY}"}).json()
    [heard] = [v for v in listed["data"] if v["id"] == "heard"]
    assert (heard["transcript"], heard["transcript_source"]) == (REFERENCE_TEXT, "given")
    assert json.loads((gateway.voices_dir / "heard" / "voice.json").read_text())["transcript"] == REFERENCE_TEXT
    np.testing.assert_array_equal(spoken(), triton_with(REFERENCE_TEXT))  # the correction is what is sent now
    unknown = httpx.patch(
        f"{gateway.url}/v1/audio/voices/nobody",
        json={"transcript": "Hi."},
        headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
    )
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "voice_not_found"
    assert sdk(gateway).audio.voices.delete("heard").deleted


def test_transcriptions_are_the_transcribers_answer(gateway, server):
    """OpenAI's transcription API through its SDK and plain HTTP: the transcriber's text for the whole audio."""
    audio, rate = sf.read(str(REFERENCE_WAV), dtype="float32", always_2d=True)
    want, language = transcriber_answer(server, np.ascontiguousarray(audio.T), rate, as_reference=False)
    client = sdk(gateway)
    with open(REFERENCE_WAV, "rb") as f:
        assert client.audio.transcriptions.create(model="whisper-1", file=f).text == want
    with open(REFERENCE_WAV, "rb") as f:
        assert client.audio.transcriptions.create(model="gpt-4o-transcribe", file=f, response_format="text") == want
    with open(REFERENCE_WAV, "rb") as f:
        verbose = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="verbose_json")
    assert (verbose.text, verbose.language, verbose.duration) == (want, language, pytest.approx(5.333, abs=1e-3))
    files = {"file": ("ref.wav", REFERENCE_WAV.read_bytes(), "audio/wav")}
    as_json = post(gateway, "/v1/audio/transcriptions", data={"model": "whisper-1"}, files=files)
    assert as_json.status_code == 200 and as_json.json() == {"text": want}
    as_text = post(gateway, "/v1/audio/transcriptions", data={"response_format": "text"}, files=files)
    assert as_text.status_code == 200 and as_text.text == want
    unknown = post(gateway, "/v1/audio/transcriptions", data={"language": "klingon"}, files=files)
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "language"
    assert unknown.json()["error"]["message"].startswith(
        "'language' is 'klingon', which this Whisper does not know; known: af"
    )
    assert re.search(r"transcription: 5\.33 s of audio, language not asked: \d+ chars", gateway.log_text())


@pytest.mark.slow  # a gateway process of its own
def test_the_library_survives_a_restart(gateway, server, tmp_path):
    assert (
        upload(
            gateway,
            "kept",
            wav_bytes(_tone(2) + 0.01 * np.random.default_rng(0).standard_normal(48_000).astype(np.float32)),
        ).status_code
        == 201
    )
    first = post(gateway, "/v1/audio/speech", json=speech_body(SHORT_TEXT, voice="kept", response_format="pcm"))
    other = Gateway([server.grpc_url], gateway.voices_dir, tmp_path / "second.log").wait_live()
    try:
        again = post(other, "/v1/audio/speech", json=speech_body(SHORT_TEXT, voice="kept", response_format="pcm"))
    finally:
        assert other.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it shut down on
    assert first.status_code == again.status_code == 200
    assert first.content == again.content


# --- Triton not there ----------------------------------------------------------------------------------------------


@pytest.mark.slow  # a gateway process of its own
def test_503_while_triton_is_not_ready_and_failover_to_one_that_is(server, tmp_path):
    dead = f"127.0.0.1:{free_port()}"
    alone = Gateway([dead], tmp_path / "voices", tmp_path / "alone.log", api_key=None).wait_live()
    try:
        response = httpx.post(f"{alone.url}/v1/audio/speech", json=speech_body(SHORT_TEXT), timeout=60)
        assert response.status_code == 503 and response.headers["retry-after"] == "5"
        error = response.json()["error"]
        assert error["type"] == "server_error" and error["code"] == "triton_unavailable"
        assert f"Triton is not reachable or serves no f5_tts model: {dead}:" in error["message"]
        ready = httpx.get(f"{alone.url}/health/ready")
        assert (
            ready.status_code == 503
            and f"no Triton server is ready: {dead}: unreachable" in ready.json()["error"]["message"]
        )
        assert httpx.get(f"{alone.url}/health/live").status_code == 200
    finally:
        assert alone.stop() in (0, -signal.SIGTERM)
    both = Gateway([dead, server.grpc_url], tmp_path / "voices", tmp_path / "both.log", api_key=None).wait_live()
    try:
        assert httpx.get(f"{both.url}/health/ready").json()["triton"] == {
            dead: both_unreachable(both, dead),
            server.grpc_url: "ready",
        }
        for _ in range(2):  # round robin: one of the two starts at the dead server and moves on
            response = httpx.post(
                f"{both.url}/v1/audio/speech", json=speech_body(SHORT_TEXT, response_format="pcm"), timeout=120
            )
            assert response.status_code == 200
            np.testing.assert_array_equal(
                np.frombuffer(response.content, "<i2"), as_int16(triton_answer(server, SHORT_TEXT))
            )
    finally:
        assert both.stop() in (0, -signal.SIGTERM)


def both_unreachable(gw, url) -> str:
    status = httpx.get(f"{gw.url}/health/ready").json()["triton"][url]
    assert status.startswith("unreachable")
    return status


@pytest.mark.slow  # a gateway process of its own
def test_start_failure_is_one_line(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    gw = Gateway(["127.0.0.1:1"], blocker / "voices", tmp_path / "fail.log")
    assert gw.proc.wait(timeout=60) == 2
    lines = [ln for ln in gw.log_text().splitlines() if ln.startswith("gateway: error:")]
    assert lines == [
        f"gateway: error: the voices directory {blocker / 'voices'} is not usable (Not a directory): "
        "point --voices-dir at a writable directory"
    ]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        gw = Gateway(["127.0.0.1:1"], tmp_path / "voices", tmp_path / "busy.log", "--port", str(port))
        assert gw.proc.wait(timeout=60) == 2
    lines = [ln for ln in gw.log_text().splitlines() if ln.startswith("gateway: error:")]
    assert lines == [f"gateway: error: could not serve on 127.0.0.1:{port} (a port in use? see the log above)"]


def test_voices_are_listed_while_triton_is_down(tmp_path):
    """The library is on disk: listed with the aliases; the registered voices are said to be unknown."""
    from fastapi.testclient import TestClient

    from gateway.app import create_app
    from gateway.settings import Settings
    from gateway.voice_library import VoiceLibrary

    audio, rate = sf.read(str(REFERENCE_WAV), dtype="float32", always_2d=True)
    library = VoiceLibrary(tmp_path / "voices")
    library.open()
    library.add("kept", REFERENCE_TEXT, np.ascontiguousarray(audio.T), rate, "ref.wav")
    dead = f"127.0.0.1:{free_port()}"
    app = create_app(Settings(triton_urls=(dead,), voices_dir=tmp_path / "voices", voice_aliases=(("alloy", VOICE),)))
    with TestClient(app) as client:
        response = client.get("/v1/audio/voices")
    assert response.status_code == 200, response.text
    listed = response.json()
    assert [(v["id"], v["source"]) for v in listed["data"]] == [("kept", "library"), ("alloy", "alias")]
    assert listed["registered"].startswith(f"unknown: Triton is not reachable or serves no f5_tts model: {dead}:")


# --- the options ---------------------------------------------------------------------------------------------------


def test_options_add_model_ids_voice_aliases_and_cors_origins():
    from gateway.settings import CORS_ENV, parse_args

    default = parse_args([], env={})
    assert default.model_ids == ("f5-tts", "tts-1", "tts-1-hd", "gpt-4o-mini-tts")
    assert default.voice_aliases == () and default.cors_origins == ()
    assert default.max_input_chars == contract.MAX_TEXT_CHARS == 4096
    given = parse_args(
        [
            "--model-id",
            "my-tts",
            "--model-id",
            "tts-1",
            "--voice-alias",
            "alloy=nature",
            "--voice-alias",
            " echo = narrator ",
            "--voice-alias",
            "alloy=nature",
        ],
        env={CORS_ENV: f"{ORIGIN}, http://localhost:3000"},
    )
    assert given.model_ids == ("f5-tts", "tts-1", "tts-1-hd", "gpt-4o-mini-tts", "my-tts")
    assert given.voice_aliases == (("alloy", "nature"), ("echo", "narrator"))
    assert given.cors_origins == (ORIGIN, "http://localhost:3000")
    assert parse_args(["--cors-origin", "*"], env={CORS_ENV: ORIGIN}).cors_origins == ("*",)  # the option wins


@pytest.mark.parametrize(
    "args,message",
    [
        (["--voice-alias", "alloy"], "--voice-alias 'alloy': expected ALIAS=VOICE, e.g. alloy=nature"),
        (["--voice-alias", "alloy="], "--voice-alias 'alloy=': expected ALIAS=VOICE"),
        (
            ["--voice-alias", "al loy=nature"],
            "--voice-alias 'al loy=nature': 'al loy' is not a voice name (letters, digits, '_', '.' or '-'",
        ),
        (
            ["--voice-alias", "nature=nature"],
            "--voice-alias 'nature=nature': an alias must differ from the voice it names",
        ),
        (
            ["--voice-alias", "alloy=nature", "--voice-alias", "alloy=narrator"],
            "--voice-alias 'alloy=narrator': 'alloy' is already an alias of 'nature'",
        ),
        (
            ["--voice-alias", "alloy=echo", "--voice-alias", "echo=nature"],
            "--voice-alias alloy=echo: 'echo' is itself an alias (of 'nature'); name the voice directly",
        ),
        (["--cors-origin", "https://chat.example.com/"], "--cors-origin 'https://chat.example.com/' is not an origin"),
        (["--model-id", " "], "--model-id must not be empty"),
    ],
)
def test_a_bad_option_stops_the_start_with_what_was_wrong(args, message, capsys):
    from gateway.settings import parse_args

    with pytest.raises(SystemExit) as stopped:
        parse_args(args, env={})
    assert stopped.value.code == 2
    assert f"python -m gateway: error: {message}" in capsys.readouterr().err


def test_a_multi_voice_script_in_input_speaks_as_triton_speaks_it(gateway, server):
    """Voice tags in `input` reach f5_tts as they are: [main] is the request's voice, [nature] a registered
    one; an unknown tag is a 400 naming the voices there are."""
    script = f"[main] Who is there at this hour? [{VOICE}] Only me, the wind in the trees."
    with sdk(gateway).audio.speech.with_streaming_response.create(
        model="f5-tts", voice=VOICE, input=script, response_format="pcm", extra_body={"nfe_step": NFE, "seed": SEED}
    ) as response:
        got = np.frombuffer(response.read(), dtype="<i2")
    np.testing.assert_array_equal(got, as_int16(triton_answer(server, text=script)))
    with pytest.raises(openai.BadRequestError, match=r"names voice\(s\) \[ghost\]"):
        sdk(gateway).audio.speech.create(model="f5-tts", voice=VOICE, input="[ghost] Boo.")
