"""A request whose client gives up stops costing the server: f5_tts asks Triton whether each request
of its batch was cancelled between ODE steps, between sub-batches and before the vocoder; a cancelled
request's rows leave the batch (its neighbours go on from where they are), a batch whose requests are
all cancelled stops at once, and the cancelled request is answered CANCELLED.

Unit tests count the DiT's forward calls (one per ODE step of a batch) and the vocoder's mels, so
the work that was skipped is counted, not timed. The end-to-end test abandons a long request with
the client CLI's --timeout (gRPC: Triton marks the request cancelled when its deadline passes) and
reads Triton's own statistics and the model's log and metric.
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import LONG_TEXT, SHORT_TEXT, assert_same_audio, metric_value, speak, wait_for
from test_parity import NFE, _request  # f5_tts requests at the parity tests' NFE

import contract
from pipeline.requests import Cancelled
from pipeline.synthesizer import Synthesizer
from pipeline.vocoder import OnnxVocoder


@pytest.fixture(scope="module")
def synthesizer(tiny_repo):
    onnx = OnnxVocoder(tiny_repo / contract.VOCODER_MODEL / contract.MODEL_VERSION / contract.VOCODER_ONNX_FILE)
    synth = Synthesizer.from_directory(
        tiny_repo / contract.TTS_MODEL / contract.MODEL_VERSION, onnx, max_batch_chunks=16
    )
    synth.cancel_poll_seconds = 0.0  # ask at every step: the tests count steps, not seconds
    return synth


class Counted:
    """Counts the DiT's forward calls (one per ODE step of a batch: CFG runs inside one call) and the mels vocoded."""

    def __init__(self, synth: Synthesizer, monkeypatch) -> None:
        self.dit_calls, self.mels_vocoded = 0, 0
        hook = synth.cfm.transformer.register_forward_hook(lambda *_: self._called())
        self._remove = hook.remove
        vocode = synth.vocode

        def counting(mels):
            self.mels_vocoded += len(mels)
            return vocode(mels)

        monkeypatch.setattr(synth, "vocode", counting)

    def _called(self) -> None:
        self.dit_calls += 1

    def close(self) -> None:
        self._remove()


@pytest.fixture
def counted(synthesizer, monkeypatch):
    c = Counted(synthesizer, monkeypatch)
    yield c
    c.close()


def _stopped_after(result) -> tuple[int, int]:
    assert isinstance(result, Cancelled), result
    found = re.search(r"stopped after (\d+) of (\d+) ODE steps", str(result))
    assert found, str(result)
    return int(found.group(1)), int(found.group(2))


def test_cancelled_request_leaves_the_batch_between_ode_steps(synthesizer, counted, reference):
    """The long request is cancelled after 3 steps: its rows leave, the short one finishes alone with the
    audio it gets without a neighbour, the DiT runs NFE times in all (not more) and only the short one is vocoded."""
    short = _request(reference, SHORT_TEXT, seed=2)
    [alone] = synthesizer.synthesize([short])
    counted.dit_calls = counted.mels_vocoded = 0

    long = _request(reference, LONG_TEXT, seed=1)
    results = synthesizer.synthesize([long, short], is_cancelled=lambda i: i == 0 and counted.dit_calls >= 3)
    done, total = _stopped_after(results[0])
    chunks = len(synthesizer._plan(0, long)[0])
    assert chunks > 1
    assert (done, total) == (3 * chunks, NFE * chunks)
    assert counted.dit_calls == NFE  # 3 steps together, then 5 for the short request alone
    assert counted.mels_vocoded == 1
    assert results[1].chunk_count == 1
    assert_same_audio(results[1].waveform, alone.waveform)
    assert synthesizer.cancelled_requests >= 1


def test_a_batch_whose_requests_are_all_cancelled_stops_at_once(synthesizer, counted, reference):
    requests = [_request(reference, LONG_TEXT, seed=1), _request(reference, SHORT_TEXT, seed=2)]
    results = synthesizer.synthesize(requests, is_cancelled=lambda i: True)
    assert [_stopped_after(r)[0] for r in results] == [0, 0]
    assert counted.dit_calls == 0 and counted.mels_vocoded == 0


def test_cancellation_is_seen_between_sub_batches(synthesizer, counted, reference, monkeypatch):
    """One chunk per solve (the CPU default): a request cancelled during its first chunk runs no further chunk."""
    monkeypatch.setattr(synthesizer, "max_batch_chunks", 1)
    long = _request(reference, LONG_TEXT, seed=1)
    chunks = len(synthesizer._plan(0, long)[0])
    # cancelled at the first chunk's last step, after which the solve asks no more: the next sub-batch asks
    [result] = synthesizer.synthesize([long], is_cancelled=lambda i: counted.dit_calls >= NFE)
    assert _stopped_after(result) == (NFE, NFE * chunks)
    assert counted.dit_calls == NFE and counted.mels_vocoded == 0


def test_uncancelled_requests_are_unchanged_by_the_checks(synthesizer, reference):
    """Asking between steps (one Euler step per odeint call) gives the same audio as not asking."""
    requests = [_request(reference, LONG_TEXT, seed=1), _request(reference, SHORT_TEXT, seed=2)]
    plain = synthesizer.synthesize(requests)
    asked = synthesizer.synthesize(requests, is_cancelled=lambda i: False)
    for got, want in zip(asked, plain):
        np.testing.assert_array_equal(got.waveform, want.waveform)


# --- end to end: the client CLI gives up, the server stops -------------------------------------------


def _f5_stats(server) -> dict:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    try:
        return client.get_inference_statistics(contract.TTS_MODEL)["model_stats"][0]["inference_stats"]
    finally:
        client.close()


