"""Streaming: the joined stream equals the whole-text answer; gRPC, HTTP SSE, curl, CLI, cancellation."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import (
    LONG_TEXT,
    SHORT_TEXT,
    VOICE,
    Reference,
    assert_same_audio,
    behind_a_long_request,
    calls_shared_a_batch,
    metric_value,
    model_stats,
    run_sh,
    wait_for,
)

import contract
from client import SynthesisError, SynthesisOptions, stream_synthesize, synthesize
from client.audio import pcm16
from pipeline.requests import parse_request
from pipeline.streaming import ChunkAnswer, StreamJoiner, cross_fade, stream_chunks
from pipeline.synthesizer import Synthesizer, split_text
from pipeline.vocoder import OnnxVocoder

ROOT = Path(__file__).resolve().parent.parent
NFE = 4
# A stream that is cancelled: chunks slow enough that the cancellation (client -> Triton -> stub, checked
# between chunks) arrives within two of them even on a loaded machine.
CANCELLED_NFE = 32
FIRST = contract.STREAM_FIRST_CHUNK_CHARS
# Many chunks: a stream that is cancelled early leaves most of them unsynthesized.
VERY_LONG_TEXT = " ".join([LONG_TEXT] * 3)


# --- joining and chunking, without a server ----------------------------------------------
@pytest.mark.parametrize("lengths", [[5000], [5000, 8000], [9000, 100, 7000, 3600, 50], [10, 20], [3601, 3599, 4000]])
def test_stream_joiner_equals_cross_fade(lengths):
    rng = np.random.default_rng(len(lengths))
    waves = [rng.standard_normal(n).astype(np.float32) for n in lengths]
    joiner = StreamJoiner()
    pieces = [joiner.push(w) for w in waves] + [joiner.finish()]
    np.testing.assert_array_equal(np.concatenate(pieces), cross_fade(waves))


def test_split_text_shortens_only_the_first_chunk():
    from f5_tts.infer.utils_infer import chunk_text

    f5 = chunk_text(LONG_TEXT, max_chars=200)
    ours = split_text(LONG_TEXT, 200, first_chunk_chars=FIRST)
    assert len(ours[0].encode()) <= FIRST < len(f5[0].encode())
    assert f"{ours[0]} {ours[1]}" == f5[0] and ours[2:] == f5[1:]
    assert split_text(LONG_TEXT, 200) == f5  # 0: f5-tts's chunking unchanged
    assert split_text(SHORT_TEXT, 200, first_chunk_chars=FIRST) == [SHORT_TEXT]  # short enough already
    chinese = "突然，身边一阵笑声。我看着他们，意气风发地挺直了胸膛，甩了甩那稍显肉感的双臂，轻笑道：我身上的肉。"
    first, rest = split_text(chinese, 400, first_chunk_chars=FIRST)
    assert first + rest == chinese and len(first.encode()) <= FIRST  # CJK: bytes, no space between


@pytest.mark.parametrize(
    "text",
    [
        "Hi. Then a long sentence without a single punctuation mark until its very end goes here.",  # tiny head
        "A first clause that is long enough to fill the budget alone, ok now.",  # tiny tail
    ],
)
def test_split_text_never_leaves_a_chunk_that_f5_tts_would_speak_slowly(text):
    """f5-tts speaks chunks under 10 bytes at speed 0.3: the first chunk is not split into one."""
    from pipeline.synthesizer import SLOW_CHUNK_BYTES

    chunks = split_text(text, 200, first_chunk_chars=FIRST)
    assert all(len(c.encode()) >= SLOW_CHUNK_BYTES for c in chunks), chunks
    assert " ".join(chunks) == text


def test_stream_chunks_stops_when_cancelled():
    asked, sent = [], []

    def infer(k):
        asked.append(k)
        return ChunkAnswer(np.ones(10_000, np.float32), 5, 0)

    done = stream_chunks(infer, lambda samples, final, cues: sent.append(final), cancelled=lambda: len(asked) >= 2)
    assert done == (2, 5) and asked == [0, 1] and sent == [False, False]


@pytest.fixture(scope="module")
def synthesizer(tiny_repo):
    vocoder = OnnxVocoder(tiny_repo / contract.VOCODER_MODEL / contract.MODEL_VERSION / contract.VOCODER_ONNX_FILE)
    return Synthesizer.from_directory(tiny_repo / contract.TTS_MODEL / "1", vocoder)


def _request(text: str, **inputs):
    tensors = {
        contract.VOICE: np.array([[VOICE.encode()]], dtype=object),
        contract.TARGET_TEXT: np.array([[text.encode()]], dtype=object),
        contract.NFE_STEP: np.array([[NFE]]),
        contract.SEED: np.array([[11]]),
    }
    tensors.update({k: np.array([[v]]) for k, v in inputs.items()})
    return parse_request(tensors, voices=[VOICE])


def test_chunk_requests_joined_equal_the_whole_request(synthesizer):
    """What the stream model does, in-process: chunk k alone gets the noise it gets in the whole request."""
    whole = synthesizer.synthesize([_request(LONG_TEXT, first_chunk_chars=FIRST)])[0]
    assert whole.chunk_count >= 3
    joiner = StreamJoiner()
    pieces = []
    for k in range(whole.chunk_count):
        chunk = synthesizer.synthesize([_request(LONG_TEXT, first_chunk_chars=FIRST, chunk_index=k)])[0]
        assert chunk.chunk_count == whole.chunk_count
        pieces.append(joiner.push(chunk.waveform))
    assert_same_audio(np.concatenate([*pieces, joiner.finish()]), whole.waveform, rel=1e-6)
    out_of_range = synthesizer.synthesize([_request(LONG_TEXT, chunk_index=99)])[0]
    assert "'chunk_index' is 99" in str(out_of_range) and "are allowed" in str(out_of_range)


# --- through the server ------------------------------------------------------------------
def _stream(server, text, protocol="grpc", reference=None, **options):
    options.setdefault("nfe_step", NFE)
    url = server.grpc_url if protocol == "grpc" else server.http_url
    speaker = (reference.audio, reference.sample_rate, reference.text) if reference else ()
    return list(
        stream_synthesize(
            text,
            *speaker,
            voice=None if reference else VOICE,
            url=url,
            protocol=protocol,
            options=SynthesisOptions(**options),
            timeout=120,
        )
    )


def _whole(server, text, reference=None, **options):
    options.setdefault("nfe_step", NFE)
    speaker = (reference.audio, reference.sample_rate, reference.text) if reference else ()
    wave, _ = synthesize(
        text,
        *speaker,
        voice=None if reference else VOICE,
        url=server.grpc_url,
        options=SynthesisOptions(**options),
        timeout=120,
    )
    return wave


def test_grpc_stream_equals_the_non_streaming_answer(server, reference):
    pieces = _stream(server, LONG_TEXT, reference=reference, seed=5)
    assert len(pieces) >= 3  # one per text chunk
    assert len(pieces[0]) < sum(map(len, pieces)) / 3  # the first chunk is the short one
    want = _whole(server, LONG_TEXT, reference=reference, seed=5, first_chunk_chars=FIRST)
    assert_same_audio(np.concatenate(pieces), want)
    # with f5-tts's own chunking for both, the stream equals the default whole-text answer
    same_chunking = _stream(server, LONG_TEXT, reference=reference, seed=5, first_chunk_chars=0)
    assert_same_audio(np.concatenate(same_chunking), _whole(server, LONG_TEXT, reference=reference, seed=5))


def test_curl_generate_stream_from_the_readme(server):
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    body = json.dumps({"voice": VOICE, "target_text": LONG_TEXT, "nfe_step": NFE, "seed": 6})
    out = subprocess.run(
        [
            curl,
            "-sS",
            "-N",
            "-X",
            "POST",
            f"http://{server.http_url}/v2/models/{contract.STREAM_MODEL}/generate_stream",
            "-d",
            body,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    events = [json.loads(line[len("data:") :]) for line in out.splitlines() if line.startswith("data:")]
    assert len(events) >= 3 and all(e[contract.SAMPLE_RATE_OUT] == contract.SAMPLE_RATE for e in events)
    streamed = np.concatenate([np.asarray(e[contract.WAVEFORM], np.float32) for e in events])
    assert_same_audio(streamed, np.concatenate(_stream(server, LONG_TEXT, seed=6)), rel=1e-6)


def _stats(server) -> tuple[int, int]:
    stats = model_stats(server)
    return stats.requests, stats.executions


def _stop_after_first_piece_grpc(server):
    stream = stream_synthesize(
        VERY_LONG_TEXT, voice=VOICE, url=server.grpc_url, options=SynthesisOptions(nfe_step=CANCELLED_NFE), timeout=120
    )
    assert len(next(stream)) > 0
    stream.close()  # the consumer is gone: the client cancels the request on the server


def _stop_after_first_piece_http(server):
    """A client that drops the connection after the first server-sent event (like a killed curl)."""
    import socket

    body = json.dumps({"voice": VOICE, "target_text": VERY_LONG_TEXT, "nfe_step": CANCELLED_NFE}).encode()
    host, port = server.http_url.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=120) as sock:
        sock.sendall(
            f"POST /v2/models/{contract.STREAM_MODEL}/generate_stream HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        received = b""
        while b"data:" not in received:
            received += sock.recv(65536)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_client_that_goes_away_cancels_the_remaining_chunks(server, synthesizer, protocol):
    """Triton 2.51's statistics cannot tell when a decoupled Python model ends a request (it counts the
    request once execute() returns; no response statistics), so the signal that the stream ended is the
    stream model's own report in the server log; the counts come from Triton's statistics of f5_tts and
    from the text's chunk plan."""
    total = synthesizer.synthesize([_request(VERY_LONG_TEXT, first_chunk_chars=FIRST, chunk_index=0)])[0].chunk_count
    reported = "stopped after"
    seen = server.log_text().count(reported)
    before, _ = _stats(server)
    (_stop_after_first_piece_grpc if protocol == "grpc" else _stop_after_first_piece_http)(server)
    wait_for(lambda: server.log_text().count(reported) > seen, "the stream model to report the cancellation")
    done = _stats(server)[0] - before
    assert total >= 6 and done <= 3 < total, f"{done} of {total} chunks synthesized after cancelling"


