"""Property-based fuzzing (hypothesis), in two layers.

In-process (unit): thousands of requests through parse_request, and batches of them through the
Synthesizer: each is either parsed/synthesized (finite samples of the expected length) or refused
with a RequestError, never anything else. Against the server (integration: a sample per protocol;
slow: the full count): each answer is a success of the expected length or INVALID_ARG with a
message. Never INTERNAL, never a dead stub; the server stays ready.
"""

from __future__ import annotations

import collections
import math

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.utils import InferenceServerException

import contract
from client.request import triton_dtype
from pipeline.reference import f5_preprocess_audio
from pipeline.requests import RequestError, parse_request
from pipeline.synthesizer import Speech, Synthesizer
from pipeline.vocoder import OnnxVocoder

PARSE_EXAMPLES = {"unit": 500, "slow": 2000}
SYNTHESIS_BATCHES = {"unit": 40, "slow": 400}  # of 1 to 4 requests
SERVER_EXAMPLES = {"integration": 24, "slow": 160}  # per protocol
OUTCOMES: collections.Counter = collections.Counter()


VALID_OPTIONS = {
    contract.NFE_STEP: st.sampled_from([1, 2, 3]),
    contract.CFG_STRENGTH: st.sampled_from([0.0, 1.0, 2.0, 9.5]),
    contract.SWAY_SAMPLING_COEF: st.sampled_from([-1.0, 0.0, 0.5]),
    contract.SPEED: st.sampled_from([0.5, 1.0, 2.5]),
    contract.SEED: st.sampled_from([-1, 0, 7, 2**40]),
    contract.DURATION: st.sampled_from([0.0, 4.0, 6.5]),
}
INVALID_OPTIONS = {
    contract.NFE_STEP: st.sampled_from([0, -1, 500]),
    contract.CFG_STRENGTH: st.sampled_from([-1.0, 11.0, math.nan, math.inf]),
    contract.SWAY_SAMPLING_COEF: st.sampled_from([-2.0, 3.0, math.nan]),
    contract.SPEED: st.sampled_from([0.0, -1.0, 100.0, math.nan]),
    contract.SEED: st.sampled_from([-7, -2]),
    contract.DURATION: st.sampled_from([0.2, -3.0, 1e6, math.inf]),
}
VALID_TEXTS = st.one_of(
    st.sampled_from(["Hello there.", "Bonjour à tous.", "你好，世界。", "A test, with commas; more!"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40).filter(
        str.strip
    ),
)
MUTATIONS = [
    "drop_input",
    "silent_audio",
    "nan_audio",
    "inf_audio",
    "short_audio",
    "long_audio",
    "many_channels",
    "bad_rate",
    "empty_text",
    "long_text",
    "not_utf8",
    "bad_option",
    "fp64_audio",
    "rank2_audio",
    "inaudible_audio",
]


def _speechlike(rng, channels: int, samples: int, rate: int) -> np.ndarray:
    t = np.arange(samples) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return np.tile((tone + rng.normal(0, 0.02, samples)).astype(np.float32), (channels, 1))


def _dtype(name):
    return {"INT32": np.int32, "INT64": np.int64, "FP32": np.float32}[triton_dtype(name)]


@st.composite
def requests(draw):
    """A valid request, then 0 (40 %), 1 or 2 mutations that should each make it invalid."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    rate = draw(st.sampled_from([16000, 24000, 44100]))
    seconds = draw(st.sampled_from([0.8, 1.5, 2.5]))
    channels = draw(st.sampled_from([1, 1, 2]))
    audio = _speechlike(rng, channels, int(seconds * rate), rate)
    tensors: dict[str, np.ndarray] = {
        contract.REFERENCE_AUDIO: audio[None],
        contract.REFERENCE_SAMPLE_RATE: np.array([[rate]], np.int32),
        contract.REFERENCE_TEXT: np.array([[draw(VALID_TEXTS).encode()]], dtype=object),
        contract.TARGET_TEXT: np.array([[draw(VALID_TEXTS).encode()]], dtype=object),
        contract.NFE_STEP: np.array([[2]], np.int32),  # fast with the tiny model unless drawn below
    }
    for name, strategy in VALID_OPTIONS.items():
        if draw(st.booleans()):
            tensors[name] = np.array([[draw(strategy)]], _dtype(name))
    n = draw(st.sampled_from([0, 0, 1, 1, 1, 2]))
    for mutation in draw(st.lists(st.sampled_from(MUTATIONS), min_size=n, max_size=n)):
        a = tensors.get(contract.REFERENCE_AUDIO)
        if mutation == "drop_input":
            tensors.pop(
                draw(
                    st.sampled_from(
                        [
                            contract.REFERENCE_AUDIO,
                            contract.REFERENCE_SAMPLE_RATE,
                            contract.REFERENCE_TEXT,
                            contract.TARGET_TEXT,
                        ]
                    )
                ),
                None,
            )
        elif mutation == "silent_audio" and a is not None:
            tensors[contract.REFERENCE_AUDIO] = np.zeros_like(a)
        elif mutation == "inaudible_audio" and a is not None:
            tensors[contract.REFERENCE_AUDIO] = (a * 1e-4).astype(np.float32)
        elif mutation in ("nan_audio", "inf_audio") and a is not None and a.dtype == np.float32 and a.ndim == 3:
            if not a.shape[-1]:  # cut to nothing by an earlier mutation: no sample to spoil
                continue
            a = a.copy()
            a[0, 0, rng.integers(a.shape[-1])] = np.nan if mutation == "nan_audio" else -np.inf
            tensors[contract.REFERENCE_AUDIO] = a
        elif mutation == "short_audio" and a is not None and a.ndim == 3:
            tensors[contract.REFERENCE_AUDIO] = np.ascontiguousarray(a[..., : draw(st.sampled_from([0, 1, 200]))])
        elif mutation == "long_audio" and a is not None and a.ndim == 3:
            tensors[contract.REFERENCE_AUDIO] = np.ascontiguousarray(np.tile(a, (1, 1, 40)))  # >= 32 s
        elif mutation == "many_channels" and a is not None and a.ndim == 3:
            tensors[contract.REFERENCE_AUDIO] = np.ascontiguousarray(np.tile(a[:, :1], (1, 9, 1)))
        elif mutation == "bad_rate":
            tensors[contract.REFERENCE_SAMPLE_RATE] = np.array([[draw(st.sampled_from([0, -5, 100, 10**7]))]], np.int32)
        elif mutation == "empty_text":
            tensors[contract.TARGET_TEXT] = np.array([[draw(st.sampled_from([b"", b"  ", b"\n\t"]))]], dtype=object)
        elif mutation == "long_text":
            past_limit = b"word " * (contract.LIMITS.max_target_text_bytes // 5 + 1)  # one word over the limit
            tensors[contract.TARGET_TEXT] = np.array([[past_limit]], dtype=object)
        elif mutation == "not_utf8":
            name = draw(st.sampled_from([contract.REFERENCE_TEXT, contract.TARGET_TEXT]))
            tensors[name] = np.array([[b"\xff\xfe\xfa" + draw(st.binary(max_size=10))]], dtype=object)
        elif mutation == "bad_option":
            name = draw(st.sampled_from(sorted(INVALID_OPTIONS)))
            tensors[name] = np.array([[draw(INVALID_OPTIONS[name])]], _dtype(name))
        elif mutation == "fp64_audio" and a is not None:
            tensors[contract.REFERENCE_AUDIO] = a.astype(np.float64)
        elif mutation == "rank2_audio" and a is not None and a.ndim == 3:
            tensors[contract.REFERENCE_AUDIO] = np.ascontiguousarray(a[:, 0])
    return tensors


def _send(server, protocol: str, tensors: dict[str, np.ndarray]):
    mod = grpcclient if protocol == "grpc" else httpclient
    url = server.grpc_url if protocol == "grpc" else server.http_url
    inputs = []
    for name, array in tensors.items():
        dtype = "FP64" if array.dtype == np.float64 else triton_dtype(name)
        inp = mod.InferInput(name, list(array.shape), dtype)
        inp.set_data_from_numpy(array)
        inputs.append(inp)
    client = mod.InferenceServerClient(url)
    try:
        return client.infer(contract.TTS_MODEL, inputs)
    finally:
        client.close()


def _expected_seconds(request) -> float | None:
    """Output length for a valid request with an explicit total duration (one chunk)."""
    if request.duration is None:
        return None
    processed, processed_rate, _ = f5_preprocess_audio(request.reference_audio, request.reference_sample_rate)
    ref_frames = int(processed.shape[-1] * contract.SAMPLE_RATE / processed_rate) // contract.HOP_LENGTH
    total_frames = int(request.duration * contract.SAMPLE_RATE / contract.HOP_LENGTH)
    return (total_frames - ref_frames) * contract.HOP_LENGTH / contract.SAMPLE_RATE


def _check_audio(wave: np.ndarray, request) -> None:
    assert wave.size > 0 and np.isfinite(wave).all()
    expected = _expected_seconds(request)
    if expected is not None:  # targets are short: one chunk, exact frames
        assert abs(wave.size / contract.SAMPLE_RATE - expected) < 1.5 * contract.HOP_LENGTH / contract.SAMPLE_RATE


def _check(server, protocol: str, tensors) -> str:
    """The server's answer: "success" (checked audio) or "invalid_arg" (with a message)."""
    try:
        result = _send(server, protocol, tensors)
    except InferenceServerException as e:
        status, message = str(e.status()), e.message() or ""
        assert status in ("StatusCode.INVALID_ARGUMENT", "400"), f"{status}: {message}"
        assert message.strip(), "an error without a message"
        return "invalid_arg"
    _check_audio(result.as_numpy(contract.WAVEFORM).reshape(-1), parse_request(tensors))
    assert int(result.as_numpy(contract.SAMPLE_RATE_OUT).reshape(-1)[0]) == contract.SAMPLE_RATE
    return "success"


def _fuzz(examples: int):
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    )


