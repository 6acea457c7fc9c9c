"""contract.request_options and contract.errors: the checks and the error words every door shares (the
gateway, the RunPod handler, the server's request parser), tested once here."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import contract
from contract import errors
from contract.request_options import (
    OptionError,
    boolean,
    check_bytes,
    check_characters,
    check_not_blank,
    check_range,
    check_reference,
    check_voice_name,
    is_voice_name,
    number,
    sampling_option,
    string,
)

pytestmark = pytest.mark.unit


def test_the_modules_import_without_numpy_or_torch():
    code = (
        "import sys; sys.modules['numpy'] = sys.modules['torch'] = None; "
        "import contract.request_options, contract.errors"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "check,message",
    [
        (lambda: string("text", 42), "'text' must be a string, got integer"),
        (lambda: boolean("stream", "yes"), "'stream' must be true or false, got string 'yes'"),
        (lambda: number("speed", True), "'speed' must be a finite number, got boolean True"),
        (lambda: number("speed", float("inf")), "'speed' must be a finite number, got number inf"),
        (lambda: number("speed", True, finite=False), "'speed' must be a number, got boolean True"),
        (lambda: sampling_option("nfe_step", "16"), "'nfe_step' must be an integer, got string '16'"),
        (lambda: sampling_option("seed", 1.5), "'seed' must be an integer, got number 1.5"),
        (
            lambda: sampling_option("nfe_step", 2**40),
            "'nfe_step' is 1099511627776, outside the INT32 range [-2147483648, 2147483647]",
        ),
        (lambda: sampling_option("seed", 2**64), "'seed' is 18446744073709551616, outside the INT64 range"),
        (lambda: check_range("input 'speed'", 0.0, (0.3, 3.0)), "input 'speed' is 0.0; allowed range is [0.3, 3.0]"),
        (
            lambda: check_range("input 'cfg_strength'", float("nan"), (0.0, 10.0)),
            "input 'cfg_strength' is nan; allowed",
        ),
        (
            lambda: check_range("input 'reference_sample_rate'", 0, (4000, 192000), unit=" Hz"),
            "input 'reference_sample_rate' is 0 Hz; allowed range is [4000, 192000]",
        ),
        (
            lambda: check_not_blank("'input'", " \n", hint="give the text to speak"),
            "'input' is empty or whitespace only; give the text to speak",
        ),
        (
            lambda: check_bytes("'transcript'", 1001, 1000),
            "'transcript' is 1001 bytes; at most 1000 bytes of UTF-8 are allowed",
        ),
        (lambda: check_characters("'input'", "ab", 1), "'input' is 2 characters; at most 1 are allowed"),
        (
            lambda: check_voice_name("../x"),
            "voice name '../x' is not allowed: use letters, digits, '_', '.' or '-', "
            "starting with a letter or digit, at most 64 characters",
        ),
    ],
)
def test_each_check_says_what_was_wrong_and_what_is_allowed(check, message):
    with pytest.raises(OptionError) as refused:
        check()
    assert str(refused.value).startswith(message), str(refused.value)


def test_json_values_come_back_typed():
    assert sampling_option("nfe_step", 16) == 16 and sampling_option("cfg_strength", 2) == 2.0
    assert isinstance(sampling_option("speed", 1), float) and number("speed", float("nan"), finite=False) != 0
    assert check_range("x", 3, (1, 3)) == 3 and string("t", "a") == "a" and boolean("s", False) is False


def test_the_errors_name_their_option_and_code():
    with pytest.raises(OptionError) as refused:
        check_characters("'input'", "ab", 1, name="input")
    assert (refused.value.name, refused.value.code) == ("input", "string_above_max_length")
    with pytest.raises(OptionError) as refused:
        sampling_option("seed", "1")
    assert refused.value.name == "seed"


def test_a_voice_name_is_ascii_so_its_limit_counts_characters_and_bytes_alike():
    assert is_voice_name("a" * 64) and not is_voice_name("a" * 65)
    assert not is_voice_name("é") and not is_voice_name(".hidden") and not is_voice_name("a/b")


def _tone(seconds: float, rate: int = 24_000, channels: int = 1) -> np.ndarray:
    return np.full((channels, int(seconds * rate)), 0.1, np.float32)


@pytest.mark.parametrize(
    "audio,rate,message",
    [
        (_tone(1, 2000), 2000, "has a sample rate of 2000 Hz; allowed range is [4000, 192000]"),
        (_tone(1, channels=9), 24_000, "has 9 channels; 1 to 8 are allowed"),
        (_tone(0.1), 24_000, "is 0.10 s long; 0.3 to 30 s are allowed (at least 0.3 s of reference speech is needed)"),
        (_tone(0.001), 24_000, "is 0.001 s long; 0.3 to 30 s are allowed"),
        (
            _tone(31),
            24_000,
            "is 31.00 s long; 0.3 to 30 s are allowed (at most 30.0 s is accepted; F5-TTS uses up to "
            "12 s of it, clipped at a pause)",
        ),
        (_tone(1) * np.nan, 24_000, "contains NaN or Inf samples"),
        (_tone(1) * 0, 24_000, "is silent (all samples are zero)"),
    ],
)
def test_reference_audio_is_checked_in_one_wording_for_every_door(audio, rate, message):
    for subject in ("input 'reference_audio'", "the uploaded audio 'ref.wav' (10 bytes)"):
        with pytest.raises(OptionError) as refused:
            check_reference(subject, audio, rate)
        assert str(refused.value) == f"{subject} {message}" or str(refused.value).startswith(f"{subject} {message}")


def test_reference_limits_come_from_the_servers_limits():
    longer = contract.Limits(max_reference_seconds=40.0)
    check_reference("x", _tone(31), 24_000, longer)
    with pytest.raises(OptionError, match="0.3 to 40 s are allowed"):
        check_reference("x", _tone(41), 24_000, longer)


# --- contract.errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status,message,kind",
    [
        (None, f"{errors.SHUTTING_DOWN}: stream stopped after 1 of 3 chunks", errors.NOT_NOW),
        (None, "Server not ready", errors.NOT_NOW),
        (None, "Request for unknown model: 'f5_tts' is not found", errors.NOT_NOW),
        (errors.GRPC_UNAVAILABLE, "failed to connect to all addresses", errors.NOT_NOW),
        (errors.GRPC_DEADLINE_EXCEEDED, "Deadline Exceeded", errors.TIMEOUT),
        (None, f"internal error in the vocoder; {errors.SEE_SERVER_LOG}", errors.SERVER_FAULT),
        ("StatusCode.UNKNOWN", "Exception iterating responses", errors.SERVER_FAULT),
        ("StatusCode.INVALID_ARGUMENT", "input 'nfe_step' is 500; allowed range is [1, 128]", errors.INVALID_ARGUMENT),
        (None, "unknown voice 'x'; known voices: nature", errors.INVALID_ARGUMENT),
    ],
)
def test_error_kinds_follow_the_status_and_the_contracts_words(status, message, kind):
    assert errors.error_kind(status, message) == kind
