"""Request parsing and validation (no server): every rejection names the input and what is allowed."""

from __future__ import annotations

import numpy as np
import pytest

import contract
from contract.parameters import ParameterError, TtsParameters
from pipeline.parameters import instance_device
from pipeline.reference import normalize_reference_text, prepare_reference
from pipeline.requests import RequestError, parse_request


def _tensors(**overrides):
    t = {
        contract.REFERENCE_AUDIO: np.full((1, 1, 24000), 0.1, np.float32),
        contract.REFERENCE_SAMPLE_RATE: np.array([[24000]], np.int32),
        contract.REFERENCE_TEXT: np.array([[b"Some call me nature."]], dtype=object),
        contract.TARGET_TEXT: np.array([[b"Hello there."]], dtype=object),
    }
    t.update(overrides)
    return t


def test_valid_request_takes_defaults():
    r = parse_request(_tensors())
    d = contract.DEFAULTS
    assert (r.nfe_step, r.cfg_strength, r.sway_sampling_coef, r.speed) == (
        d.nfe_step,
        d.cfg_strength,
        d.sway_sampling_coef,
        d.speed,
    )
    assert r.seed is None and r.duration is None and r.target_text == "Hello there."


def test_options_are_read():
    r = parse_request(
        _tensors(
            nfe_step=np.array([[16]]),
            cfg_strength=np.array([[1.5]], np.float32),
            speed=np.array([[1.2]], np.float32),
            seed=np.array([[9]], np.int64),
            duration=np.array([[5.0]], np.float32),
        )
    )
    assert (r.nfe_step, r.seed, r.duration) == (16, 9, 5.0)
    assert r.cfg_strength == pytest.approx(1.5) and r.speed == pytest.approx(1.2)


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({contract.TARGET_TEXT: None}, "missing required input 'target_text'"),
        ({contract.REFERENCE_AUDIO: None}, "missing required input 'reference_audio'"),
        ({contract.TARGET_TEXT: np.array([[b" \n\t"]], dtype=object)}, "'target_text' is empty or whitespace only"),
        (
            {contract.TARGET_TEXT: np.array([[b"a" * 16385]], dtype=object)},
            "'target_text' is 16385 bytes; at most 16384",
        ),
        ({contract.REFERENCE_TEXT: np.array([[b"\xff\xfe"]], dtype=object)}, "'reference_text' is not valid UTF-8"),
        ({contract.TARGET_TEXT: np.array([[b"a", b"b"]], dtype=object)}, "exactly one value per request"),
        ({contract.REFERENCE_AUDIO: np.zeros((1, 1, 24000), np.float32)}, "'reference_audio' is silent"),
        ({contract.REFERENCE_AUDIO: np.full((1, 1, 1000), 0.1, np.float32)}, "at least 0.3 s"),
        ({contract.REFERENCE_AUDIO: np.full((1, 1, 24000 * 31), 0.1, np.float32)}, "at most 30.0 s"),
        ({contract.REFERENCE_AUDIO: np.full((1, 1, 24000), np.nan, np.float32)}, "NaN or Inf"),
        ({contract.REFERENCE_AUDIO: np.full((1, 9, 24000), 0.1, np.float32)}, "9 channels; 1 to 8"),
        ({contract.REFERENCE_AUDIO: np.full((2, 1, 24000), 0.1, np.float32)}, "batch size 2"),
        ({contract.REFERENCE_AUDIO: np.full((1, 1, 24000), 0.1, np.float64)}, "must be FP32"),
        ({contract.REFERENCE_SAMPLE_RATE: np.array([[0]])}, "'reference_sample_rate' is 0 Hz"),
        ({contract.REFERENCE_SAMPLE_RATE: np.array([[10**7]])}, "allowed range is \\[4000, 192000\\]"),
        ({contract.NFE_STEP: np.array([[0]])}, "'nfe_step' is 0; allowed range is \\[1, 128\\]"),
        ({contract.CFG_STRENGTH: np.array([[np.nan]], np.float32)}, "'cfg_strength' is nan"),
        ({contract.SWAY_SAMPLING_COEF: np.array([[-3.0]], np.float32)}, "'sway_sampling_coef' is -3.0"),
        ({contract.SPEED: np.array([[0.0]], np.float32)}, "'speed' is 0.0; allowed range is \\[0.3, 3.0\\]"),
        ({contract.SEED: np.array([[-2]])}, "'seed' is -2"),
        ({contract.DURATION: np.array([[500.0]], np.float32)}, "'duration' is 500.0"),
        (
            {
                contract.REFERENCE_CHANNELS: np.array([[2]], np.int32),
                contract.REFERENCE_AUDIO: np.full((1, 1, 24001), 0.1, np.float32),
            },
            "24001 samples, which is not a multiple of",
        ),
        (
            {
                contract.REFERENCE_CHANNELS: np.array([[2]], np.int32),
                contract.REFERENCE_AUDIO: np.full((1, 3, 24000), 0.1, np.float32),
            },
            "'reference_channels' is 2 but",
        ),
        (
            {contract.REFERENCE_CHANNELS: np.array([[9]], np.int32)},
            "'reference_channels' is 9; allowed range is \\[1, 8\\]",
        ),
    ],
)
def test_invalid_requests_are_refused_with_a_clear_message(overrides, message):
    with pytest.raises(RequestError, match=message):
        parse_request(_tensors(**overrides))


