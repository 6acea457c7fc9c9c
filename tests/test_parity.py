"""Parity with f5-tts's own inference: same weights, reference, texts and seed => same waveform.

The reference is f5-tts's own flow (what F5TTS.infer and infer_cli do): `preprocess_ref_audio_text`
on the reference file, then `infer_process`'s chunking and `infer_batch_process` fed the decoded
audio (infer_process itself calls torchaudio.load, which needs FFmpeg here), after
`seed_everything(seed)`, with the model loaded by f5-tts's `load_model` and the vocoder by
`load_vocoder`.
f5-tts runs the chunks of a long text in a thread pool, drawing noise from the global RNG in
whatever order the threads reach it; conftest's f5tts_inference makes that pool sequential so the
draws are in chunk order, which is the order the server defines for a seed.
Tolerance: max |diff| <= 1e-3 x peak (-60 dB): the ONNX vocoder and thread counts differ.
"""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import (
    LONG_TEXT,
    SHORT_TEXT,
    Reference,
    as_pcm16,
    assert_same_audio,
    f5tts_inference,
    f5tts_load,
    f5tts_preprocessed,
    f5tts_samples,
    speak,
    synthesis_request,
)

import contract
from pipeline.f5_model import default_vocab_file
from pipeline.synthesizer import Synthesizer
from pipeline.vocoder import OnnxVocoder

SEED = 1234
NFE = 8


@pytest.fixture(scope="module")
def f5tts_infer(tiny, tmp_path_factory):
    """f5-tts's own inference on the tiny checkpoint: (reference, text, **options) -> (waveform, chunks)."""
    model, vocoder = f5tts_load(tiny.config, tiny.checkpoint, default_vocab_file(), tiny.vocoder)
    return f5tts_inference(model, vocoder, tmp_path_factory.mktemp("f5tts_refs"), nfe_step=NFE, seed=SEED)


@pytest.fixture(scope="module")
def synthesizer(tiny_repo):
    vocoder = OnnxVocoder(tiny_repo / contract.VOCODER_MODEL / contract.MODEL_VERSION / contract.VOCODER_ONNX_FILE)
    return Synthesizer.from_directory(tiny_repo / contract.TTS_MODEL / "1", vocoder, max_batch_chunks=16)


def test_one_chunk_at_a_time_equals_batched_chunks(synthesizer, reference):
    """The CPU default (max_batch_chunks=1) and the batched GPU default give the same audio."""
    requests = [_request(reference, t, seed=i) for i, t in enumerate([LONG_TEXT, SHORT_TEXT, "Another one."])]
    batched = synthesizer.synthesize(requests)
    synthesizer.max_batch_chunks = 1
    try:
        one_by_one = synthesizer.synthesize(requests)
    finally:
        synthesizer.max_batch_chunks = 16
    for got, want in zip(one_by_one, batched):
        assert got.chunk_count == want.chunk_count
        assert_same_audio(got.waveform, want.waveform)


@pytest.mark.parametrize("speed", [0.5, 1.0, 2.0])
def test_output_length_follows_speed(synthesizer, reference, speed, tmp_path):
    got = synthesizer.synthesize([_request(reference, SHORT_TEXT, seed=1, speed=speed)])[0].waveform
    assert got.size == f5tts_samples(reference, SHORT_TEXT, tmp_path, speed=speed)


def test_output_length_follows_duration(synthesizer, reference, tmp_path):
    got = synthesizer.synthesize([_request(reference, SHORT_TEXT, seed=1, duration=9.0)])[0].waveform  # total seconds
    assert got.size == f5tts_samples(reference, SHORT_TEXT, tmp_path, duration=9.0)


def _request(ref: Reference, text: str, **options):
    return synthesis_request(ref, text, nfe_step=NFE, **options)


def _stereo_16k(ref: Reference) -> Reference:
    import torchaudio

    mono = torch.from_numpy(ref.audio)
    at16k = torchaudio.functional.resample(mono, ref.sample_rate, 16_000)
    stereo = torch.cat([at16k, 0.5 * at16k], dim=0).numpy()
    return as_pcm16(Reference(np.ascontiguousarray(stereo), 16_000, ref.text))


def _long_reference(ref: Reference, zh_path) -> Reference:
    """Over 12 s of real speech with pauses: f5-tts clips it at a pause."""
    zh, sr = sf.read(str(zh_path), dtype="float32")
    pause = np.zeros(int(1.5 * sr), np.float32)
    audio = np.concatenate([ref.audio[0], pause, zh, pause, ref.audio[0]])[None]
    return Reference(audio, sr, ref.text)


