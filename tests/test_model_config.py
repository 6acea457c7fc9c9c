"""config.pbtxt comes from one typed spec, round-trips through model_config_pb2 and matches golden files.

After an intended change of the configs, regenerate the golden files with
  UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_model_config.py
and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

import contract
from export import model_config as mc

GOLDEN = Path(__file__).parent / "golden"
WARMUP_DIMS = {
    contract.REFERENCE_AUDIO: [1, 127987],
    contract.REFERENCE_SAMPLE_RATE: [1],
    contract.REFERENCE_TEXT: [1],
    contract.TARGET_TEXT: [1],
    contract.NFE_STEP: [1],
    contract.SEED: [1],
}
OPTIONS = mc.ServingOptions.create(
    device="gpu", instances=2, max_batch_size=16, dtype="fp16", f5_model_name="F5TTS_v1_Base"
)


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; see this module's docstring to update it"


def test_f5_tts_config_matches_golden():
    _check_golden("f5_tts.config.pbtxt", mc.to_pbtxt(mc.tts_config(OPTIONS, WARMUP_DIMS)))


def test_transcriber_config_matches_golden():
    """On the export's device, one instance, dynamic batching over ragged audio; the Whisper's source named."""
    _check_golden("transcriber.config.pbtxt", mc.to_pbtxt(mc.transcriber_config(OPTIONS, contract.DEFAULT_ASR_MODEL)))


def test_stream_config_matches_golden():
    _check_golden("f5_tts_stream.config.pbtxt", mc.to_pbtxt(mc.stream_config(OPTIONS)))


def test_stream_config_is_decoupled_weightless_and_takes_the_same_inputs():
    cfg = text_format.Parse(mc.to_pbtxt(mc.stream_config(OPTIONS)), pb.ModelConfig())
    assert cfg.model_transaction_policy.decoupled
    assert [i.name for i in cfg.input] == [s.name for s in contract.TTS_INPUTS if s.name != contract.CHUNK_INDEX]
    assert cfg.max_batch_size == OPTIONS.max_batch_size  # clients send the same [1, ...] tensors to both
    assert cfg.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU and cfg.instance_group[0].count == 1


def test_registered_voices_are_listed_in_a_config_parameter():
    cfg = text_format.Parse(mc.to_pbtxt(mc.tts_config(OPTIONS, WARMUP_DIMS, ["zoe", "adam"])), pb.ModelConfig())
    assert cfg.parameters[contract.VOICES_PARAMETER].string_value == "adam,zoe"
    assert contract.VOICES_PARAMETER not in mc.tts_config(OPTIONS, WARMUP_DIMS).parameters


def test_vocoder_config_matches_golden():
    _check_golden("vocoder.config.pbtxt", mc.to_pbtxt(mc.vocoder_config(OPTIONS)))


def test_config_declares_every_contract_tensor():
    cfg = text_format.Parse(mc.to_pbtxt(mc.tts_config(OPTIONS, WARMUP_DIMS)), pb.ModelConfig())
    assert [i.name for i in cfg.input] == [s.name for s in contract.TTS_INPUTS]
    assert {i.name for i in cfg.input if i.optional} == {s.name for s in contract.TTS_INPUTS if s.optional}
    assert [i.name for i in cfg.input if i.allow_ragged_batch] == [contract.REFERENCE_AUDIO]
    assert cfg.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU and cfg.instance_group[0].count == 2
    assert cfg.parameters["dtype"].string_value == "fp16"
    assert set(cfg.model_warmup[0].inputs) == set(WARMUP_DIMS)


def test_exported_configs_parse(tiny_repo):
    for model in (contract.TTS_MODEL, contract.STREAM_MODEL, contract.VOCODER_MODEL):
        cfg = text_format.Parse((tiny_repo / model / "config.pbtxt").read_text(), pb.ModelConfig())
        assert cfg.name == model and cfg.backend == "python"


@pytest.mark.parametrize(
    "options,message",
    [
        (mc.ServingOptions(device="tpu"), "device must be cpu or gpu"),
        (mc.ServingOptions(instances=0), "instances must be >= 1"),
        (mc.ServingOptions(max_batch_size=0), "max batch size"),
        (mc.ServingOptions.create(dtype="fp16"), "needs --device gpu"),
        (mc.ServingOptions.create(max_batch_chunks=0), "'max_batch_chunks' = 0; must be >= 1"),
        (mc.ServingOptions.create(default_nfe_step=0), "--nfe-step 0 is outside"),
    ],
)
def test_invalid_serving_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        options.check()


def test_warmup_can_be_switched_off():
    cfg = mc.tts_config(mc.ServingOptions(warmup=False), WARMUP_DIMS)
    assert len(cfg.model_warmup) == 0
    assert len(mc.tts_config(mc.ServingOptions(), WARMUP_DIMS).model_warmup) == 1


def test_export_limits_reach_the_server_parameters():
    """Limits chosen at export become model parameters that the model parses back."""
    import dataclasses

    from google.protobuf import json_format

    from contract.parameters import TtsParameters
    from pipeline.requests import RequestError, parse_request

    limits = dataclasses.replace(
        contract.LIMITS, max_target_text_bytes=50, max_reference_seconds=10.0, max_audio_seconds=60.0
    )
    cfg = mc.tts_config(
        mc.ServingOptions.create(max_target_text_bytes=50, max_reference_seconds=10.0, max_audio_seconds=60.0),
        WARMUP_DIMS,
    )
    raw = json_format.MessageToDict(cfg, preserving_proto_field_name=True)["parameters"]
    params = TtsParameters.from_triton(raw)
    assert params.limits == limits
    tensors = {
        contract.REFERENCE_AUDIO: np.full((1, 1, 24000), 0.1, np.float32),
        contract.REFERENCE_SAMPLE_RATE: np.array([[24000]]),
        contract.REFERENCE_TEXT: np.array([[b"ref"]], dtype=object),
        contract.TARGET_TEXT: np.array([[b"x" * 60]], dtype=object),
    }
    with pytest.raises(RequestError, match="'target_text' is 60 bytes; at most 50 bytes"):
        parse_request(tensors, params.defaults, params.limits)
    with pytest.raises(RequestError, match="'duration' is 61.0; allowed range is \\[0.0, 60.0\\]"):
        parse_request(
            {
                **tensors,
                contract.TARGET_TEXT: np.array([[b"ok"]], dtype=object),
                contract.DURATION: np.array([[61.0]], np.float32),
            },
            params.defaults,
            params.limits,
        )


def test_config_parameters_are_the_typed_parameters_the_models_parse():
    """Every config parameter is written from the models' parameter dataclasses and parses back into them."""
    import dataclasses

    from google.protobuf import json_format

    from contract.parameters import StreamParameters, TranscriberParameters, TtsParameters, VocoderParameters

    assert contract.VOICES_PARAMETER in {f.name for f in dataclasses.fields(TtsParameters)}
    with_transcriber = dataclasses.replace(
        OPTIONS, tts=dataclasses.replace(OPTIONS.tts, transcriber_model=contract.TRANSCRIBER_MODEL)
    )
    for config, kind in [
        (mc.tts_config(with_transcriber, WARMUP_DIMS, ["zoe"]), TtsParameters),
        (mc.stream_config(OPTIONS), StreamParameters),
        (mc.vocoder_config(OPTIONS), VocoderParameters),
        (mc.transcriber_config(OPTIONS, contract.DEFAULT_ASR_MODEL), TranscriberParameters),
    ]:
        raw = json_format.MessageToDict(config, preserving_proto_field_name=True)["parameters"]
        assert set(raw) == {f.name for f in dataclasses.fields(kind)}, config.name
        parsed = kind.from_triton(raw)
        assert {k: v["string_value"] for k, v in raw.items()} == {
            f.name: str(getattr(parsed, f.name)).lower()
            if isinstance(getattr(parsed, f.name), bool)
            else str(getattr(parsed, f.name))
            for f in dataclasses.fields(kind)
        }
    tts = TtsParameters.from_triton(
        json_format.MessageToDict(mc.tts_config(OPTIONS, WARMUP_DIMS, ["zoe"]), preserving_proto_field_name=True)[
            "parameters"
        ]
    )
    assert (tts.dtype, tts.max_batch_chunks, tts.f5_model_name, tts.voice_names) == (
        OPTIONS.tts.dtype,
        OPTIONS.tts.max_batch_chunks,
        OPTIONS.tts.f5_model_name,
        ("zoe",),
    )