def test_reference_text_gets_a_sentence_break_like_f5tts():
    assert normalize_reference_text("Hello") == "Hello. "
    assert normalize_reference_text("Hello.") == "Hello. "
    assert normalize_reference_text("Hello. ") == "Hello. "
    assert normalize_reference_text("你好。") == "你好。"


def test_reference_without_pauses_is_cut_at_12_s_downmixed_and_resampled():
    stereo = np.stack([np.full(48000 * 13, 0.2, np.float32), np.zeros(48000 * 13, np.float32)])
    ref = prepare_reference(stereo, 48000, "x")
    assert ref.clipped and ref.seconds == pytest.approx(12.05, abs=1e-3)  # 12 s + f5-tts's 50 ms of silence
    assert ref.audio.shape[0] == 1
    assert ref.audio.shape[1] == pytest.approx(12.05 * contract.SAMPLE_RATE, abs=30)
    assert ref.rms == pytest.approx(0.1 * np.sqrt(12 / 12.05), rel=1e-3)  # channel mean, before normalisation


def test_inaudible_reference_is_refused():
    faint = np.full((1, 24000), 1e-4, np.float32)  # -80 dBFS: all of it is trimmed as silence
    with pytest.raises(RequestError, match="has 0.00 s of sound above -42 dBFS"):
        prepare_reference(faint, 24000, "x")


def test_model_parameters_are_parsed_and_checked():
    p = TtsParameters.from_triton(
        {
            "dtype": {"string_value": "bf16"},
            "demo_model": {"string_value": "true"},
            "default_nfe_step": {"string_value": "16"},
        }
    )
    assert p.dtype == "bf16" and p.demo_model and p.defaults.nfe_step == 16
    with pytest.raises(ParameterError, match="unknown model parameter"):
        TtsParameters.from_triton({"dtpye": {"string_value": "fp16"}})
    with pytest.raises(ParameterError, match="'default_nfe_step' = 'many' is not a valid int"):
        TtsParameters.from_triton({"default_nfe_step": {"string_value": "many"}})
    with pytest.raises(ParameterError, match="'dtype' is empty"):
        TtsParameters.from_triton({"dtype": {"string_value": ""}})
    with pytest.raises(ParameterError, match="allowed: fp32, fp16, bf16"):
        TtsParameters.from_triton({"dtype": {"string_value": "int8"}})


def test_instance_device_follows_the_instance_kind():
    assert instance_device({"model_instance_kind": "GPU", "model_instance_device_id": "1"}) == "cuda:1"
    assert instance_device({"model_instance_kind": "CPU", "model_instance_device_id": "0"}) == "cpu"


def test_flat_reference_with_its_channel_count_is_unflattened_channel_after_channel():
    """What HTTP generate_stream sends: [1, channels * samples] and the count; same as [channels, samples]."""
    stereo = np.stack([np.full(24000, 0.1, np.float32), np.full(24000, -0.2, np.float32)])[None]
    flat = _tensors(
        **{contract.REFERENCE_AUDIO: stereo.reshape(1, 1, -1), contract.REFERENCE_CHANNELS: np.array([[2]], np.int32)}
    )
    np.testing.assert_array_equal(parse_request(flat).reference_audio, stereo[0])
    shaped = _tensors(**{contract.REFERENCE_AUDIO: stereo, contract.REFERENCE_CHANNELS: np.array([[2]], np.int32)})
    np.testing.assert_array_equal(parse_request(shaped).reference_audio, stereo[0])