@pytest.mark.parametrize("kind", ["shipped", "stereo_16k", "over_12s"])
def test_reference_preprocessing_matches_f5tts(reference, tmp_path, kind):
    from importlib.resources import files

    from pipeline.reference import f5_preprocess_audio

    ref = {
        "shipped": lambda: reference,
        "stereo_16k": lambda: _stereo_16k(reference),
        "over_12s": lambda: _long_reference(
            reference, files("f5_tts").joinpath("infer/examples/basic/basic_ref_zh.wav")
        ),
    }[kind]()
    want, want_rate, _ = f5tts_preprocessed(ref, tmp_path)
    got, rate, clipped = f5_preprocess_audio(ref.audio, ref.sample_rate)
    assert clipped == (kind == "over_12s")
    assert rate == want_rate
    np.testing.assert_array_equal(got, want)
    if kind == "over_12s":
        assert 6 < got.shape[-1] / rate <= 12.1


@pytest.mark.parametrize("text", [SHORT_TEXT, LONG_TEXT], ids=["one_chunk", "multi_chunk"])
def test_pipeline_matches_f5tts(synthesizer, f5tts_infer, reference, text):
    want, chunks = f5tts_infer(reference, text)
    assert chunks == (1 if text == SHORT_TEXT else 3)
    got = synthesizer.synthesize([_request(reference, text, seed=SEED)])[0]
    assert got.chunk_count == chunks
    assert_same_audio(got.waveform, want)


def test_pipeline_matches_f5tts_for_stereo_16k_reference(synthesizer, f5tts_infer, reference):
    ref = _stereo_16k(reference)
    want, _ = f5tts_infer(ref, SHORT_TEXT)
    got = synthesizer.synthesize([_request(ref, SHORT_TEXT, seed=SEED)])[0].waveform
    assert_same_audio(got, want)


def test_served_chinese_and_mixed_text_match_f5tts(server, f5tts_infer):
    """Chinese goes through f5-tts's pinyin conversion and is chunked on Chinese punctuation."""
    from importlib.resources import files

    import soundfile as sf

    audio, sr = sf.read(
        str(files("f5_tts").joinpath("infer/examples/basic/basic_ref_zh.wav")), dtype="float32", always_2d=True
    )
    ref = Reference(np.ascontiguousarray(audio.T), sr, "对，这就是我，万人敬仰的太乙真人。")
    text = (
        "突然，身边一阵笑声。我看着他们，意气风发地挺直了胸膛，甩了甩那稍显肉感的双臂，轻笑道：我身上的肉，"
        "是为了掩饰我爆棚的魅力，否则，岂不吓坏了你们呢？Triton serves F5-TTS 很快。"
    )
    want, chunks = f5tts_infer(ref, text)
    assert chunks >= 2
    got = speak(server, ref, text, seed=SEED, nfe_step=NFE)
    assert_same_audio(got, want)


@pytest.mark.parametrize("text", [SHORT_TEXT, LONG_TEXT], ids=["one_chunk", "multi_chunk"])
def test_served_audio_matches_f5tts(server, f5tts_infer, reference, text):
    want, _ = f5tts_infer(reference, text)
    got = speak(server, reference, text, seed=SEED, nfe_step=NFE)
    assert_same_audio(got, want)


@pytest.mark.parametrize("speed,duration", [(1.7, None), (1.0, 9.0)])
def test_served_speed_and_duration_match_f5tts(server, f5tts_infer, reference, speed, duration):
    want, _ = f5tts_infer(reference, LONG_TEXT, speed=speed, duration=duration)
    options = {"speed": speed} | ({"duration": duration} if duration else {})
    got = speak(server, reference, LONG_TEXT, seed=SEED, nfe_step=NFE, **options)
    assert_same_audio(got, want)


def test_a_repeated_reference_is_not_preprocessed_again(synthesizer, reference, monkeypatch):
    """Preprocessed references are cached by content (LRU): same audio, same text => no recompute."""
    import pipeline.synthesizer as synthesizer_module

    calls = []
    real = synthesizer_module.prepare_reference
    monkeypatch.setattr(synthesizer_module, "prepare_reference", lambda *a: calls.append(1) or real(*a))
    synthesizer._references.clear()
    first = synthesizer.synthesize([_request(reference, SHORT_TEXT, seed=3)])[0].waveform
    second = synthesizer.synthesize(
        [_request(reference, "Another text.", seed=3), _request(reference, SHORT_TEXT, seed=3)]
    )
    assert len(calls) == 1  # the second and third requests reused the first one's preprocessing
    assert_same_audio(second[1].waveform, first)
    other = Reference(reference.audio[:, ::-1].copy(), reference.sample_rate, reference.text)
    synthesizer.synthesize([_request(other, SHORT_TEXT, seed=3)])
    assert len(calls) == 2  # different audio: preprocessed
    size, synthesizer.reference_cache_size = synthesizer.reference_cache_size, 1
    try:
        synthesizer._references.clear()
        for ref in (other, reference, other):  # a cache of one: each switch evicts the other
            synthesizer.synthesize([_request(ref, SHORT_TEXT, seed=3)])
        assert len(calls) == 5 and len(synthesizer._references) == 1
    finally:
        synthesizer.reference_cache_size = size
