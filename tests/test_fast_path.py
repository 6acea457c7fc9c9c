"""The fast path on CPU: length buckets, the compiled DiT, CUDA-graph plumbing, half precision, the PyTorch vocoder.

What runs only on a GPU (CUDA graph capture and replay, fp16 speed) is exercised here as far
as CPU allows: the graph path runs with a stand-in capture whose replay re-runs the DiT on
the same static buffers, so batch padding, buffer copies and the text-embedding cache are
the ones a GPU replays. Tolerances:
- bucketed vs exact batch, graph path vs eager: the same arithmetic on padded, masked
  inputs; only the summation order of padded matrix products differs (float32 rounding,
  ~1e-7 per operation, over 2 layers x NFE steps): 1e-4 of the peak.
- compiled vs eager: Inductor fuses and reorders float32 operations: 1e-4 of the peak.
- bf16 / fp16 vs fp32: their significands keep 8 / 11 bits, a rounding of 2^-9 / 2^-12
  (0.2 % / 0.02 %) per operation; through the DiT and NFE steps the mel measured 0.7 % /
  0.09 % relative L2 on this tiny model (and 1.2 % for one step of F5TTS_v1_Base in bf16):
  bounds of 3 % / 0.5 % allow for other CPUs' kernels while still catching a wrong
  cast or noise drawn differently (which gives ~100 %).
- PyTorch Vocos vs the ONNX vocoder: the export's own bound, 1e-3 absolute.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import assert_same_audio, export_tiny, speak, wait_for

import contract
from contract.parameters import ParameterError, TtsParameters, parse_buckets
from export.__main__ import request_from_argv
from export.api import export_model
from export.demo import RELEASED_VOCOS_CONFIG, write_random_checkpoint, write_random_vocos, write_tiny_model_config
from export.errors import ExportError
from export.repository import REFERENCE_TEXT, REFERENCE_WAV
from pipeline.buckets import EngineError, graph_batch_sizes
from pipeline.engine import DitEngine, Shape, use_cache_dir
from pipeline.requests import parse_request
from pipeline.synthesizer import Synthesizer
from pipeline.vocoder import OnnxVocoder, TorchVocoder

ROOT = Path(__file__).resolve().parent.parent
SHORT = "I don't really care what you call me."
LONG = (
    "I don't really care what you call me. I've been a silent spectator, watching species evolve, empires rise "
    "and fall. But always remember, I am mighty and enduring. Respect me and I'll nurture you; ignore me and you "
    "shall face the consequences."
)
NFE = 4
BUCKETS = (256, 512, 768, 1024, 1536)  # the shapes these tests use; 1536 covers the longest chunk here


@pytest.fixture(scope="module")
def repo(tiny, tmp_path_factory) -> Path:
    return export_tiny(tiny, tmp_path_factory.mktemp("fast_path") / "repo", "--no-warmup")


@pytest.fixture(scope="module")
def requests_():
    audio, sr = sf.read(str(REFERENCE_WAV), dtype="float32", always_2d=True)
    audio = np.ascontiguousarray(audio.T)

    def make(text, seed, **options):
        tensors = {
            contract.REFERENCE_AUDIO: audio[None],
            contract.REFERENCE_SAMPLE_RATE: np.array([[sr]]),
            contract.REFERENCE_TEXT: np.array([[REFERENCE_TEXT.encode()]], dtype=object),
            contract.TARGET_TEXT: np.array([[text.encode()]], dtype=object),
            contract.NFE_STEP: np.array([[NFE]]),
            contract.SEED: np.array([[seed]]),
        }
        for name, value in options.items():
            tensors[name] = np.array([[value]], dtype=np.float32)
        return parse_request(tensors)

    # a short and a multi-chunk text, and one without guidance (cfg 0: the eager path skips the CFG pass)
    return [make(SHORT, 1), make(LONG, 2), make(SHORT, 3, **{contract.CFG_STRENGTH: 0.0})]


def _synth(repo: Path, **kwargs) -> Synthesizer:
    vocoder = OnnxVocoder(repo / contract.VOCODER_MODEL / contract.MODEL_VERSION / contract.VOCODER_ONNX_FILE)
    return Synthesizer.from_directory(repo / contract.TTS_MODEL / contract.MODEL_VERSION, vocoder, **kwargs)


def _eager_compiler(module, **_options):
    """torch.compile's stand-in: the bucketed, masked, cache-prefilled path without the compile time."""
    return module


def _rerun_capture(run, pool):
    """CUDA graph capture's stand-in on CPU: replay re-runs the recorded call on the same static buffers."""
    return run


def _assert_close(got: np.ndarray, want: np.ndarray, rel: float) -> None:
    assert got.shape == want.shape
    peak = float(np.abs(want).max())
    assert float(np.abs(got - want).max()) <= rel * peak, float(np.abs(got - want).max()) / peak