def test_a_stream_cut_short_by_a_shutdown_ends_with_an_error_not_silence(tiny_repo, start_server):
    srv = start_server(tiny_repo)
    pieces = stream_synthesize(
        VERY_LONG_TEXT, voice=VOICE, url=srv.grpc_url, options=SynthesisOptions(nfe_step=32), timeout=120
    )
    next(pieces)
    os.kill(srv.pid, signal.SIGTERM)
    with pytest.raises(SynthesisError, match="Server not ready"):
        for _ in pieces:
            pass


def test_concurrent_streams_share_f5_tts_batches_and_keep_their_audio(server):
    solo = [np.concatenate(_stream(server, LONG_TEXT, seed=s)) for s in (1, 2, 3)]
    # each piece is one chunk, synthesized by one f5_tts request
    together, batched = behind_a_long_request(
        server, [lambda s=s: _stream(server, LONG_TEXT, seed=s) for s in (1, 2, 3)], requests=len
    )
    assert calls_shared_a_batch(batched), f"chunks of concurrent streams were never batched together: {batched}"
    for got, want in zip(together, solo):
        assert_same_audio(np.concatenate(got), want)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_bad_stream_request_gets_the_servers_message(server, protocol):
    url = server.grpc_url if protocol == "grpc" else server.http_url
    with pytest.raises(SynthesisError, match="unknown voice 'nobody'; known voices: nature"):
        list(stream_synthesize(SHORT_TEXT, voice="nobody", url=url, protocol=protocol, timeout=60))
    with pytest.raises(SynthesisError, match="'first_chunk_chars' is -1"):
        list(
            stream_synthesize(
                SHORT_TEXT,
                voice=VOICE,
                url=url,
                protocol=protocol,
                timeout=60,
                options=SynthesisOptions(first_chunk_chars=-1),
            )
        )
    assert len(_stream(server, SHORT_TEXT, protocol=protocol)) == 1  # the model serves on


