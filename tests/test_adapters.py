"""The three model.py adapters without tritonserver, on a stubbed triton_python_backend_utils
(tests/triton_stub.py) and the exported tiny repository: initialize() from the exported config,
INVALID_ARG for the request's fault and INTERNAL for ours, one bad request amid good ones, the
stream model's cancellation and shutdown, finalize()."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest
import triton_stub
from conftest import LONG_TEXT, SHORT_TEXT, VOICE, assert_same_audio

import contract
from contract.parameters import ParameterError

ADAPTERS = Path(__file__).resolve().parent.parent / "model_repository"
NFE = 4


@pytest.fixture(autouse=True)
def _pipeline_logging_restored():
    """initialize() points the `pipeline` logger at pb_utils.Logger; other tests get it back as it was."""
    logger = logging.getLogger("pipeline")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def _load(name: str, monkeypatch):
    return triton_stub.load_model(ADAPTERS / name / contract.MODEL_VERSION / contract.MODEL_CODE_FILE, monkeypatch)


def _initialized(name: str, repository, monkeypatch):
    """(the adapter's TritonPythonModel, initialized from `repository`'s config of it; its pb_utils)."""
    model, pb_utils = _load(name, monkeypatch)
    instance = model.TritonPythonModel()
    instance.initialize(triton_stub.model_args(repository, name))
    return instance, pb_utils


def _request(pb_utils, sender=None, cancelled=lambda: False, **inputs):
    """A request as execute() gets it, from contract names to values ([1, 1] tensors, like a client's);
    cancelled() says whether its client has cancelled it by now."""
    tensors = []
    for name, value in inputs.items():
        if isinstance(value, np.ndarray):
            array = value
        elif isinstance(value, str):
            array = np.array([[value.encode()]], dtype=object)
        else:
            array = np.array([[value]])
        tensors.append(pb_utils.Tensor(name, array))
    return pb_utils.InferenceRequest(inputs=tensors, sender=sender, cancelled=cancelled)


def _uploaded(reference, text=SHORT_TEXT, **options):
    return {
        contract.REFERENCE_AUDIO: reference.audio[None],
        contract.REFERENCE_SAMPLE_RATE: reference.sample_rate,
        contract.REFERENCE_TEXT: reference.text,
        contract.TARGET_TEXT: text,
        contract.NFE_STEP: NFE,
        **options,
    }


# --- f5_tts -----------------------------------------------------------------------------------------


@pytest.fixture
def tts(tiny_repo, monkeypatch):
    instance, pb_utils = _initialized(contract.TTS_MODEL, tiny_repo, monkeypatch)
    yield instance, pb_utils
    instance.finalize()


def test_f5_tts_initializes_from_its_exported_config(tts):
    instance, pb_utils = tts
    assert instance.params.max_batch_chunks == 16 and instance.params.voice_names == (VOICE,)
    assert sorted(instance.synthesizer.voices) == [VOICE]
    loaded = [m for level, m in pb_utils.Logger.lines if level == "info" and "loaded on cpu" in m]
    assert loaded and "(F5TTS_v1_Base_tiny, fp32, engine eager, vocoder onnx)" in loaded[0]
    assert f"voices: {VOICE}" in loaded[0]
    logging.getLogger("pipeline.synthesizer").warning("a pipeline record")  # reaches the server's log
    assert ("warn", "pipeline.synthesizer: a pipeline record") in pb_utils.Logger.lines
    instance.finalize()
    assert instance.synthesizer is None


def test_f5_tts_counts_reference_cache_lookups_as_a_triton_metric(tts, reference):
    """An uploaded reference sent twice is prepared once: a miss, then a hit (f5_tts_reference_cache_total)."""
    instance, pb_utils = tts
    for seed in (1, 2):
        assert not instance.execute([_request(pb_utils, **_uploaded(reference, seed=seed))])[0].has_error()
    family = pb_utils.MetricFamily.families[contract.REFERENCE_CACHE_METRIC]
    assert family.kind == pb_utils.MetricFamily.COUNTER
    assert {m.labels["result"]: m.value() for m in family.metrics} == {"miss": 1, "hit": 1}


def test_f5_tts_answers_a_cancelled_request_cancelled_and_its_neighbour_in_full(tts, reference):
    """A request whose client cancelled it is answered CANCELLED and counted (f5_tts_cancelled_total); the
    request beside it in the batch is answered as when it is alone."""
    instance, pb_utils = tts
    [alone] = instance.execute([_request(pb_utils, **_uploaded(reference, seed=5))])
    gone = _request(pb_utils, cancelled=lambda: True, **_uploaded(reference, LONG_TEXT, seed=6))
    kept = _request(pb_utils, **_uploaded(reference, seed=5))
    cancelled, answered = instance.execute([gone, kept])
    assert cancelled.error().code() == pb_utils.TritonError.CANCELLED
    assert "cancelled by its client; stopped after 0 of" in cancelled.error().message()
    assert gone.cancel_checks >= 1 and kept.cancel_checks >= 1
    assert_same_audio(answered.outputs()[contract.WAVEFORM], alone.outputs()[contract.WAVEFORM])
    family = pb_utils.MetricFamily.families[contract.CANCELLED_METRIC]
    assert family.kind == pb_utils.MetricFamily.COUNTER and [m.value() for m in family.metrics] == [1]
    assert any("cancelled by its client: stopped after 0 of" in m for _, m in pb_utils.Logger.lines)


@pytest.mark.parametrize(
    "edit,error,message",
    [
        (lambda c: c.replace('key: "dtype"', 'key: "dtpye"'), ParameterError, "unknown model parameter(s) ['dtpye']"),
        (
            lambda c: c.replace('string_value: "nature"', 'string_value: "nature,zed"'),
            ValueError,
            "lists ['nature', 'zed'] but",
        ),
    ],
    ids=["misspelt_parameter", "voices_disagree"],
)
def test_f5_tts_initialize_refuses_a_config_it_cannot_serve(tiny_repo, monkeypatch, edit, error, message):
    model, _ = _load(contract.TTS_MODEL, monkeypatch)
    config = edit((tiny_repo / contract.TTS_MODEL / contract.MODEL_CONFIG_FILE).read_text())
    with pytest.raises(error) as err:
        model.TritonPythonModel().initialize(triton_stub.model_args(tiny_repo, contract.TTS_MODEL, config))
    assert message in str(err.value)


def test_f5_tts_answers_each_request_of_a_batch_on_its_own(tts, reference):
    instance, pb_utils = tts
    good = _uploaded(reference, seed=3)
    batch = [
        _request(pb_utils, **good),
        _request(pb_utils, **_uploaded(reference, "   ")),  # refused while parsing
        _request(pb_utils, **_uploaded(reference, duration=np.array([[2.0]], np.float32))),  # while planning
        _request(pb_utils, voice=VOICE, target_text=LONG_TEXT, nfe_step=NFE, seed=4),
    ]
    responses = instance.execute(batch)
    assert len(responses) == len(batch)
    first, empty, short, voiced = responses
    assert empty.error().code() == short.error().code() == pb_utils.TritonError.INVALID_ARG
    assert "input 'target_text' is empty" in empty.error().message()
    assert "input 'duration' is 2.0 s but must exceed the reference length" in short.error().message()
    for response, chunks in ((first, 1), (voiced, 3)):
        assert not response.has_error()
        outputs = response.outputs()
        assert set(outputs) == {s.name for s in contract.TTS_OUTPUTS}
        assert outputs[contract.WAVEFORM].dtype == np.float32 and outputs[contract.WAVEFORM].shape[0] == 1
        assert outputs[contract.SAMPLE_RATE_OUT].tolist() == [[contract.SAMPLE_RATE]]
        assert outputs[contract.CHUNK_COUNT].tolist() == [[chunks]]
    alone = instance.execute([_request(pb_utils, **good)])[0].outputs()[contract.WAVEFORM]
    assert_same_audio(first.outputs()[contract.WAVEFORM][0], alone[0])  # its neighbours changed nothing


def test_f5_tts_reports_its_own_failure_as_internal_and_logs_the_traceback(tts, reference, monkeypatch):
    instance, pb_utils = tts

    def broken(requests, is_cancelled=None):
        raise RuntimeError("the DiT fell over")

    monkeypatch.setattr(instance.synthesizer, "synthesize", broken)
    good, bad = instance.execute(
        [_request(pb_utils, **_uploaded(reference)), _request(pb_utils, **_uploaded(reference, nfe_step=500))]
    )
    assert good.error().code() == pb_utils.TritonError.INTERNAL
    assert good.error().message() == "internal error during synthesis; see the server log"
    assert bad.error().code() == pb_utils.TritonError.INVALID_ARG and "'nfe_step' is 500" in bad.error().message()
    logged = [m for level, m in pb_utils.Logger.lines if level == "error"]
    assert len(logged) == 1 and "Traceback" in logged[0] and "the DiT fell over" in logged[0]


# --- f5_tts_stream ----------------------------------------------------------------------------------


@pytest.fixture
def stream(tiny_repo, tts, monkeypatch):
    """The stream model, whose BLS requests reach the f5_tts adapter above."""
    tts_instance, tts_pb_utils = tts
    model, pb_utils = _load(contract.STREAM_MODEL, monkeypatch)
    asked = []  # the inputs of every BLS request by name, and the chunk count f5_tts answered

    def f5_tts(request):
        assert request.model_name == contract.TTS_MODEL
        assert request.requested_output_names == [
            contract.WAVEFORM,
            contract.CHUNK_COUNT,
            contract.SEGMENT_INDEX,
            contract.CAPTIONS,
        ]
        [response] = tts_instance.execute([tts_pb_utils.InferenceRequest(inputs=request.inputs())])
        count = None if response.has_error() else int(response.outputs()[contract.CHUNK_COUNT][0, 0])
        asked.append({**{t.name(): t.as_numpy() for t in request.inputs()}, "answered_chunk_count": count})
        return response

    pb_utils.InferenceRequest.handler = staticmethod(f5_tts)
    instance = model.TritonPythonModel()
    instance.initialize(triton_stub.model_args(tiny_repo, contract.STREAM_MODEL))
    yield instance, pb_utils, asked
    instance.finalize()


def _stream_chunk_count(stream, text: str) -> int:
    """Chunks the stream model split `text` into: what f5_tts answered to its first chunk request."""
    _, _, asked = stream
    assert asked[0][contract.TARGET_TEXT].tolist() == [[text.encode()]]
    return asked[0]["answered_chunk_count"]


def test_stream_model_refuses_a_config_that_is_not_decoupled(tiny_repo, monkeypatch):
    model, _ = _load(contract.STREAM_MODEL, monkeypatch)
    config = (
        (tiny_repo / contract.STREAM_MODEL / contract.MODEL_CONFIG_FILE)
        .read_text()
        .replace("decoupled: true", "decoupled: false")
    )
    with pytest.raises(ValueError, match="f5_tts_stream must be decoupled"):
        model.TritonPythonModel().initialize(triton_stub.model_args(tiny_repo, contract.STREAM_MODEL, config))


def test_stream_pieces_join_to_the_whole_answer(stream, tts):
    instance, pb_utils, asked = stream
    sender = triton_stub.ResponseSender()
    inputs = dict(voice=VOICE, target_text=LONG_TEXT, nfe_step=NFE, seed=11)
    assert instance.execute([_request(pb_utils, sender, **inputs)]) is None  # answered from its own thread
    sender.wait()
    flags = [f for _, f in sender.sent]
    assert len(flags) >= 3 and flags[-1] == pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL and not any(flags[:-1])
    assert [a[contract.CHUNK_INDEX].tolist() for a in asked] == [[[k]] for k in range(len(asked))]
    assert all(a[contract.FIRST_CHUNK_CHARS].tolist() == [[contract.STREAM_FIRST_CHUNK_CHARS]] for a in asked)
    streamed = np.concatenate([p.outputs()[contract.WAVEFORM][0] for p in sender.pieces])
    assert all(p.outputs()[contract.SAMPLE_RATE_OUT].tolist() == [[contract.SAMPLE_RATE]] for p in sender.pieces)
    tts_instance, tts_pb_utils = tts
    whole = tts_instance.execute(
        [_request(tts_pb_utils, first_chunk_chars=contract.STREAM_FIRST_CHUNK_CHARS, **inputs)]
    )[0]
    assert_same_audio(streamed, whole.outputs()[contract.WAVEFORM][0], rel=1e-6)


def test_a_bad_stream_request_ends_with_f5_tts_answer(stream):
    instance, pb_utils, _ = stream
    sender = triton_stub.ResponseSender()
    instance.execute([_request(pb_utils, sender, voice="nobody", target_text=SHORT_TEXT)])
    sender.wait()
    [(response, flags)] = sender.sent
    assert flags == pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
    assert response.error().code() == pb_utils.TritonError.INVALID_ARG
    assert "unknown voice 'nobody'; known voices: nature" in response.error().message()


def test_a_cancelled_stream_synthesizes_no_further_chunk(stream):
    instance, pb_utils, asked = stream
    sender = triton_stub.ResponseSender(cancel_after=1)  # the client leaves after the first piece
    instance.execute([_request(pb_utils, sender, voice=VOICE, target_text=LONG_TEXT, nfe_step=NFE)])
    sender.wait()
    assert len(asked) == 1  # chunk 0 only
    assert len(sender.pieces) == 1 and sender.sent[-1] == (None, pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
    total = _stream_chunk_count(stream, LONG_TEXT)
    assert total >= 3
    assert any(f"client cancelled; stopped after 1 of {total} chunks" in m for _, m in pb_utils.Logger.lines)


def test_a_shutdown_ends_an_open_stream_with_an_error_not_silence(stream):
    instance, pb_utils, asked = stream
    sender = triton_stub.ResponseSender()
    first_piece = threading.Event()

    def send(response=None, flags=0):
        triton_stub.ResponseSender.send(sender, response, flags)
        if not first_piece.is_set():
            first_piece.set()
            assert instance._stopping.wait(60)  # finalize() has begun: the stream is open when it starts

    sender.send = send
    instance.execute([_request(pb_utils, sender, voice=VOICE, target_text=LONG_TEXT, nfe_step=NFE)])
    assert first_piece.wait(120)
    instance.finalize()  # returns once every stream has ended
    assert sender.finished.is_set() and len(asked) == 1 and len(sender.pieces) == 1
    [error] = sender.errors
    assert error.code() == pb_utils.TritonError.UNAVAILABLE
    total = _stream_chunk_count(stream, LONG_TEXT)
    assert error.message() == f"the server is shutting down: stream stopped after 1 of {total} chunks"


def test_a_failure_inside_the_stream_model_is_internal_and_logged(stream):
    instance, pb_utils, _ = stream

    def gone(request):
        raise RuntimeError("f5_tts is not loaded")

    pb_utils.InferenceRequest.handler = staticmethod(gone)
    sender = triton_stub.ResponseSender()
    instance.execute([_request(pb_utils, sender, voice=VOICE, target_text=SHORT_TEXT)])
    sender.wait()
    [error] = sender.errors
    assert error.code() == pb_utils.TritonError.INTERNAL
    assert error.message() == "internal error while streaming; see the server log"
    logged = [m for level, m in pb_utils.Logger.lines if level == "error"]
    assert len(logged) == 1 and "Traceback" in logged[0] and "f5_tts is not loaded" in logged[0]


# --- vocoder ----------------------------------------------------------------------------------------


@pytest.fixture
def vocoder(tiny_repo, monkeypatch):
    instance, pb_utils = _initialized(contract.VOCODER_MODEL, tiny_repo, monkeypatch)
    yield instance, pb_utils
    instance.finalize()
    assert instance.vocoder is None


def test_vocoder_answers_each_mel_on_its_own(vocoder):
    instance, pb_utils = vocoder
    rng = np.random.default_rng(0)
    mel = rng.normal(-4, 1, (1, contract.N_MELS, 50)).astype(np.float32)
    nan = mel.copy()
    nan[0, 3, 7] = np.nan
    responses = instance.execute(
        [
            pb_utils.InferenceRequest(inputs=[pb_utils.Tensor(contract.MEL, m)])
            for m in (mel, nan, mel[:, :80], mel[..., :20])
        ]
    )
    ok, bad_values, bad_shape, short = responses
    # Vocos's centred ISTFT: (frames - 1) * hop samples
    assert ok.outputs()[contract.WAVEFORM].shape == (1, 49 * contract.HOP_LENGTH)
    assert short.outputs()[contract.WAVEFORM].shape == (1, 19 * contract.HOP_LENGTH)
    assert bad_values.error().code() == bad_shape.error().code() == pb_utils.TritonError.INVALID_ARG
    assert bad_values.error().message() == "input 'mel' contains NaN or Inf"
    assert "must be [batch, 100, frames], got shape [1, 80, 50]" in bad_shape.error().message()


def test_vocoder_failure_is_internal_and_logged(vocoder, monkeypatch):
    instance, pb_utils = vocoder

    def broken(mel):
        raise RuntimeError("onnxruntime ran out of memory")

    monkeypatch.setattr(instance.vocoder, "decode_batch", broken)
    mel = np.zeros((1, contract.N_MELS, 10), np.float32)
    [response] = instance.execute([pb_utils.InferenceRequest(inputs=[pb_utils.Tensor(contract.MEL, mel)])])
    assert response.error().code() == pb_utils.TritonError.INTERNAL
    assert response.error().message() == "internal error in the vocoder; see the server log"
    assert any("onnxruntime ran out of memory" in m for level, m in pb_utils.Logger.lines if level == "error")


def test_vocoder_initialize_refuses_an_unknown_parameter(tiny_repo, monkeypatch):
    model, _ = _load(contract.VOCODER_MODEL, monkeypatch)
    config = (
        (tiny_repo / contract.VOCODER_MODEL / contract.MODEL_CONFIG_FILE)
        .read_text()
        .replace('key: "onnx_file"', 'key: "onnx_path"')
    )
    with pytest.raises(ParameterError, match=r"unknown model parameter\(s\) \['onnx_path'\]"):
        model.TritonPythonModel().initialize(triton_stub.model_args(tiny_repo, contract.VOCODER_MODEL, config))