def _rel_l2(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


# --- shapes ---------------------------------------------------------------------------------
def test_buckets_and_batch_sizes():
    assert parse_buckets("512, 256,512") == (256, 512)
    for bad in ("", "a,b", "0,256", "-5"):
        with pytest.raises(ParameterError):
            parse_buckets(bad)
    assert graph_batch_sizes(16) == (1, 2, 4, 8, 16)
    assert graph_batch_sizes(6) == (1, 2, 4, 6)
    assert graph_batch_sizes(1) == (1,)


def test_engine_shapes(repo):
    tr = _synth(repo).cfm.transformer
    eager = DitEngine(tr)
    assert eager.shape(3, 700) == Shape(3, 700, compiled=False)  # eager: the exact batch, no padding
    compiled = DitEngine(tr, engine="compiled", buckets=(256, 512, 1024), max_batch=8, compiler=_eager_compiler)
    assert not compiled.graphs  # CPU: no CUDA graphs unless a capture is supplied
    assert compiled.shape(3, 700) == Shape(3, 1024, compiled=True)  # rows stay exact without graphs
    assert compiled.shape(1, 512) == Shape(1, 512, compiled=True)
    assert compiled.shape(2, 1025) == Shape(2, 1025, compiled=False)  # past the largest bucket: eager
    graphs = DitEngine(
        tr, engine="compiled", buckets=(256, 512, 1024), max_batch=8, compiler=_eager_compiler, capture=_rerun_capture
    )
    assert graphs.shape(3, 300) == Shape(4, 512, compiled=True)  # rows up to a captured batch size
    assert graphs.shape(8, 1) == Shape(8, 256, compiled=True)
    assert graphs.shape(9, 300) == Shape(9, 300, compiled=False)


# --- bucketed / graph path vs eager -----------------------------------------------------------
@pytest.fixture(scope="module")
def eager_speech(repo, requests_):
    synth = _synth(repo, max_batch_chunks=16)
    return [s.waveform for s in synth.synthesize(requests_)]


def _text_embeddings_per_solve(synth: Synthesizer, requests) -> list[int]:
    """How often the DiT's text embedding ran per ODE solve (f5-tts's cache: twice, cond and uncond)."""
    calls, solves = [], []
    hook = synth.cfm.transformer.text_embed.register_forward_hook(lambda *_: calls.append(1))
    original = synth._sample

    def counting(*args, **kwargs):
        before = len(calls)
        out = original(*args, **kwargs)
        solves.append(len(calls) - before)
        return out

    synth._sample = counting
    try:
        synth.synthesize(requests)
    finally:
        hook.remove()
        synth._sample = original
    return solves


def test_bucketed_audio_equals_unbucketed(repo, requests_, eager_speech):
    synth = _synth(repo, max_batch_chunks=16, engine="compiled", length_buckets=BUCKETS)
    synth.engine = DitEngine(
        synth.cfm.transformer, engine="compiled", buckets=BUCKETS, max_batch=16, compiler=_eager_compiler
    )
    for got, want in zip(synth.synthesize(requests_), eager_speech):
        _assert_close(got.waveform, want, 1e-4)
    # one request alone (a single row is masked too) and one chunk at a time
    synth.max_batch_chunks = 1
    _assert_close(synth.synthesize(requests_[:1])[0].waveform, eager_speech[0], 1e-4)
    assert set(_text_embeddings_per_solve(synth, requests_[:2])) == {2}


def test_cuda_graph_path_on_cpu_equals_eager(repo, requests_, eager_speech):
    synth = _synth(repo, max_batch_chunks=4)
    synth.engine = DitEngine(
        synth.cfm.transformer,
        engine="compiled",
        buckets=BUCKETS,
        max_batch=4,
        compiler=_eager_compiler,
        capture=_rerun_capture,
    )
    synth.warm_up()
    assert sorted(synth.engine._replays) == sorted((rows, frames) for rows in (1, 2, 4) for frames in BUCKETS)
    results = synth.synthesize(requests_)  # the long text's chunks and the short one: 3 rows, padded to 4
    for got, want in zip(results, eager_speech):
        _assert_close(got.waveform, want, 1e-4)
    # f5-tts's text-embedding cache: computed once per solve, read by every replayed step
    assert set(_text_embeddings_per_solve(synth, requests_[:2])) == {2}


# --- torch.compile for real -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def compiled(repo, tmp_path_factory):
    cache = use_cache_dir(tmp_path_factory.mktemp("inductor_cache"))
    synth = _synth(repo, max_batch_chunks=2, engine="compiled", length_buckets=BUCKETS)
    synth.warm_up()
    return synth, cache


@pytest.mark.slow  # compiles the DiT
def test_compiled_equals_eager_without_compiling_on_requests(compiled, requests_, eager_speech, monkeypatch):
    synth, _ = compiled
    monkeypatch.setattr(DitEngine, "serving_stance", "fail_on_recompile")  # a compile now would raise
    results = synth.synthesize(requests_)  # chunks of several lengths, batches of 1 and 2
    for got, want in zip(results, eager_speech):
        _assert_close(got.waveform, want, 1e-4)


@pytest.mark.slow  # compiles the DiT
def test_second_start_loads_the_compiled_dit_from_the_cache(compiled, repo):
    """A fresh process with the same cache directory compiles nothing: Inductor's FX graph cache hits."""
    _, cache = compiled
    script = f"""
import json, torch
from torch._dynamo.utils import counters
from pipeline.engine import use_cache_dir
from pipeline.synthesizer import Synthesizer
use_cache_dir({str(cache)!r})
synth = Synthesizer.from_directory({str(repo / contract.TTS_MODEL / contract.MODEL_VERSION)!r}, None,
                                   max_batch_chunks=2, engine="compiled", length_buckets={BUCKETS!r})
synth.warm_up()
print(json.dumps(dict(counters["inductor"])))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = json.loads(proc.stdout.strip().splitlines()[-1])
    assert stats.get("fxgraph_cache_hit", 0) >= 1 and stats.get("fxgraph_cache_miss", 0) == 0, stats


@pytest.mark.slow  # compiles the DiT at each of two server starts
def test_served_compiled_engine_compiles_at_load_then_reuses_its_cache(tiny, tmp_path, server, start_server, reference):
    """Through tritonserver: the compiled repository answers as the eager session server does, compiled
    in initialize (no compile on a request), and its restart finds every graph in the repository's cache."""
    repo = export_tiny(
        tiny, tmp_path / "repo", "--engine", "compiled", "--length-buckets", ",".join(str(b) for b in BUCKETS)
    )
    cache = repo / contract.TTS_MODEL / contract.COMPILE_CACHE_DIR
    want = speak(server, reference, seed=7)
    for start in ("first", "restart"):
        srv = start_server(repo)
        assert_same_audio(speak(srv, reference, seed=7), want, rel=1e-4)
        # the stub's log records reach the server's log asynchronously
        ready = wait_for(
            lambda srv=srv: next((ln for ln in srv.log_text().splitlines() if "compiled DiT ready" in ln), None),
            "the compiled DiT's ready line in the server log",
            timeout=30,
        )
        assert f"compile cache {cache}" in ready, ready
        misses = int(re.search(r"(\d+) miss\(es\)", ready).group(1))
        hits = int(re.search(r"(\d+) hit\(s\)", ready).group(1))
        if start == "first":
            assert misses >= 1 and any(cache.iterdir()), ready
        else:
            assert misses == 0 and hits >= 1, ready
        srv.stop()


# --- half precision ---------------------------------------------------------------------------------
class _KeepMels:
    def __init__(self, vocode):
        self.vocode, self.mels = vocode, []

    def __call__(self, mels):
        self.mels = [m.cpu().numpy() for m in mels]
        return self.vocode(mels)


@pytest.mark.parametrize("dtype, bound", [("bf16", 0.03), ("fp16", 0.005)])
def test_half_precision_is_close_to_fp32(repo, requests_, dtype, bound):
    onnx = OnnxVocoder(repo / contract.VOCODER_MODEL / contract.MODEL_VERSION / contract.VOCODER_ONNX_FILE)
    out = {}
    for name in ("fp32", dtype):
        keep = _KeepMels(onnx)
        synth = Synthesizer.from_directory(repo / contract.TTS_MODEL / contract.MODEL_VERSION, keep, dtype=name)
        [speech] = synth.synthesize(requests_[1:2])  # the multi-chunk text
        out[name] = (np.concatenate(keep.mels, axis=-1), speech.waveform)
    assert out[dtype][1].shape == out["fp32"][1].shape
    assert _rel_l2(out[dtype][0], out["fp32"][0]) <= bound


# --- the PyTorch vocoder -------------------------------------------------------------------------------
@pytest.mark.parametrize("architecture", ["tiny", "released"])
def test_torch_vocoder_equals_onnx_vocoder(repo, tmp_path, architecture):
    """Mels of different lengths decoded in one padded batch, each equal to the ONNX vocoder's lone decode."""
    if architecture == "tiny":
        directory = repo / contract.VOCODER_MODEL / contract.MODEL_VERSION / contract.TORCH_VOCOS_DIR
        onnx = OnnxVocoder(repo / contract.VOCODER_MODEL / contract.MODEL_VERSION / contract.VOCODER_ONNX_FILE)
    else:  # charactr/vocos-mel-24khz's architecture (random weights), exported as the export does
        from export import vocoder as voc

        directory = write_random_vocos(tmp_path / "vocos", RELEASED_VOCOS_CONFIG)
        voc.export_onnx(voc.load_vocos(directory), tmp_path / "vocos.onnx")
        onnx = OnnxVocoder(tmp_path / "vocos.onnx")
    synth = _synth(repo)
    speech, _ = sf.read(str(REFERENCE_WAV), dtype="float32")
    mel = synth.cfm.mel_spec(torch.from_numpy(speech)[None])[0]  # real speech through f5-tts's front end
    mels = [mel[:, :n] for n in (mel.shape[1], 57, 300, 2)]
    torch_waves = TorchVocoder(directory)(mels)
    onnx_waves = onnx(mels)
    for got, want, m in zip(torch_waves, onnx_waves, mels):
        assert got.shape == want.shape == ((m.shape[1] - 1) * contract.HOP_LENGTH,)
        assert float(np.abs(got - want).max()) <= 1e-3


def test_export_writes_the_torch_vocoder_and_gpu_defaults(repo):
    vocos = repo / contract.VOCODER_MODEL / contract.MODEL_VERSION / contract.TORCH_VOCOS_DIR
    assert (vocos / "config.yaml").is_file() and (vocos / "pytorch_model.bin").is_file()
    gpu = request_from_argv(["--output", "x", "--device", "gpu"]).serving
    assert (gpu.tts.dtype, gpu.tts.vocoder_runtime, gpu.tts.engine) == ("fp16", "torch", "eager")
    cpu = request_from_argv(["--output", "x"]).serving
    assert (cpu.tts.dtype, cpu.tts.vocoder_runtime, cpu.tts.engine) == ("fp32", "onnx", "eager")
    with pytest.raises(ValueError, match="needs --device gpu"):  # half precision on CPU: docs/benchmarks.md
        request_from_argv(["--output", "x", "--dtype", "bf16"]).serving.check()
    bf16 = request_from_argv(
        [
            "--output",
            "x",
            "--device",
            "gpu",
            "--dtype",
            "bf16",
            "--engine",
            "compiled",
            "--length-buckets",
            "1024,512",
            "--no-cuda-graphs",
        ]
    ).serving.tts
    assert (bf16.dtype, bf16.engine, bf16.buckets, bf16.cuda_graphs) == ("bf16", "compiled", (512, 1024), False)


# --- clear errors ------------------------------------------------------------------------------------
def test_model_parameters_refuse_bad_engine_settings():
    for raw, words in [
        ({"engine": "fast"}, "'engine' = 'fast'"),
        ({"length_buckets": "a"}, "'length_buckets'"),
        ({"vocoder_runtime": "trt"}, "'vocoder_runtime' = 'trt'"),
    ]:
        with pytest.raises(ParameterError, match=words):
            TtsParameters.from_triton(raw)
    params = TtsParameters.from_triton({"engine": "compiled", "length_buckets": "512,256", "cuda_graphs": "false"})
    assert (params.engine, params.buckets, params.cuda_graphs) == ("compiled", (256, 512), False)


def test_compiled_engine_refuses_what_it_cannot_run(repo, tiny, tmp_path, monkeypatch):
    from pipeline.f5_model import ModelConfig, build_cfm, default_vocab_file, load_vocab

    vocab, _ = load_vocab(default_vocab_file())
    unmasked = build_cfm(
        ModelConfig.load(write_tiny_model_config(tmp_path / "t.yaml")), vocab, batched_attention_mask=False
    )
    with pytest.raises(EngineError, match="attention padding mask"):
        DitEngine(unmasked.transformer, engine="compiled", compiler=_eager_compiler)
    with pytest.raises(EngineError, match="DiT backbone"):
        DitEngine(torch.nn.Linear(2, 2), engine="compiled", compiler=_eager_compiler)
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(EngineError, match="needs a C\\+\\+ compiler .* or use engine 'eager'"):
        _synth(repo, engine="compiled")
    with pytest.raises(ExportError, match="--engine compiled supports the DiT backbone"):
        config = write_tiny_model_config(
            tmp_path / "e2.yaml",
            base="E2TTS_Base",
            arch=dict(dim=64, depth=2, heads=2, ff_mult=2, text_dim=32, conv_layers=1),
        )
        export_model(
            request_from_argv(
                [
                    "--ckpt",
                    str(write_random_checkpoint(config, tmp_path / "e2.safetensors")),
                    "--model-config",
                    str(config),
                    "--vocoder",
                    str(tiny.vocoder),
                    "--output",
                    str(tmp_path / "out"),
                    "--engine",
                    "compiled",
                ]
            )
        )