def test_a_refused_stream_says_why_over_grpc_and_is_http_400(server):
    with pytest.raises(SynthesisError, match="input 'target_text' is empty"):
        list(stream_synthesize("  ", voice=VOICE, url=server.grpc_url, timeout=60))
    with pytest.raises(SynthesisError, match="input 'target_text' is empty") as err:
        list(stream_synthesize("  ", voice=VOICE, url=server.http_url, protocol="http", timeout=60))
    assert err.value.status == "400"


def run_client(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "client", *map(str, args)], capture_output=True, timeout=300, cwd=ROOT, **kwargs
    )


def test_cli_streams_a_progressive_wav_and_raw_pcm_to_stdout(server, tmp_path):
    out = tmp_path / "streamed.wav"
    common = [
        "--url",
        server.grpc_url,
        "--voice",
        VOICE,
        "--text",
        LONG_TEXT,
        "--nfe-step",
        NFE,
        "--seed",
        6,
        "--stream",
    ]
    r = run_client(*common, "--output", out, text=True)
    assert r.returncode == 0, r.stderr
    assert "first audio after" in r.stdout
    want = np.concatenate(_stream(server, LONG_TEXT, seed=6))
    audio, rate = sf.read(str(out), dtype="float32")
    assert rate == contract.SAMPLE_RATE and len(audio) == len(want)
    assert np.max(np.abs(audio - want)) <= 2 / 32768  # 16-bit WAV
    raw = run_client(*common, "--output", "-")
    assert raw.returncode == 0, raw.stderr.decode()
    assert raw.stdout == pcm16(want)  # stdout holds the audio only; messages went to stderr
    assert b"wrote stdout" in raw.stderr


