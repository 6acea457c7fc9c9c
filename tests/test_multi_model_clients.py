"""Several F5-TTS models on one server (export --name): the clients call each by its short or Triton name,
list them, and name the models the server has when asked for one it does not.

The session's tiny repository serves the default model (f5_tts, voice "nature") and FR_MODEL (f5_tts_fr: the
v0 architecture with a French vocab, no voices)."""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import FR_MODEL, FRENCH_TEXT, VOICE, assert_same_audio, model_stats, run_sh, wait_for

import contract
from client import (
    SynthesisError,
    SynthesisOptions,
    UnknownModelError,
    list_models,
    list_voices,
    stream_synthesize,
    stream_synthesize_async,
    synthesize,
    synthesize_async,
)
from client.api import stream_model, tts_model
from export.repository import REFERENCE_TEXT, REFERENCE_WAV

ROOT = Path(__file__).resolve().parent.parent
FR_TRITON = contract.tts_model_name(FR_MODEL)  # f5_tts_fr
FR_STREAM = contract.stream_model_name(FR_TRITON)  # f5_tts_fr_stream
OPTIONS = SynthesisOptions(seed=9, nfe_step=4)
# Several text chunks, the first one short: a stream of pieces.
FRENCH_STORY = " ".join([FRENCH_TEXT] * 4)
UNKNOWN = "xx"
LISTED = "default, fr"  # the short names the server has, as an unknown model's message says them