def _outcomes(prefix: str) -> dict[str, int]:
    return {k: v for k, v in OUTCOMES.items() if k.startswith(prefix)}


# --- in-process ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("tier", [pytest.param("unit"), pytest.param("slow", marks=pytest.mark.slow)])
def test_fuzzed_tensors_parse_or_are_refused_with_a_message(tier):
    examples, prefix = PARSE_EXAMPLES[tier], f"parse {tier}"

    @_fuzz(examples)
    @given(tensors=requests())
    def run(tensors):
        try:
            parse_request(tensors)
        except RequestError as e:
            assert str(e).strip(), "a refusal without a message"
            OUTCOMES[f"{prefix} refused"] += 1
            return
        OUTCOMES[f"{prefix} parsed"] += 1

    run()
    counts = _outcomes(prefix)
    print(f"fuzz parse_request: {counts}")
    assert sum(counts.values()) >= examples
    assert counts.get(f"{prefix} parsed", 0) >= examples // 4 and counts.get(f"{prefix} refused", 0) >= examples // 4


@pytest.fixture(scope="module")
def synthesizer(tiny_repo):
    """The synthesizer the server's f5_tts model builds from the tiny repository."""
    vocoder = OnnxVocoder(tiny_repo / contract.VOCODER_MODEL / contract.MODEL_VERSION / contract.VOCODER_ONNX_FILE)
    return Synthesizer.from_directory(
        tiny_repo / contract.TTS_MODEL / contract.MODEL_VERSION, vocoder, max_batch_chunks=16
    )