def test_progressive_wav_is_a_valid_wav_after_every_piece(tmp_path):
    import wave

    from client.audio import ProgressiveWav

    path = tmp_path / "growing.wav"
    out = ProgressiveWav(path, contract.SAMPLE_RATE)
    try:
        for n, piece in enumerate([np.full(24_000, 0.25, np.float32), np.zeros(100, np.float32)]):
            out.write(piece)
            with wave.open(str(path)) as reader:  # read while the writer still has it open
                assert reader.getnframes() == [24_000, 24_100][n]
    finally:
        out.close()
    audio, rate = sf.read(str(path), dtype="float32")
    assert rate == contract.SAMPLE_RATE and len(audio) == 24_100 and abs(audio[0] - 0.25) < 1e-4


def test_cli_stream_failure_leaves_no_file(server, tmp_path):
    out = tmp_path / "never.wav"
    r = run_client(
        "--url", server.grpc_url, "--voice", "nobody", "--text", SHORT_TEXT, "--stream", "--output", out, text=True
    )
    assert r.returncode == 1 and "unknown voice 'nobody'" in r.stderr
    assert not out.exists()


@pytest.mark.slow  # a benchmark run (the bench CLI against the session's server)
def test_bench_reports_time_to_first_audio_next_to_total_latency(server, tmp_path):
    r = run_client(
        "bench",
        "--url",
        server.grpc_url,
        "--streaming",
        "--concurrency",
        "1",
        "--requests",
        2,
        "--warmup",
        1,
        "--nfe-step",
        2,
        "--output-dir",
        tmp_path,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    level = json.loads((tmp_path / "streaming.json").read_text())["levels"][0]
    assert level["streaming_first_audio_s"]["p50"] <= level["streaming_total_s"]["p50"]
    assert set(level["non_streaming_total_s"]) == {"p50", "p95"} and level["audio_seconds"] > 10
    assert "first/whole" in r.stdout


def _stream_times(server, reference, text, runs=3, **options) -> tuple[float, float]:
    """Median seconds to the first piece and to the end of the stream, measured by our client."""
    firsts, totals = [], []
    for _ in range(runs):
        started = time.perf_counter()
        pieces = stream_synthesize(
            text,
            reference.audio,
            reference.sample_rate,
            reference.text,
            url=server.grpc_url,
            options=SynthesisOptions(**options),
            timeout=120,
        )
        first = None
        for _piece in pieces:
            first = first if first is not None else time.perf_counter() - started
        totals.append(time.perf_counter() - started)
        firsts.append(first)
    return float(np.median(firsts)), float(np.median(totals))


@pytest.mark.slow  # a perf_analyzer measurement run
def test_perf_analyzer_streaming_latency_is_the_whole_stream_and_run_sh_adds_time_to_first_audio(
    server, reference, tmp_path
):
    """perf_analyzer 2.51 says "using the first response for measuring latency" for a decoupled model,
    but its latency runs to the last response; run.sh reads the first from its profile export."""
    import math
    import re

    data = tmp_path / "long.json"
    ref_wav = tmp_path / "ref.wav"
    sf.write(str(ref_wav), reference.audio.T, reference.sample_rate)
    gen = subprocess.run(
        [
            sys.executable,
            "perf_analyzer_configs/generate_input_data.py",
            "--reference-audio",
            str(ref_wav),
            "--reference-text",
            reference.text,
            "--text",
            LONG_TEXT,
            "--nfe-step",
            "8",
            "--output",
            str(data),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert gen.returncode == 0, gen.stderr
    first, whole = _stream_times(server, reference, LONG_TEXT, nfe_step=8, seed=0)
    assert whole > 2.5 * first, f"not a multi-chunk stream: first {first:.2f} s, whole {whole:.2f} s"

    csv = tmp_path / "stream.csv"
    env = dict(
        REQUEST_COUNT="3", OUT=str(csv), MODEL=contract.STREAM_MODEL, INPUT_DATA=str(data), PYTHON=sys.executable
    )
    proc = run_sh("grpc", server.grpc_url, "1", **env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "error" not in out.lower(), out
    assert re.findall(r"Request count: (\d+)", out) == ["3"]
    pa_p50 = int(re.search(r"p50 latency: (\d+) usec", out).group(1)) / 1e6
    rows = (tmp_path / "stream_first_audio.csv").read_text().splitlines()
    header, row = rows[0].split(","), dict(zip(rows[0].split(","), rows[1].split(",")))
    assert (
        header[:2] == ["concurrency", "requests"] and row["requests"] == "3" and float(row["pieces_per_request"]) >= 3
    )
    first_p50, last_p50 = float(row["first_p50_ms"]) / 1e3, float(row["last_p50_ms"]) / 1e3
    assert f"time to first audio p50 {first_p50 * 1e3:.0f} ms" in out

    def nearer(x, a, b):  # in ratio: a shared CPU scales times, it does not shift them
        return abs(math.log(x / a)) < abs(math.log(x / b))

    # perf_analyzer's latency is the whole stream, which is the export's last response ...
    assert nearer(pa_p50, whole, first), (
        f"perf_analyzer p50 {pa_p50:.2f} s vs ours: first {first:.2f}, whole {whole:.2f}"
    )
    assert last_p50 == pytest.approx(pa_p50, rel=1e-3)
    # ... and run.sh's time to first audio is the first piece: a fraction of the stream, as our client sees
    # it (compared within one run: the shared CPU's load changes between runs)
    assert first_p50 * 2.5 < last_p50 and first_p50 < whole, (
        f"first-audio p50 {first_p50:.2f} s, last {last_p50:.2f} s; ours: first {first:.2f}, whole {whole:.2f}"
    )
    refused = run_sh("http", server.http_url, "1", timeout=60, **env)
    assert refused.returncode == 2 and "streams over gRPC only" in refused.stderr


def test_an_sse_stream_equals_the_grpc_stream_piece_by_piece_with_a_stereo_reference(server, reference):
    """The SSE body carries the channels and their count, so the server downmixes after f5-tts's
    silence trimming as for gRPC (averaging on the client gave other audio)."""
    # right channel: the left one inverted, quieter and late, so averaging first changes the trimming
    right = -0.5 * np.roll(reference.audio, 3000, axis=1)
    stereo = Reference(np.concatenate([reference.audio, right]), reference.sample_rate, reference.text)
    over_http = _stream(server, LONG_TEXT, protocol="http", reference=stereo, seed=6)
    over_grpc = _stream(server, LONG_TEXT, reference=stereo, seed=6)
    assert len(over_http) == len(over_grpc) >= 3
    for got, want in zip(over_http, over_grpc):
        assert_same_audio(got, want, rel=1e-6)


def test_the_stream_model_reports_how_many_streams_it_serves(server):
    """f5_tts_stream's gauge on the metrics port: a stream counts from its request to its final response."""
    pieces = stream_synthesize(
        LONG_TEXT, voice=VOICE, url=server.grpc_url, options=SynthesisOptions(nfe_step=NFE), timeout=120
    )
    next(pieces)
    assert metric_value(server, contract.STREAMS_ACTIVE_METRIC) == 1
    for _ in pieces:
        pass
    wait_for(lambda: metric_value(server, contract.STREAMS_ACTIVE_METRIC) == 0, "the stream to end")
