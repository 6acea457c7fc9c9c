"""The body of POST /v1/audio/speech: OpenAI's fields, our sampling extensions, checked with
messages that name the field and what is allowed."""

from __future__ import annotations

import math
from dataclasses import dataclass

import contract
from client.request import SynthesisOptions
from gateway.errors import bad_request

OPENAI_SPEED_RANGE = (0.25, 4.0)
OPENAI_MAX_INSTRUCTIONS_CHARS = 4096  # OpenAI's cap; F5-TTS ignores instructions, but not without bound
STREAM_FORMATS = ("audio", "sse")
DEFAULT_FORMAT = "mp3"  # OpenAI's default
OPENAI_FIELDS = ("model", "input", "voice", "instructions", "response_format", "speed", "stream_format")
# Fields other OpenAI-style servers take, accepted for their clients: Kokoro-FastAPI's `stream`.
COMPATIBLE_FIELDS = ("stream",)
# Our extensions: the model's own sampling options, typed as the contract types them.
EXTENSIONS = (contract.SEED, contract.NFE_STEP, contract.CFG_STRENGTH, contract.SWAY_SAMPLING_COEF,
              contract.DURATION)
_DTYPES = {s.name: s.dtype for s in contract.TTS_INPUTS}
_INT_RANGES = {"INT32": (-(2**31), 2**31 - 1), "INT64": (-(2**63), 2**63 - 1)}


@dataclass(frozen=True)
class SpeechRequest:
    model: str
    input: str
    voice: str
    response_format: str
    stream_format: str
    speed: float | None  # what was asked, OpenAI's scale
    options: SynthesisOptions  # what Triton gets (speed mapped onto the model's range)


def _type_name(value) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def _number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad_request(f"'{name}' must be a finite number, got {_type_name(value)} {value!r}", name)
    return float(value)


def _extension(name: str, value):
    dtype = _DTYPES[name]
    if dtype not in _INT_RANGES:
        return _number(name, value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"'{name}' must be an integer, got {_type_name(value)} {value!r}", name)
    low, high = _INT_RANGES[dtype]
    if not low <= value <= high:
        raise bad_request(f"'{name}' is {value}, outside the {dtype} range [{low}, {high}]", name)
    return value


def model_speed(speed: float) -> float:
    """OpenAI's speed (0.25-4) onto F5-TTS's (0.3-3): the same value where both allow it, the nearest end
    beyond (f5-tts's duration estimate breaks down outside its range)."""
    low, high = contract.LIMITS.speed
    return min(max(speed, low), high)


def parse_speech_request(body, formats: tuple[str, ...], max_input_chars: int) -> SpeechRequest:
    if not isinstance(body, dict):
        raise bad_request(f"the request body must be a JSON object, got {_type_name(body)}")
    unknown = sorted(set(body) - set(OPENAI_FIELDS) - set(EXTENSIONS) - set(COMPATIBLE_FIELDS))
    if unknown:
        raise bad_request(f"unrecognized request argument(s) supplied: {', '.join(map(repr, unknown))}; allowed: "
                          f"{', '.join(OPENAI_FIELDS + EXTENSIONS + COMPATIBLE_FIELDS)}", unknown[0],
                          "unknown_parameter")
    given = {k: v for k, v in body.items() if v is not None}
    for name in ("model", "input", "voice"):
        if name not in given:
            raise bad_request(f"'{name}' is required", name, "missing_required_parameter")
    for name in ("model", "input", "instructions", "response_format", "stream_format"):
        if name in given and not isinstance(given[name], str):
            raise bad_request(f"'{name}' must be a string, got {_type_name(given[name])}", name)
    text = given["input"]
    if not text.strip():
        raise bad_request("'input' is empty or whitespace only; give the text to speak", "input")
    if len(text) > max_input_chars:
        raise bad_request(f"'input' is {len(text)} characters; at most {max_input_chars} are allowed", "input",
                          "string_above_max_length")
    voice = given["voice"]
    if isinstance(voice, dict) and set(voice) == {"id"}:  # OpenAI's custom-voice form, {"id": "..."}
        voice = voice["id"]
    if not isinstance(voice, str) or not voice.strip():
        raise bad_request(f"'voice' must be a voice name or {{\"id\": name}}, got {_type_name(voice)} {voice!r}",
                          "voice")
    response_format = given.get("response_format", DEFAULT_FORMAT)
    if response_format not in formats:
        raise bad_request(f"'response_format' is {response_format!r}; allowed: {', '.join(formats)}",
                          "response_format")
    if "instructions" in given and len(given["instructions"]) > OPENAI_MAX_INSTRUCTIONS_CHARS:
        raise bad_request(f"'instructions' is {len(given['instructions'])} characters; at most "
                          f"{OPENAI_MAX_INSTRUCTIONS_CHARS} are allowed (F5-TTS takes the manner of speaking from the "
                          "voice and ignores them)", "instructions", "string_above_max_length")
    stream_format = given.get("stream_format", "audio")
    if stream_format not in STREAM_FORMATS:
        raise bad_request(f"'stream_format' is {stream_format!r}; allowed: {', '.join(STREAM_FORMATS)}",
                          "stream_format")
    stream = given.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request(f"'stream' must be true or false, got {_type_name(stream)} {stream!r}", "stream")
    # `stream: true` (Kokoro-style clients) asks for raw audio bytes streamed: stream_format "audio". Beside
    # an explicit "sse" it is a contradiction, refused rather than guessed at; `stream: false` states no
    # preference (the answer is sent as OpenAI's is, by stream_format).
    if stream and stream_format != "audio":
        raise bad_request(f"'stream': true means stream_format 'audio' (raw audio bytes), but 'stream_format' is "
                          f"{stream_format!r}; send one of the two", "stream")
    speed = None
    if "speed" in given:
        speed = _number("speed", given["speed"])
        low, high = OPENAI_SPEED_RANGE
        if not low <= speed <= high:
            raise bad_request(f"'speed' is {speed:g}; allowed range is [{low}, {high}]", "speed")
    options = SynthesisOptions(speed=None if speed is None else model_speed(speed),
                               **{k: _extension(k, given[k]) for k in EXTENSIONS if k in given})
    # `instructions` is accepted and ignored: F5-TTS takes its style from the reference voice.
    return SpeechRequest(given["model"], text, voice.strip(), response_format, stream_format, speed, options)