@pytest.mark.parametrize("tier", [pytest.param("unit"), pytest.param("slow", marks=pytest.mark.slow)])
def test_fuzzed_batches_synthesize_or_are_refused_each_on_its_own(synthesizer, tier):
    """What f5_tts's execute() does with a dynamic batch: parse each request, synthesize the parsed ones
    together. A refused request never fails its neighbours."""
    batches = SYNTHESIS_BATCHES[tier]
    prefix = f"synthesis {tier}"

    @_fuzz(batches)
    @given(batch=st.lists(requests(), min_size=1, max_size=4))
    def run(batch):
        parsed = []
        for tensors in batch:
            try:
                parsed.append(parse_request(tensors))
            except RequestError:
                OUTCOMES[f"{prefix} refused"] += 1
        results = synthesizer.synthesize(parsed)
        assert len(results) == len(parsed)
        for request, result in zip(parsed, results):
            if isinstance(result, RequestError):
                assert str(result).strip()
                OUTCOMES[f"{prefix} refused"] += 1
                continue
            assert isinstance(result, Speech), result
            _check_audio(result.waveform, request)
            OUTCOMES[f"{prefix} spoken"] += 1

    run()
    counts = _outcomes(prefix)
    print(f"fuzz Synthesizer: {counts}")
    assert counts.get(f"{prefix} spoken", 0) >= batches // 2 and counts.get(f"{prefix} refused", 0) >= batches // 2


# --- against the server ---------------------------------------------------------------------------


@pytest.mark.parametrize("tier", [pytest.param("integration"), pytest.param("slow", marks=pytest.mark.slow)])
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_fuzzed_requests_get_audio_or_invalid_argument(server, protocol, tier):
    examples = SERVER_EXAMPLES[tier]
    prefix = f"{tier} {protocol}"

    @_fuzz(examples)
    @given(tensors=requests())
    def run(tensors):
        OUTCOMES[f"{prefix} {_check(server, protocol, tensors)}"] += 1

    run()
    assert server.is_ready()
    assert server.dead_stubs() == []
    counts = _outcomes(prefix)
    print(f"fuzz {prefix}: {counts}")
    assert sum(counts.values()) >= examples
    assert (
        counts.get(f"{prefix} success", 0) >= examples // 4 and counts.get(f"{prefix} invalid_arg", 0) >= examples // 4
    )