def _other_value(f):
    """A value of knob `f` other than its default (and its per-device defaults), inside its declared bounds."""
    meta = f.metadata
    if meta.get("choices"):
        return next(c for c in reversed(meta["choices"]) if c != f.default)
    if isinstance(f.default, bool):
        return not f.default
    if meta.get("normalize"):
        return "512,1024"
    if f.name.startswith("default_"):  # inside the request's allowed range
        low, high = getattr(contract.LIMITS, f.name.removeprefix("default_"))
        return type(f.default)((f.default + high) / 2) if f.default != high else low
    return f.default + 3


def test_every_knob_round_trips_from_the_export_flags_to_the_model():
    """Each parameter declared as a knob in contract/parameters.py has an export flag; a value given there is
    written to config.pbtxt and parsed back by the model as the same value (none lost or renamed on the way)."""
    import dataclasses

    from google.protobuf import json_format

    from contract.parameters import TtsParameters, _flag
    from export.__main__ import request_from_argv

    knobs = [f for f in dataclasses.fields(TtsParameters) if f.metadata["cli"]]
    assert {"dtype", "engine", "cuda_graphs", "cancel_poll_ms", "max_target_text_bytes"} <= {f.name for f in knobs}
    argv = ["--output", "x", "--device", "gpu"]
    wanted = {}
    for f in knobs:
        value = _other_value(f)
        wanted[f.name] = value
        argv += [_flag(f)] if isinstance(value, bool) else [_flag(f), str(value)]
    serving = request_from_argv(argv).serving
    serving.check()
    text = mc.to_pbtxt(mc.tts_config(serving, WARMUP_DIMS))
    raw = json_format.MessageToDict(text_format.Parse(text, pb.ModelConfig()), preserving_proto_field_name=True)[
        "parameters"
    ]
    parsed = TtsParameters.from_triton(raw)
    assert {name: getattr(parsed, name) for name in wanted} == wanted
    assert parsed == serving.tts


def test_the_model_hands_its_parameters_whole_to_the_synthesizer(tiny_repo):
    """model.py passes the parsed parameters as they are; the synthesizer runs by them."""
    from contract.parameters import TtsParameters
    from pipeline.synthesizer import Synthesizer

    params = TtsParameters(
        max_batch_chunks=3, reference_cache_size=5, cancel_poll_ms=7.0, max_target_text_bytes=99, max_audio_seconds=20.0
    )
    synth = Synthesizer.from_directory(tiny_repo / contract.TTS_MODEL / contract.MODEL_VERSION, None, parameters=params)
    assert (synth.max_batch_chunks, synth.reference_cache_size, synth.cancel_poll_seconds) == (3, 5, 0.007)
    assert synth.limits == params.limits and synth.engine.engine == params.engine