def run_client(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "client", *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def _url(server, protocol: str) -> str:
    return server.grpc_url if protocol == "grpc" else server.http_url


def _speak(server, reference, model=None, protocol="grpc", text=FRENCH_TEXT, options=OPTIONS) -> np.ndarray:
    wave, rate = synthesize(
        text,
        reference.audio,
        reference.sample_rate,
        reference.text,
        url=_url(server, protocol),
        protocol=protocol,
        model=model,
        options=options,
        timeout=120,
    )
    assert rate == contract.SAMPLE_RATE
    return wave


def _config_parameter(server, triton_model: str, name: str) -> str:
    """A config parameter as Triton serves it, asked through tritonclient directly (not the client under test)."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    try:
        return client.get_model_config(triton_model)["parameters"][name]["string_value"]
    finally:
        client.close()


def _requests_answered(server, triton_model: str) -> int:
    return model_stats(server, triton_model).requests


# --- names, without a server ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,unary,streaming",
    [
        (None, "f5_tts", "f5_tts_stream"),
        ("", "f5_tts", "f5_tts_stream"),
        ("default", "f5_tts", "f5_tts_stream"),
        ("f5_tts", "f5_tts", "f5_tts_stream"),
        ("f5_tts_stream", "f5_tts", "f5_tts_stream"),  # what the stream functions took before: still works
        ("fr", "f5_tts_fr", "f5_tts_fr_stream"),
        ("f5_tts_fr", "f5_tts_fr", "f5_tts_fr_stream"),
        ("f5_tts_fr_stream", "f5_tts_fr", "f5_tts_fr_stream"),
        ("fr_stream", "f5_tts_fr", "f5_tts_fr_stream"),
    ],
)
def test_multi_model_names_resolve_to_the_triton_models_and_run_sh_agrees(tmp_path, name, unary, streaming):
    """The Python clients and perf_analyzer_configs/run.sh (bash, no Python) name the same Triton models."""
    assert (tts_model(name), stream_model(name)) == (unary, streaming)
    fake = _fake_perf_analyzer(tmp_path)
    for stream_flag in ("0", "1"):
        want = streaming if stream_flag == "1" or (name or "").endswith(contract.STREAM_SUFFIX) else unary
        args = _run_sh_args(tmp_path, fake, MODEL=name or "", STREAM=stream_flag)
        assert args[args.index("-m") + 1] == want, (name, stream_flag, args)
        assert ("--streaming" in args) == want.endswith(contract.STREAM_SUFFIX)


def _fake_perf_analyzer(tmp_path: Path) -> Path:
    """A stand-in for perf_analyzer that records its arguments and writes the files run.sh reads."""
    fake = tmp_path / "perf_analyzer"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        "args = sys.argv[1:]\n"
        f"open({str(tmp_path / 'args.json')!r}, 'w').write(json.dumps(args))\n"
        "open(args[args.index('-f') + 1], 'w').write('Concurrency,Inferences/Second\\n1,1.0\\n')\n"
        "if '--profile-export-file' in args:\n"
        "    one = {'timestamp': 0, 'response_timestamps': [10**6], 'response_outputs': [{'waveform': 1}]}\n"
        "    profile = {'experiments': [{'experiment': {'value': 1}, 'requests': [one]}]}\n"
        "    open(args[args.index('--profile-export-file') + 1], 'w').write(json.dumps(profile))\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return fake


def _run_sh_args(tmp_path: Path, fake: Path, **env) -> list[str]:
    proc = run_sh(
        "grpc",
        "localhost:1",
        "1",
        timeout=60,
        PERF_ANALYZER=str(fake),
        OUT=str(tmp_path / "pa.csv"),
        PYTHON=sys.executable,
        **env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((tmp_path / "args.json").read_text())


# --- speaking with a named model ------------------------------------------------------------------
def test_multi_model_api_takes_a_short_or_triton_name_and_each_model_speaks_its_own(server, reference):
    """model="fr" and model="f5_tts_fr", over gRPC, HTTP and asyncio: one answer, from f5_tts_fr (its
    statistics count them); the default model (no model, or "default") gives other audio."""
    import tritonclient.grpc.aio as aio

    before = _requests_answered(server, FR_TRITON)
    by_short = _speak(server, reference, FR_MODEL)

    async def run_async():
        client = aio.InferenceServerClient(server.grpc_url)
        try:
            args = (FRENCH_TEXT, reference.audio, reference.sample_rate, reference.text)
            return (await synthesize_async(*args, client=client, model=FR_MODEL, options=OPTIONS, timeout=120))[0]
        finally:
            await client.close()

    answers = {
        "triton name": _speak(server, reference, FR_TRITON),
        "http": _speak(server, reference, FR_MODEL, "http"),
        "http, triton name": _speak(server, reference, FR_TRITON, "http"),
        "asyncio": asyncio.run(run_async()),
    }
    for how, answer in answers.items():
        np.testing.assert_array_equal(answer, by_short, err_msg=how)
    wait_for(lambda: _requests_answered(server, FR_TRITON) >= before + 5, f"{FR_TRITON} to count 5 requests")

    default = _speak(server, reference)
    np.testing.assert_array_equal(_speak(server, reference, contract.DEFAULT_MODEL_NAME), default)
    assert np.isfinite(by_short).all() and by_short.size > contract.SAMPLE_RATE // 2
    differ = default.shape != by_short.shape or np.max(np.abs(default - by_short)) > 1e-2 * np.max(np.abs(default))
    assert differ, "the default model and fr gave the same audio"


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_multi_model_stream_joins_to_the_unary_answer(server, reference, protocol):
    """The stream of "fr" (f5_tts_fr_stream; named by short, Triton or stream name) joins to fr's whole
    answer for the same seed and chunking, piece after piece."""
    options = SynthesisOptions(seed=9, nfe_step=4, first_chunk_chars=contract.STREAM_FIRST_CHUNK_CHARS)
    want = _speak(server, reference, FR_MODEL, text=FRENCH_STORY, options=options)
    speaker = (reference.audio, reference.sample_rate, reference.text)
    for name in (FR_MODEL, FR_TRITON, FR_STREAM):
        pieces = list(
            stream_synthesize(
                FRENCH_STORY,
                *speaker,
                url=_url(server, protocol),
                protocol=protocol,
                model=name,
                options=options,
                timeout=120,
            )
        )
        assert len(pieces) >= 2, name  # one per text chunk
        assert_same_audio(np.concatenate(pieces), want)


def test_multi_model_asyncio_stream_joins_to_the_unary_answer(server, reference):
    """stream_synthesize_async(model="fr"), as the gateway streams. It reads each call to its end: a call left
    open at its final response was cancelled when the client closed, and tritonserver then never unloaded
    the stream model (the session's server, stopped cleanly at the end, is the check)."""
    import tritonclient.grpc.aio as aio

    options = SynthesisOptions(seed=9, nfe_step=4, first_chunk_chars=contract.STREAM_FIRST_CHUNK_CHARS)
    want = _speak(server, reference, FR_MODEL, text=FRENCH_STORY, options=options)

    async def run():
        client = aio.InferenceServerClient(server.grpc_url)
        try:
            pieces = stream_synthesize_async(
                FRENCH_STORY,
                reference.audio,
                reference.sample_rate,
                reference.text,
                client=client,
                model=FR_MODEL,
                options=options,
                timeout=120,
            )
            return [piece async for piece in pieces]
        finally:
            await client.close()

    pieces = asyncio.run(run())
    assert len(pieces) >= 2
    assert_same_audio(np.concatenate(pieces), want)


def test_multi_model_cli_writes_the_named_models_wav_unary_and_streamed(server, tmp_path, reference):
    """--model fr over gRPC, --model f5_tts_fr --stream over HTTP (f5-tts's chunking for both): the same
    WAV, fr's audio (the API's answer), not the default model's."""
    speak = [
        *("--reference-audio", REFERENCE_WAV, "--reference-text", REFERENCE_TEXT, "--text", FRENCH_TEXT),
        *("--seed", OPTIONS.seed, "--nfe-step", OPTIONS.nfe_step),
    ]
    unary = run_client("--url", server.grpc_url, "--model", FR_MODEL, *speak, "--output", tmp_path / "fr.wav")
    assert unary.returncode == 0, unary.stderr
    streamed = run_client(
        *("--url", f"http://{server.http_url}", "--model", FR_TRITON, "--stream", "--first-chunk-chars", 0),
        *speak,
        *("--output", tmp_path / "fr_stream.wav"),
    )
    assert streamed.returncode == 0, streamed.stderr
    default = run_client("--url", server.grpc_url, *speak, "--output", tmp_path / "default.wav")
    assert default.returncode == 0, default.stderr

    wav = (tmp_path / "fr.wav").read_bytes()
    assert (tmp_path / "fr_stream.wav").read_bytes() == wav
    assert wav != (tmp_path / "default.wav").read_bytes()
    audio, rate = sf.read(str(tmp_path / "fr.wav"), dtype="float32")
    assert rate == contract.SAMPLE_RATE
    want = _speak(server, reference, FR_MODEL)
    assert audio.shape == want.shape and np.max(np.abs(audio - np.clip(want, -1, 1))) <= 1 / 32767

    body = tmp_path / "request.json"
    written = run_client("--model", FR_MODEL, *speak, "--write-request-json", body)
    assert written.returncode == 0 and f"/v2/models/{FR_TRITON}/infer" in written.stdout, written.stderr


# --- listing the server's models ------------------------------------------------------------------
def test_multi_model_list_models_says_each_models_names_architecture_voices_and_state(server):
    grpc_models = list_models(f"grpc://{server.grpc_url}")
    assert list_models(f"http://{server.http_url}") == grpc_models
    assert [(m.name, m.triton_model, m.stream_model) for m in grpc_models] == [
        (contract.DEFAULT_MODEL_NAME, contract.TTS_MODEL, contract.STREAM_MODEL),
        (FR_MODEL, FR_TRITON, FR_STREAM),
    ]
    default, fr = grpc_models
    assert default.voices == (VOICE,) and fr.voices == ()
    for m in grpc_models:
        assert m.ready and (m.state, m.stream_state) == ("READY", "READY")
        assert m.architecture == _config_parameter(server, m.triton_model, "f5_model_name"), m
        assert not m.demo_model
    assert default.architecture != fr.architecture  # v1 and v0, as the export read their configs
    assert list_voices(server.grpc_url, model=FR_MODEL) == []
    assert list_voices(f"http://{server.http_url}", model=contract.DEFAULT_MODEL_NAME) == [VOICE]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_multi_model_cli_list_models_prints_a_table(server, protocol):
    proc = run_client("--list-models", "--protocol", protocol, "--url", _url(server, protocol))
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    header, *rows = proc.stdout.splitlines()
    assert header.split() == ["name", "Triton", "model", "stream", "model", "architecture", "voices", "ready"]
    arch = {m: _config_parameter(server, contract.tts_model_name(m), "f5_model_name") for m in ("default", FR_MODEL)}
    assert [row.split() for row in rows] == [
        ["default", contract.TTS_MODEL, contract.STREAM_MODEL, arch["default"], VOICE, "yes"],
        [FR_MODEL, FR_TRITON, FR_STREAM, arch[FR_MODEL], "-", "yes"],
    ]
    voices = run_client("--list-voices", "--model", FR_MODEL, "--protocol", protocol, "--url", _url(server, protocol))
    assert voices.returncode == 0 and voices.stdout == "(no registered voices)\n", voices.stderr


# --- a model the server does not have ----------------------------------------------------------------
@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_multi_model_unknown_model_names_the_models_the_server_has(server, reference, protocol, stream):
    url = f"{protocol}://{_url(server, protocol)}"
    args = (FRENCH_TEXT, reference.audio, reference.sample_rate, reference.text)

    def speak(asked):
        if stream:
            return list(stream_synthesize(*args, url=url, model=asked))  # a generator: it asks when iterated
        return synthesize(*args, url=url, model=asked)

    for asked in (UNKNOWN, contract.tts_model_name(UNKNOWN)):
        with pytest.raises(UnknownModelError) as err:
            speak(asked)
        e = err.value
        assert str(e) == f"unknown model '{asked}': the server at {url} has {LISTED} (python -m client --list-models)"
        assert isinstance(e, SynthesisError) and e.model == asked and e.available == ["default", FR_MODEL]
        assert not e.invalid_argument
    with pytest.raises(UnknownModelError, match=f"unknown model '{UNKNOWN}': the server at {url} has {LISTED}"):
        list_voices(url, model=UNKNOWN)


def test_multi_model_unknown_model_over_asyncio_names_the_models_the_server_has(server, reference):
    import tritonclient.grpc.aio as aio

    args = (FRENCH_TEXT, reference.audio, reference.sample_rate, reference.text)

    async def refused(stream: bool) -> UnknownModelError:
        client = aio.InferenceServerClient(server.grpc_url)
        try:
            if stream:
                async for _ in stream_synthesize_async(*args, client=client, model=UNKNOWN):
                    pass
            else:
                await synthesize_async(*args, client=client, model=UNKNOWN)
        except UnknownModelError as e:
            return e
        finally:
            await client.close()
        pytest.fail("no UnknownModelError")

    for stream in (False, True):
        e = asyncio.run(refused(stream))
        assert str(e) == f"unknown model '{UNKNOWN}': the server has {LISTED} (python -m client --list-models)"
        assert e.available == ["default", FR_MODEL]


@pytest.mark.parametrize(
    "args",
    [[], ["--stream"], ["--list-voices"]],
    ids=["unary", "stream", "list_voices"],
)
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_multi_model_cli_unknown_model_says_one_line_and_exits_1(server, tmp_path, protocol, args):
    """A failed request (the server is asked which models it has), not a usage error: status 1, no file."""
    url = f"{protocol}://{_url(server, protocol)}"
    proc = run_client(
        *("--url", url, "--model", UNKNOWN, "--voice", VOICE, "--text", "Bonjour."),
        *args,
        *("--output", tmp_path / "out.wav"),
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == (
        f"client: error: unknown model '{UNKNOWN}': the server at {url} has {LISTED} (python -m client --list-models)\n"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("streaming", [False, True], ids=["whole", "streaming"])
def test_multi_model_bench_unknown_model_says_one_line_and_exits_1(server, tmp_path, streaming):
    proc = run_client(
        *("bench", "--url", server.grpc_url, "--model", UNKNOWN, "--concurrency", "1", "--requests", 1),
        *("--warmup", 0, "--output-dir", tmp_path / "bench", "--no-progress"),
        *(["--streaming"] if streaming else []),
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == (
        f"bench: unknown model '{UNKNOWN}': the server at {server.grpc_url} has {LISTED} "
        "(python -m client --list-models)\n"
    )
    assert not (tmp_path / "bench").exists()


# --- benchmarks of a named model ----------------------------------------------------------------------
@pytest.mark.slow  # benchmark runs (the bench CLI against the session's server)
def test_multi_model_bench_measures_the_named_model(server, tmp_path):
    """bench --model fr sends to f5_tts_fr (Triton's statistics of that model count the requests); with
    --streaming, fr's stream against fr."""
    whole = run_client(
        *("bench", "--url", server.grpc_url, "--model", FR_MODEL, "--concurrency", "1", "--requests", 2),
        *("--warmup", 0, "--nfe-step", 2, "--output-dir", tmp_path / "whole", "--no-progress"),
    )
    assert whole.returncode == 0, whole.stderr
    report = json.loads((tmp_path / "whole" / "report.json").read_text())
    assert (report["model"], report["model_name"]) == (FR_TRITON, FR_MODEL)
    level = report["levels"][0]
    assert level["ok"] == 2 and level["errors"] == 0 and level["triton"]["requests"] == 2

    streaming = run_client(
        *("bench", "--url", server.grpc_url, "--model", FR_TRITON, "--streaming", "--concurrency", "1"),
        *("--requests", 1, "--warmup", 0, "--nfe-step", 2, "--output-dir", tmp_path / "streaming"),
    )
    assert streaming.returncode == 0, streaming.stderr
    report = json.loads((tmp_path / "streaming" / "streaming.json").read_text())
    assert (report["model"], report["stream_model"]) == (FR_TRITON, FR_STREAM)
    assert report["levels"][0]["streaming_first_audio_s"]["p50"] > 0


@pytest.mark.slow  # a perf_analyzer measurement run
def test_multi_model_perf_analyzer_measures_the_named_model(server, tmp_path, reference):
    """MODEL=fr: perf_analyzer's requests go to f5_tts_fr (its statistics count them)."""
    data = tmp_path / "data.json"
    ref_wav = tmp_path / "ref.wav"
    sf.write(str(ref_wav), reference.audio.T, reference.sample_rate)
    gen = subprocess.run(
        [
            sys.executable,
            "perf_analyzer_configs/generate_input_data.py",
            *("--reference-audio", str(ref_wav), "--reference-text", reference.text, "--text", FRENCH_TEXT),
            *("--nfe-step", "4", "--output", str(data)),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert gen.returncode == 0, gen.stderr
    before = _requests_answered(server, FR_TRITON)
    csv = tmp_path / "fr.csv"
    proc = run_sh("grpc", server.grpc_url, "1", MODEL=FR_MODEL, REQUEST_COUNT="2", OUT=str(csv), INPUT_DATA=str(data))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "error" not in out.lower(), out
    assert f"run.sh: model {FR_TRITON} at {server.grpc_url}" in out
    assert csv.read_text().splitlines()[1].split(",")[0] == "1"
    # perf_analyzer's own requests (its count, and the warm-up it sends) all went to f5_tts_fr
    wait_for(lambda: _requests_answered(server, FR_TRITON) >= before + 2, f"{FR_TRITON} to count the requests")
