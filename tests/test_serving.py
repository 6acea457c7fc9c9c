"""The served f5_tts model: batching, determinism, error isolation, its log. (The output length rules
are checked in-process in test_parity, and the served audio's length against f5-tts's there too.)"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHORT_TEXT, Reference, assert_same_audio, calls_shared_a_batch, speak, speak_concurrently, wait_for

import contract
from client import SynthesisError

OTHER_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Triton batches requests.",
    "A third sentence, longer than the others, to vary the duration.",
]


def test_request_gives_the_same_audio_alone_and_inside_a_batch(server, reference):
    alone = speak(server, reference, SHORT_TEXT, seed=42)
    jobs = [dict(reference=reference, text=SHORT_TEXT, seed=42)]
    jobs += [dict(reference=reference, text=t, seed=i) for i, t in enumerate(OTHER_TEXTS)]
    results, batched = speak_concurrently(server, jobs)
    assert calls_shared_a_batch(batched), f"no dynamic batch of the jobs (batch size: executions): {batched}"
    for r in results:
        assert not isinstance(r, Exception), r
    assert_same_audio(results[0], alone)
    assert all(r.shape != alone.shape for r in results[1:])  # the neighbours really were different requests


def test_same_seed_same_audio_and_different_seed_different_audio(server, reference):
    a = speak(server, reference, seed=7)
    b = speak(server, reference, seed=7)
    c = speak(server, reference, seed=8)
    np.testing.assert_array_equal(a, b)
    assert a.shape == c.shape and not np.allclose(a, c)


def test_a_bad_request_fails_alone_inside_a_batch(server, reference):
    jobs = [dict(reference=reference, text=t, seed=3) for t in (SHORT_TEXT, "   ", OTHER_TEXTS[0], OTHER_TEXTS[1])]
    results, batched = speak_concurrently(server, jobs)
    assert calls_shared_a_batch(batched), f"the requests were not batched (batch size: executions): {batched}"
    bad = results[1]
    assert isinstance(bad, SynthesisError) and bad.status == "StatusCode.INVALID_ARGUMENT"
    assert "target_text" in str(bad) and "empty" in str(bad)
    for good in (results[0], results[2], results[3]):
        assert isinstance(good, np.ndarray) and good.size > 0 and np.isfinite(good).all()


def test_invalid_argument_over_http_names_the_input(server, reference):
    with pytest.raises(SynthesisError, match="'nfe_step' is 500; allowed range is \\[1, 128\\]"):
        speak(server, reference, protocol="http", nfe_step=500)
    with pytest.raises(SynthesisError, match="'duration' is 2.0 s but must exceed the reference length"):
        speak(server, reference, duration=2.0)


def test_a_clipped_reference_is_logged_in_the_server_log(server, reference):
    """The pipeline logs through stdlib logging; the model routes it to Triton's log."""
    line = "clipped to"
    seen = server.log_text().count(line)
    long = Reference(np.tile(reference.audio, (1, 5)), reference.sample_rate, reference.text)  # 26.7 s
    assert 25 < long.audio.shape[1] / long.sample_rate < contract.LIMITS.max_reference_seconds
    speak(server, long, SHORT_TEXT, nfe_step=2)
    # the stub's log records reach the server's log asynchronously
    wait_for(lambda: server.log_text().count(line) > seen, "the clip's line in the server log", timeout=30)
    clipped = [ln for ln in server.log_text().split("\n") if line in ln]
    assert len(clipped) == seen + 1, "the clip was logged more than once"
    assert "pipeline.synthesizer: request 0: reference of 26.7 s clipped to" in clipped[-1]
