"""The body of POST /v1/audio/speech: OpenAI's fields, our sampling extensions, checked with
messages that name the field and what is allowed."""

from __future__ import annotations

from dataclasses import dataclass

import contract
from client.request import SynthesisOptions
from contract.request_options import (
    OptionError,
    boolean,
    caption_format,
    check_characters,
    check_not_blank,
    check_range,
    number,
    sampling_option,
    string,
    type_name,
)
from gateway.errors import bad_request

OPENAI_SPEED_RANGE = (0.25, 4.0)
OPENAI_MAX_INSTRUCTIONS_CHARS = 4096  # OpenAI's cap; F5-TTS ignores instructions, but not without bound
STREAM_FORMATS = ("audio", "sse")
DEFAULT_FORMAT = "mp3"  # OpenAI's default
OPENAI_FIELDS = ("model", "input", "voice", "instructions", "response_format", "speed", "stream_format")
# Fields other OpenAI-style servers take, accepted for their clients: Kokoro-FastAPI's `stream`.
COMPATIBLE_FIELDS = ("stream",)
# Our extensions: the model's own sampling options, typed as the contract types them, and captions.
SAMPLING_EXTENSIONS = (
    contract.SEED,
    contract.NFE_STEP,
    contract.CFG_STRENGTH,
    contract.SWAY_SAMPLING_COEF,
    contract.DURATION,
    contract.MEASURE_WORDS,
)
CAPTIONS = "captions"  # "srt" | "vtt" | "json": speech.captions events, then the file (stream_format "sse" only)
EXTENSIONS = (*SAMPLING_EXTENSIONS, CAPTIONS)


@dataclass(frozen=True)
class SpeechRequest:
    model: str
    input: str
    voice: str
    response_format: str
    stream_format: str
    speed: float | None  # what was asked, OpenAI's scale
    options: SynthesisOptions  # what Triton gets (speed mapped onto the model's range)
    captions: str | None = None  # the captions file format asked for (sse answers only)


def model_speed(speed: float) -> float:
    """OpenAI's speed (0.25-4) onto F5-TTS's (0.3-3): the same value where both allow it, the nearest end
    beyond (f5-tts's duration estimate breaks down outside its range)."""
    low, high = contract.LIMITS.speed
    return min(max(speed, low), high)


def parse_speech_request(body, formats: tuple[str, ...], max_input_chars: int) -> SpeechRequest:
    """The body checked, or an APIError (400) naming the field, what was wrong and what is allowed."""
    try:
        return _parse(body, formats, max_input_chars)
    except OptionError as e:
        raise bad_request(e.message, e.name, e.code) from None


def _parse(body, formats: tuple[str, ...], max_input_chars: int) -> SpeechRequest:
    if not isinstance(body, dict):
        raise OptionError(f"the request body must be a JSON object, got {type_name(body)}")
    unknown = sorted(set(body) - set(OPENAI_FIELDS) - set(EXTENSIONS) - set(COMPATIBLE_FIELDS))
    if unknown:
        raise OptionError(
            f"unrecognized request argument(s) supplied: {', '.join(map(repr, unknown))}; allowed: "
            f"{', '.join(OPENAI_FIELDS + EXTENSIONS + COMPATIBLE_FIELDS)}",
            unknown[0],
            "unknown_parameter",
        )
    given = {k: v for k, v in body.items() if v is not None}
    for name in ("model", "input", "voice"):
        if name not in given:
            raise OptionError(f"'{name}' is required", name, "missing_required_parameter")
    for name in ("model", "input", "instructions", "response_format", "stream_format"):
        if name in given:
            string(name, given[name])
    text = check_not_blank("'input'", given["input"], hint="give the text to speak", name="input")
    check_characters("'input'", text, max_input_chars, name="input")
    voice = given["voice"]
    if isinstance(voice, dict) and set(voice) == {"id"}:  # OpenAI's custom-voice form, {"id": "..."}
        voice = voice["id"]
    if not isinstance(voice, str) or not voice.strip():
        raise OptionError(
            f"'voice' must be a voice name or {{\"id\": name}}, got {type_name(voice)} {voice!r}", "voice"
        )
    response_format = given.get("response_format", DEFAULT_FORMAT)
    if response_format not in formats:
        raise OptionError(f"'response_format' is {response_format!r}; allowed: {', '.join(formats)}", "response_format")
    if "instructions" in given:
        check_characters(
            "'instructions'",
            given["instructions"],
            OPENAI_MAX_INSTRUCTIONS_CHARS,
            hint="F5-TTS takes the manner of speaking from the voice and ignores them",
            name="instructions",
        )
    stream_format = given.get("stream_format", "audio")
    if stream_format not in STREAM_FORMATS:
        raise OptionError(
            f"'stream_format' is {stream_format!r}; allowed: {', '.join(STREAM_FORMATS)}", "stream_format"
        )
    stream = boolean("stream", given.get("stream", False))
    # `stream: true` (Kokoro-style clients) asks for raw audio bytes streamed: stream_format "audio". Beside
    # an explicit "sse" it is a contradiction, refused rather than guessed at; `stream: false` states no
    # preference (the answer is sent as OpenAI's is, by stream_format).
    if stream and stream_format != "audio":
        raise OptionError(
            f"'stream': true means stream_format 'audio' (raw audio bytes), but 'stream_format' is "
            f"{stream_format!r}; send one of the two",
            "stream",
        )
    captions = None
    if CAPTIONS in given:
        captions = caption_format(CAPTIONS, given[CAPTIONS])
        # An audio body has no room for a second document; the events of an sse answer do, and they
        # carry each chunk's captions as its audio leaves, which a player needs to follow along.
        if stream_format != "sse":
            raise OptionError(
                f"'{CAPTIONS}' comes with the audio as server-sent events: send 'stream_format': 'sse' with it "
                f"(the answer is then speech.audio.delta and speech.captions events, and the {captions} file "
                "in a speech.captions.done event)",
                CAPTIONS,
            )
    speed = None
    if "speed" in given:
        speed = check_range("'speed'", number("speed", given["speed"]), OPENAI_SPEED_RANGE, name="speed")
    options = SynthesisOptions(
        speed=None if speed is None else model_speed(speed),
        **{k: sampling_option(k, given[k]) for k in SAMPLING_EXTENSIONS if k in given},
    )
    # `instructions` is accepted and ignored: F5-TTS takes its style from the reference voice.
    return SpeechRequest(given["model"], text, voice.strip(), response_format, stream_format, speed, options, captions)