def _stats_once_recorded(server, since: dict, answered: int) -> dict:
    """f5_tts's statistics once they hold `answered` more answered requests than `since`: the Python
    backend records a request just after answering it, so a read right after an answer can miss it."""

    def recorded():
        now = _f5_stats(server)
        return now if _delta(now, since, "success")[0] >= answered else None

    return wait_for(recorded, f"f5_tts's statistics to record {answered} more request(s)", every=0.1)


def _delta(after: dict, before: dict, stat: str) -> tuple[int, float]:
    """(requests, seconds) that Triton added to one of its statistics between two reads."""
    return (
        int(after[stat]["count"]) - int(before[stat]["count"]),
        (int(after[stat]["ns"]) - int(before[stat]["ns"])) / 1e9,
    )


def test_abandoned_request_stops_and_the_next_one_does_not_wait(server, reference, tmp_path):
    """`python -m client --timeout 2` on a long text: Triton cancels the request when the client's deadline
    passes, f5_tts stops it at its next ODE step (its log line and f5_tts_cancelled_total say so), and a
    short request sent right after the client gave up waits in Triton's queue for a step of it at most,
    not for the work the abandoned request had left. Both durations come from Triton's statistics (its
    queue time per request, its compute time per batch) and the model's log, not from a clock here."""
    import soundfile as sf

    def short():
        speak(server, reference, SHORT_TEXT, nfe_step=NFE, seed=1)

    start = _f5_stats(server)
    short()  # warm
    before = _stats_once_recorded(server, start, 1)
    short()
    lone = _stats_once_recorded(server, before, 1)
    assert _delta(lone, before, "success")[0] == 1
    lone_compute = _delta(lone, before, "compute_infer")[1]

    ref_wav = tmp_path / "ref.wav"
    sf.write(ref_wav, reference.audio[0], reference.sample_rate)
    text = tmp_path / "long.txt"
    text.write_text(" ".join([LONG_TEXT] * 4))
    cancelled_before = metric_value(server, contract.CANCELLED_METRIC)
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "client",
            "--url",
            server.grpc_url,
            "--text-file",
            str(text),
            "--reference-audio",
            str(ref_wav),
            "--reference-text",
            reference.text,
            "--nfe-step",
            "64",
            "--seed",
            "1",
            "--timeout",
            "2",
            "--output",
            str(tmp_path / "never.wav"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 1 and "abandoned" in cli.stderr, cli.stderr
    assert not (tmp_path / "never.wav").exists()
    short()  # right behind the abandoned request

    wait_for(
        lambda: metric_value(server, contract.CANCELLED_METRIC) > cancelled_before,
        f"{contract.CANCELLED_METRIC} to count the abandoned request",
    )
    after = _stats_once_recorded(server, lone, 2)
    # The Python backend reports every answered request as a success, the CANCELLED one included.
    assert _delta(after, lone, "success")[0] == 2
    stopped = re.findall(r"stopped after (\d+) of (\d+) ODE steps of its (\d+) chunk", server.log_text())
    assert stopped, "f5_tts did not log the cancelled request"
    done, total, chunks = map(int, stopped[-1])
    assert done < total
    # The abandoned request's batch ran done/chunks ODE steps in its compute time; run to its end, it
    # would have held the short request for its remaining steps.
    long_compute = _delta(after, lone, "compute_infer")[1] - lone_compute
    per_step = long_compute / max(done // chunks, 1)
    remaining = per_step * (total - done) / chunks
    waited = _delta(after, lone, "queue")[1]  # the short request's wait (the abandoned one found the model idle)
    assert remaining > 8 * per_step, f"too little work left to prove anything ({remaining:.2f} s)"
    assert waited < remaining / 4, (
        f"the short request waited {waited:.2f} s behind the abandoned one, whose remaining {total - done} ODE "
        f"steps ({remaining:.1f} s) were skipped; one step takes {per_step:.2f} s"
    )


def test_a_runpod_job_stopped_by_the_platform_cancels_its_triton_request(server, reference):
    """RunPod stops a job (cancelled, or past its execution timeout) by cancelling the handler's task: the
    handler's gRPC call is cancelled with it, and f5_tts stops the request (its log line and metric)."""
    import asyncio
    import base64
    import io

    import soundfile as sf

    from runpod_worker.handler import Handler

    buf = io.BytesIO()
    sf.write(buf, reference.audio[0], reference.sample_rate, format="WAV", subtype="PCM_16")
    job = {
        "id": "stopped",
        "input": {
            "text": " ".join([LONG_TEXT] * 4),
            "reference_text": reference.text,
            "nfe_step": 64,
            "seed": 1,
            "reference_audio": base64.b64encode(buf.getvalue()).decode(),
        },
    }
    stopped_before = server.log_text().count("cancelled by its client")
    cancelled_before = metric_value(server, contract.CANCELLED_METRIC)

    async def platform_stops_the_job():
        handler = Handler(server.grpc_url)
        task = asyncio.create_task(handler(job))
        # The SDK's stop signal: task.cancel(), here once the job has run a while (as a timeout would).
        done, _ = await asyncio.wait([task], timeout=2)
        assert not done, f"the job finished before it could be stopped: {task.result()}"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for client in handler._clients.values():  # Triton waits for open connections when it stops
            await client.close()

    asyncio.run(platform_stops_the_job())
    wait_for(
        lambda: metric_value(server, contract.CANCELLED_METRIC) > cancelled_before,
        f"{contract.CANCELLED_METRIC} to count the stopped job",
    )
    stopped = re.findall(r"cancelled by its client: stopped after (\d+) of (\d+) ODE steps", server.log_text())
    assert len(stopped) > stopped_before
    done, total = map(int, stopped[-1])
    assert done < total
