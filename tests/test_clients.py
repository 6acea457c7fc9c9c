"""Clients against the real server: CLI, Python API (sync + asyncio), curl JSON, bench, perf_analyzer."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import LONG_TEXT, SHORT_TEXT, VOICE, run_sh, wait_for

import contract
from client import SynthesisError, SynthesisOptions, synthesize, synthesize_async
from export.repository import REFERENCE_TEXT, REFERENCE_WAV

ROOT = Path(__file__).resolve().parent.parent


def run_client(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "client", *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def test_client_package_does_not_import_torch():
    code = (
        "import sys, client, client.api, client.bench, client.request, client.__main__; "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_cli_writes_a_wav(server, tmp_path, protocol):
    url = server.grpc_url if protocol == "grpc" else server.http_url
    out = tmp_path / f"{protocol}.wav"
    proc = run_client(
        "--protocol",
        protocol,
        "--url",
        url,
        "--reference-audio",
        REFERENCE_WAV,
        "--reference-text",
        REFERENCE_TEXT,
        "--text",
        SHORT_TEXT,
        "--seed",
        3,
        "--nfe-step",
        4,
        "--output",
        out,
        "-H",
        "x-request-id=test-1",
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout
    audio, rate = sf.read(str(out))
    assert rate == contract.SAMPLE_RATE and audio.ndim == 1 and audio.size > contract.SAMPLE_RATE // 2


def test_cli_accepts_stereo_flac_at_44k_and_a_text_file(server, tmp_path, reference):
    import torch
    import torchaudio

    at44k = torchaudio.functional.resample(torch.from_numpy(reference.audio), reference.sample_rate, 44_100)
    stereo = torch.cat([at44k, at44k * 0.8]).numpy().T
    ref_path = tmp_path / "ref.flac"
    sf.write(str(ref_path), stereo, 44_100)
    text = tmp_path / "text.txt"
    text.write_text(SHORT_TEXT, encoding="utf-8")
    out = tmp_path / "out.wav"
    proc = run_client(
        "--url",
        server.grpc_url,
        "--reference-audio",
        ref_path,
        "--reference-text",
        REFERENCE_TEXT,
        "--text-file",
        text,
        "--nfe-step",
        4,
        "--output",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    assert sf.info(str(out)).samplerate == contract.SAMPLE_RATE


def test_cli_reports_the_server_error_and_writes_nothing(server, tmp_path):
    out = tmp_path / "out.wav"
    proc = run_client(
        "--url",
        server.grpc_url,
        "--reference-audio",
        REFERENCE_WAV,
        "--reference-text",
        REFERENCE_TEXT,
        "--text",
        SHORT_TEXT,
        "--nfe-step",
        0,
        "--output",
        out,
    )
    assert proc.returncode == 1
    assert "'nfe_step' is 0; allowed range is [1, 128]" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_unreachable_server_fails_cleanly(tmp_path):
    out = tmp_path / "out.wav"
    proc = run_client(
        "--protocol",
        "http",
        "--url",
        "127.0.0.1:9",
        "--reference-audio",
        REFERENCE_WAV,
        "--reference-text",
        REFERENCE_TEXT,
        "--text",
        SHORT_TEXT,
        "--output",
        out,
        "--timeout",
        10,
    )
    assert proc.returncode == 1 and "client: error:" in proc.stderr
    assert not out.exists()


def test_python_api_gives_the_same_audio_over_every_protocol_and_url_form(server, reference):
    """gRPC and HTTP, sync and asyncio, host:port with a protocol or a URL with a scheme: one answer."""
    import tritonclient.grpc.aio as aio

    options = SynthesisOptions(seed=21, nfe_step=4)
    args = (SHORT_TEXT, reference.audio, reference.sample_rate, reference.text)
    via_grpc, rate = synthesize(*args, url=server.grpc_url, protocol="grpc", options=options)
    assert rate == contract.SAMPLE_RATE
    assert via_grpc.size > contract.SAMPLE_RATE // 2 and np.isfinite(via_grpc).all()

    async def run_async():
        client = aio.InferenceServerClient(server.grpc_url)
        try:
            return await synthesize_async(*args, client=client, options=options)
        finally:
            await client.close()

    answers = {
        "http": synthesize(*args, url=server.http_url, protocol="http", options=options)[0],
        "asyncio": asyncio.run(run_async())[0],
        "http://": synthesize(*args, url=f"http://{server.http_url}", options=options)[0],
        "grpc://": synthesize(*args, url=f"grpc://{server.grpc_url}", options=options)[0],
    }
    for how, answer in answers.items():
        np.testing.assert_array_equal(answer, via_grpc, err_msg=how)
    with pytest.raises(SynthesisError) as err:
        synthesize("  ", reference.audio, reference.sample_rate, reference.text, url=server.grpc_url)
    assert err.value.status == "StatusCode.INVALID_ARGUMENT" and err.value.invalid_argument


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_json_request_from_the_readme(server, tmp_path, reference):
    body = tmp_path / "request.json"
    proc = run_client(
        "--reference-audio",
        REFERENCE_WAV,
        "--reference-text",
        REFERENCE_TEXT,
        "--text",
        SHORT_TEXT,
        "--seed",
        5,
        "--nfe-step",
        4,
        "--write-request-json",
        body,
    )
    assert proc.returncode == 0, proc.stderr
    curl = subprocess.run(
        [
            "curl",
            "-sS",
            "--fail-with-body",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            f"http://{server.http_url}/v2/models/f5_tts/infer",
            "-d",
            f"@{body}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert curl.returncode == 0, curl.stdout + curl.stderr
    outputs = {o["name"]: o for o in json.loads(curl.stdout)["outputs"]}
    wave = np.array(outputs[contract.WAVEFORM]["data"], dtype=np.float32)
    assert outputs[contract.SAMPLE_RATE_OUT]["data"] == [contract.SAMPLE_RATE]
    want, _ = synthesize(
        SHORT_TEXT,
        reference.audio,
        reference.sample_rate,
        reference.text,
        url=server.grpc_url,
        options=SynthesisOptions(seed=5, nfe_step=4),
    )
    np.testing.assert_allclose(wave, want, atol=1e-6)


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # a benchmark run (the bench CLI against the session's server)
def test_bench_reports_json_and_plots(server, tmp_path):
    out = tmp_path / "bench"
    proc = run_client(
        "bench",
        "--url",
        server.grpc_url,
        "--concurrency",
        "1,3",
        "--requests",
        3,
        "--warmup",
        1,
        "--nfe-step",
        4,
        "--output-dir",
        out,
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert [lv["concurrency"] for lv in report["levels"]] == [1, 3]
    for lv in report["levels"]:
        assert lv["ok"] == 3 and lv["errors"] == 0
        assert set(lv["latency_s"]) == {"p50", "p90", "p95", "p99"}
        assert lv["rtf"] > 0 and lv["throughput_audio_s_per_s"] > 0
        assert lv["triton"]["requests"] == 3  # warm-up requests are not counted
        assert sum(int(size) * n for size, n in lv["triton"]["batch_sizes_executed"].items()) == 3
        assert lv["triton"]["avg_queue_ms"] is not None and lv["triton"]["avg_compute_infer_ms"] > 0
    assert _is_png(out / "latency_cdf.png") and _is_png(out / "rtf_throughput.png")
    assert "RTF" in proc.stdout


@pytest.mark.slow  # a benchmark run (the bench CLI against the session's server)
def test_bench_reads_a_jsonl_manifest(server, tmp_path):
    shutil.copy(REFERENCE_WAV, tmp_path / "ref.wav")
    manifest = tmp_path / "requests.jsonl"
    manifest.write_text(
        "\n".join(
            json.dumps({"reference_audio": "ref.wav", "reference_text": REFERENCE_TEXT, "text": t})
            for t in ["Hello there.", "General Kenobi."]
        )
        + "\n"
    )
    proc = run_client(
        "bench",
        "--url",
        server.grpc_url,
        "--manifest",
        manifest,
        "--concurrency",
        "2",
        "--requests",
        2,
        "--warmup",
        0,
        "--nfe-step",
        2,
        "--output-dir",
        tmp_path / "b",
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "b" / "report.json").read_text())["levels"][0]["ok"] == 2


def test_committed_perf_analyzer_data_is_what_the_generator_writes(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "perf_analyzer_configs/generate_input_data.py",
            "--example",
            "--output",
            str(tmp_path / "data.json"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    committed = ROOT / "perf_analyzer_configs" / "data" / "basic_en.json"
    assert (tmp_path / "data.json").read_text() == committed.read_text()
    entry = json.loads(committed.read_text())["data"][0]
    audio = entry[contract.REFERENCE_AUDIO]
    assert audio["shape"] == [1, len(audio["content"])]
    assert all(isinstance(v, float) for v in audio["content"])  # perf_analyzer rejects ints for FP32


@pytest.mark.slow  # a perf_analyzer measurement run
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_perf_analyzer_measures_the_server(server, tmp_path, protocol):
    url = server.grpc_url if protocol == "grpc" else server.http_url
    csv = tmp_path / f"{protocol}.csv"
    proc = run_sh(protocol, url, "1 2", REQUEST_COUNT="4", OUT=str(csv))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "error" not in out.lower() and "failed" not in out.lower(), out
    throughputs = [float(x) for x in re.findall(r"Throughput: ([0-9.]+) infer/sec", out)]
    assert len(throughputs) == 2 and all(t > 0 for t in throughputs), out
    assert re.findall(r"Request count: (\d+)", out) == ["4", "4"]
    rows = csv.read_text().splitlines()
    assert rows[0].startswith("Concurrency") and [r.split(",")[0] for r in rows[1:]] == ["1", "2"]


# --- references without a transcript, and the transcriber ---------------------------------


def _transcriber_answer(server, audio: np.ndarray, rate: int, **optional) -> dict[str, str]:
    """The transcriber model's own answer, asked through tritonclient directly (not the client under test):
    {output name: text}. `optional`: language=str, as_reference=bool."""
    import tritonclient.grpc as grpcclient

    values = {
        contract.REFERENCE_AUDIO: (np.asarray(audio, dtype=np.float32)[None], "FP32"),
        contract.REFERENCE_SAMPLE_RATE: (np.array([[rate]], dtype=np.int32), "INT32"),
    }
    if "language" in optional:
        values[contract.LANGUAGE] = (np.array([[optional["language"].encode()]], dtype=np.object_), "BYTES")
    if "as_reference" in optional:
        values[contract.AS_REFERENCE] = (np.array([[optional["as_reference"]]], dtype=np.bool_), "BOOL")
    inputs = []
    for name, (array, dtype) in values.items():
        tensor = grpcclient.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    outputs = [grpcclient.InferRequestedOutput(name) for name in (contract.TRANSCRIPT, contract.LANGUAGE)]
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        result = client.infer(contract.TRANSCRIBER_MODEL, inputs, outputs=outputs)
    finally:
        client.close()
    return {name: result.as_numpy(name).reshape(-1)[0].decode() for name in (contract.TRANSCRIPT, contract.LANGUAGE)}


def test_a_reference_without_transcript_is_sent_without_reference_text():
    """None and "" mean "transcribe it": the tensor is left out (the server takes both forms; one goes on the wire)."""
    from client.request import build_inputs, http_json_body

    audio = np.zeros((1, 100), dtype=np.float32)
    for untold in (None, ""):
        tensors = build_inputs(audio, 24_000, untold, "Hello.")
        assert contract.REFERENCE_TEXT not in tensors and contract.REFERENCE_AUDIO in tensors
        assert contract.REFERENCE_TEXT not in {i["name"] for i in http_json_body(tensors)["inputs"]}
    assert build_inputs(audio, 24_000, "Hi.", "Hello.")[contract.REFERENCE_TEXT].tolist() == [[b"Hi."]]
    with pytest.raises(ValueError, match="a registered voice has its own transcript"):
        build_inputs(None, None, "Hi.", "Hello.", voice="nature")


def test_cli_without_reference_text_speaks_as_with_the_transcript_the_transcriber_hears(server, tmp_path, reference):
    """Only --reference-audio: the server transcribes the reference as f5-tts would (clipped, trimmed) and
    speaks exactly as when that transcript is sent, same seed; over gRPC and HTTP alike."""
    heard = _transcriber_answer(server, reference.audio, reference.sample_rate, as_reference=True)[contract.TRANSCRIPT]
    assert heard.strip()
    speak = [*("--reference-audio", REFERENCE_WAV, "--text", SHORT_TEXT, "--seed", 11, "--nfe-step", 4)]
    untold = run_client("--url", server.grpc_url, *speak, "--output", tmp_path / "untold.wav")
    assert untold.returncode == 0, untold.stderr
    told = run_client(
        "--url", f"http://{server.http_url}", *speak, "--reference-text", heard, "--output", tmp_path / "told.wav"
    )
    assert told.returncode == 0, told.stderr
    assert (tmp_path / "untold.wav").read_bytes() == (tmp_path / "told.wav").read_bytes()
    assert sf.info(str(tmp_path / "told.wav")).frames > 0


def test_python_api_transcribes_and_speaks_without_a_transcript(server, reference):
    from client import Transcription, transcribe

    want = _transcriber_answer(server, reference.audio, reference.sample_rate, as_reference=True)
    for url in (server.grpc_url, f"http://{server.http_url}"):
        heard = transcribe(reference.audio, reference.sample_rate, as_reference=True, url=url)
        assert heard == Transcription(want[contract.TRANSCRIPT], want[contract.LANGUAGE]), url
    # a file's path works too; without detection the language is not asked for
    assert transcribe(REFERENCE_WAV, as_reference=True, detect_language=False, url=server.grpc_url) == (
        want[contract.TRANSCRIPT],
        None,
    )
    options = SynthesisOptions(seed=12, nfe_step=4)
    args = (SHORT_TEXT, reference.audio, reference.sample_rate)
    untold, _ = synthesize(*args, url=server.grpc_url, options=options)
    told, _ = synthesize(*args, want[contract.TRANSCRIPT], url=server.grpc_url, options=options)
    np.testing.assert_array_equal(untold, told)


def test_cli_transcribe_prints_what_the_transcriber_model_returns(server, reference):
    whole = _transcriber_answer(server, reference.audio, reference.sample_rate)
    proc = run_client("transcribe", REFERENCE_WAV, "--url", server.grpc_url)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == whole[contract.TRANSCRIPT] + "\n" and proc.stderr == ""
    # --json over HTTP, in a language asked for, of the part a reference keeps
    clipped = _transcriber_answer(server, reference.audio, reference.sample_rate, language="fr", as_reference=True)
    proc = run_client(
        "transcribe",
        REFERENCE_WAV,
        "--url",
        f"http://{server.http_url}",
        "--language",
        "fr",
        "--as-reference",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {contract.TRANSCRIPT: clipped[contract.TRANSCRIPT], contract.LANGUAGE: "fr"}
    # --json alone: the language is Whisper's detection
    proc = run_client("transcribe", REFERENCE_WAV, "--url", server.grpc_url, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == whole


@pytest.mark.parametrize(
    "args,status,message",
    [
        (
            ["--language", "klingon"],
            1,
            "client: error: input 'language' is 'klingon', which this Whisper does not know; known: af, am, ",
        ),
        (["--language", " "], 2, "--language is empty; give a Whisper language code (en, zh, fr, ...)"),
        (
            ["--model", "no_such_model"],
            1,
            "client: error: the server at grpc://{grpc} has no 'no_such_model' model to "
            "transcribe with: export the repository with `python -m export ... --asr`",
        ),
        (["--url", "ftp://{grpc}"], 2, "client: error: URL 'ftp://{grpc}': scheme 'ftp://' is not supported"),
    ],
    ids=["unknown_language", "empty_language", "no_transcriber", "bad_url"],
)
def test_cli_transcribe_errors_say_one_line_with_the_exit_status(server, args, status, message):
    args = [a.format(grpc=server.grpc_url) for a in args]
    proc = run_client("transcribe", REFERENCE_WAV, *(["--url", server.grpc_url] if "--url" not in args else []), *args)
    assert proc.returncode == status, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]  # argparse prints its usage first
    assert len(errors) == 1 and proc.stderr.strip().endswith(errors[0]) and "Traceback" not in proc.stderr
    assert message.format(grpc=server.grpc_url) in errors[0] and proc.stdout == ""


def test_cli_transcribe_names_a_missing_file_and_needs_one(tmp_path):
    missing = tmp_path / "missing.wav"
    err = _one_clean_line(run_client("transcribe", missing))
    assert err == f"client: error: audio file {missing} does not exist"
    proc = run_client("transcribe")
    assert proc.returncode == 2 and "the following arguments are required: audio" in proc.stderr


# --- URLs, construction errors, messages a new user meets -----------------------------------
def _one_clean_line(proc) -> str:
    """A failed CLI run said one `client: error:` line and no traceback (from us or from tritonclient's
    destructors)."""
    err = proc.stderr.strip()
    assert proc.returncode != 0
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert err.startswith("client: error: ") and "\n" not in err, err
    return err


@pytest.mark.parametrize(
    "args",
    [
        ["--list-voices", "--protocol", "http", "--url", "http://{http}"],  # the reproduction
        ["--list-voices", "--url", "http://{http}/"],  # the scheme alone picks HTTP
        ["--list-voices", "--url", "grpc://{grpc}"],
    ],
    ids=["http_scheme_and_protocol", "http_scheme_only", "grpc_scheme"],
)
def test_cli_takes_urls_with_a_scheme(server, args):
    proc = run_client(*[a.format(http=server.http_url, grpc=server.grpc_url) for a in args])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["nature"] and proc.stderr == ""


def test_python_api_lists_voices_at_urls_with_a_scheme_and_refuses_a_contradiction(server, reference):
    from client import list_voices

    args = (SHORT_TEXT, reference.audio, reference.sample_rate, reference.text)
    assert list_voices(f"http://{server.http_url}") == list_voices(f"grpc://{server.grpc_url}") == ["nature"]
    with pytest.raises(SynthesisError, match="is an HTTP address but the protocol asked for is grpc"):
        synthesize(*args, url=f"http://{server.http_url}", protocol="grpc")
    with pytest.raises(SynthesisError, match=r"scheme 'ftp://' is not supported; use host:port, or http://"):
        list_voices(f"ftp://{server.http_url}")


def test_bench_takes_a_grpc_url_and_refuses_an_http_one(server, tmp_path):
    proc = run_client(
        "bench",
        "--url",
        f"grpc://{server.grpc_url}",
        "--concurrency",
        "1",
        "--requests",
        1,
        "--warmup",
        0,
        "--nfe-step",
        2,
        "--output-dir",
        tmp_path,
        "--no-progress",
    )
    assert proc.returncode == 0, proc.stderr
    refused = run_client("bench", "--url", f"http://{server.http_url}")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "bench speaks gRPC" in refused.stderr and refused.stderr.count("\n") == 1


def test_runpod_handler_takes_a_grpc_url(server):
    import asyncio

    from runpod_worker.handler import Handler

    job = {"input": {"text": SHORT_TEXT, "voice": "nature", "nfe_step": 2, "seed": 1}}
    answer = asyncio.run(Handler(f"grpc://{server.grpc_url}")(job))
    assert "error" not in answer, answer
    assert answer["sample_rate"] == contract.SAMPLE_RATE


MISSING_PEM = "/nonexistent/ca.pem"
SPEAK = ["--voice", "nature", "--text", SHORT_TEXT]


@pytest.mark.parametrize(
    "args",
    [
        ["--list-voices", "--ssl", "--root-certificates", MISSING_PEM],
        ["--list-voices", "--protocol", "http", "--ssl", "--root-certificates", MISSING_PEM],
        [*SPEAK, "--ssl", "--root-certificates", MISSING_PEM],
        [*SPEAK, "--protocol", "http", "--ssl", "--root-certificates", MISSING_PEM],
        [*SPEAK, "--stream", "--ssl", "--root-certificates", MISSING_PEM],
        [*SPEAK, "--stream", "--url", "https://localhost:1", "--root-certificates", MISSING_PEM],
        ["--list-voices", "--url", "ftp://localhost:1"],
        [*SPEAK, "--url", "localhost:http"],
    ],
    ids=["grpc_list", "http_list", "grpc_unary", "http_unary", "grpc_stream", "https_stream", "bad_scheme", "bad_port"],
)
def test_a_client_that_cannot_be_built_says_one_line_and_no_traceback(tmp_path, args):
    err = _one_clean_line(run_client(*args, "--output", tmp_path / "out.wav"))
    if MISSING_PEM in args:
        assert f"root certificates file {MISSING_PEM} does not exist" in err
    assert list(tmp_path.iterdir()) == []


def test_a_missing_reference_file_is_named(tmp_path):
    missing = tmp_path / "missing.wav"
    err = _one_clean_line(
        run_client(
            "--reference-audio", missing, "--reference-text", "hi", "--text", "hi", "--output", tmp_path / "out.wav"
        )
    )
    assert err == f"client: error: reference audio file {missing} does not exist"


@pytest.mark.parametrize("protocol,stream", [("http", False), ("grpc", False), ("http", True)])
def test_the_wrong_port_for_the_protocol_is_named(server, tmp_path, protocol, stream):
    url = server.grpc_url if protocol == "http" else server.http_url  # each protocol at the other's port
    err = _one_clean_line(
        run_client(
            "--protocol",
            protocol,
            "--url",
            url,
            *SPEAK,
            *(["--stream"] if stream else []),
            "--output",
            tmp_path / "out.wav",
            "--timeout",
            30,
        )
    )
    other = "gRPC" if protocol == "http" else "HTTP"
    assert f"is it the {other} port?" in err, err
    assert list(tmp_path.iterdir()) == []


def test_verbose_summarises_tensors_instead_of_printing_them(server, tmp_path):
    proc = run_client(
        "--url",
        server.grpc_url,
        "--reference-audio",
        REFERENCE_WAV,
        "--reference-text",
        REFERENCE_TEXT,
        "--text",
        SHORT_TEXT,
        "--nfe-step",
        2,
        "--output",
        tmp_path / "out.wav",
        "-v",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(proc.stderr) < 2000, f"-v printed {len(proc.stderr)} characters"
    assert re.search(r"reference_audio FP32 \[1, 1, \d+\]", proc.stderr) and "target_text BYTES [1, 1]" in proc.stderr
    assert re.search(r"response: waveform \[\d+\] at 24000 Hz", proc.stderr)


def test_help_names_the_default_output():
    proc = run_client("--help")
    assert proc.returncode == 0
    assert "(default: out.wav)" in " ".join(proc.stdout.split())


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_wavs_get_the_permissions_of_the_umask(tmp_path, umask):
    from client.audio import ProgressiveWav, write_wav_atomic

    old = os.umask(umask)
    try:
        write_wav_atomic(tmp_path / "unary.wav", np.zeros(100, np.float32), contract.SAMPLE_RATE)
        streamed = ProgressiveWav(tmp_path / "streamed.wav", contract.SAMPLE_RATE)
        streamed.write(np.zeros(100, np.float32))
        streamed.close()
    finally:
        os.umask(old)
    for name in ("unary.wav", "streamed.wav"):
        assert oct((tmp_path / name).stat().st_mode & 0o777) == oct(0o666 & ~umask), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["streamed.wav", "unary.wav"]  # no temp file left


# --- one 16-bit conversion, exit statuses, signals, gRPC's own log lines ---------------------
def test_both_wav_writers_give_the_same_bytes_rounded_and_clipped(tmp_path):
    """The whole-answer writer and the streaming one hold the same samples, rounded to the nearest step
    (truncation moves k + 0.7 steps to k, and k + 0.5 on either side of a half) and clipped at +-1."""
    from client.audio import ProgressiveWav, pcm16, write_wav_atomic

    steps = np.array([0, 0.5, 0.7, -0.7, 1.5, 2.5, -2.5, 100.49, 100.51, -100.51, 32766.6], np.float64)
    audio = np.concatenate([(steps / 32767).astype(np.float32), np.float32([1.0, -1.0, 1.5, -3.0, 0.9999999])])
    want = np.rint(np.clip(audio.astype(np.float64), -1, 1) * 32767).astype(np.int16)
    assert (want != (np.clip(audio, -1, 1) * 32767).astype(np.int16)).any()  # where truncation differs

    write_wav_atomic(tmp_path / "whole.wav", audio, contract.SAMPLE_RATE)
    streamed = ProgressiveWav(tmp_path / "streamed.wav", contract.SAMPLE_RATE)
    for piece in np.array_split(audio, 3):
        streamed.write(piece)
    streamed.close()
    whole = (tmp_path / "whole.wav").read_bytes()
    assert (tmp_path / "streamed.wav").read_bytes() == whole
    assert whole[44:] == pcm16(audio) == want.astype("<i2").tobytes()  # raw PCM on stdout: the same samples
    samples, rate = sf.read(str(tmp_path / "whole.wav"), dtype="int16")
    np.testing.assert_array_equal(samples, want)
    assert rate == contract.SAMPLE_RATE and samples[-5:].tolist() == [32767, -32767, 32767, -32767, 32767]


@pytest.mark.parametrize(
    "args,status",
    [
        (["--voice", "nature"], 2),  # no text: argparse
        (["--text", "hi"], 2),  # no speaker
        ([*SPEAK, "--nfe-step", "many"], 2),
        ([*SPEAK, "--url", "ftp://localhost:1"], 2),
        ([*SPEAK, "-H", "no-equals-sign"], 2),
        ([*SPEAK, "--url", "127.0.0.1:9", "--timeout", 10], 1),  # nothing listens there
        (["--reference-audio", "/nonexistent.wav", "--reference-text", "hi", "--text", "hi"], 1),
    ],
    ids=["no_text", "no_speaker", "bad_number", "bad_scheme", "bad_header", "unreachable", "missing_file"],
)
def test_usage_errors_exit_2_and_failures_1(tmp_path, args, status):
    proc = run_client(*args, "--output", tmp_path / "out.wav")
    assert proc.returncode == status, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]  # argparse prints its usage first
    assert len(errors) == 1 and proc.stderr.strip().endswith(errors[0]), proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_readme_and_help_state_the_exit_statuses_the_cli_uses():
    from client.__main__ import EXIT_FAILURE, EXIT_SIGNAL, EXIT_USAGE

    assert (EXIT_FAILURE, EXIT_USAGE, EXIT_SIGNAL) == (1, 2, {signal.SIGINT: 130, signal.SIGTERM: 143})
    clients = (ROOT / "docs" / "clients.md").read_text()  # the guide README.md links for the clients
    for text in [run_client("--help").stdout, clients]:
        said = " ".join(text.split())
        for phrase in ["1 for a failed request", "2 for a usage error", "130 (SIGINT, Ctrl-C)", "143 (SIGTERM)"]:
            assert phrase in said, phrase


def _grpc_env() -> dict[str, str]:
    """This environment without gRPC's own settings: what the CLI does with none set."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GRPC_")}


@pytest.mark.parametrize("args", [["--list-voices"], SPEAK, [*SPEAK, "--stream"]], ids=["list", "unary", "stream"])
def test_tls_against_a_plaintext_port_says_only_the_clients_line(server, tmp_path, args):
    """gRPC's C core logs the failed TLS handshake itself ("ssl_transport_security.cc ... Handshake
    failed"); the CLI silences it and says its own one line."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "client",
            *args,
            "--ssl",
            "--url",
            server.grpc_url,
            "--output",
            str(tmp_path / "out.wav"),
            "--timeout",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=_grpc_env(),
    )
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("client: error: cannot reach"), proc.stderr
    assert list(tmp_path.iterdir()) == []


# Slow enough that a signal lands mid-stream on any machine: 15 chunks of NFE 32.
INTERRUPTED_TEXT = " ".join([LONG_TEXT] * 3)


def _connected_to(pid: int, port: int) -> bool:
    """Whether process `pid` holds an established TCP connection to `port` (its request is under way)."""
    import psutil

    try:
        return any(
            c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
            for c in psutil.Process(pid).net_connections("tcp")
        )
    except psutil.NoSuchProcess:
        return False


def _interactive_signals() -> None:
    """In the child, before exec: SIGINT as a terminal's foreground job has it. A test run started as a
    background job (`make test &`, some CI shells) inherits SIGINT ignored, and the client rightly keeps
    an ignored signal ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "unary"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_request_leaves_no_file_and_says_one_line(server, tmp_path, signum, stream):
    """SIGTERM (a service manager, `timeout`) or SIGINT (Ctrl-C) while the audio arrives: no partial WAV
    is left, one line says so, and the status is 128 + the signal, as a shell reports it. The signal is
    sent once the request is observably under way: the streamed WAV has its first piece, or the unary
    request's connection to the server is established."""
    out = tmp_path / "out.wav"
    # A stream is cancelled on the server; a unary request runs to its end there, so it is kept shorter.
    args = [
        "--url",
        server.grpc_url,
        "--voice",
        VOICE,
        "--text",
        INTERRUPTED_TEXT if stream else LONG_TEXT,
        "--nfe-step",
        32,
        "--output",
        out,
        *(["--stream"] if stream else []),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "client", *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_interactive_signals,
    )
    try:
        port = int(server.grpc_url.rsplit(":", 1)[1])
        if stream:
            wait_for(
                lambda: proc.poll() is not None or (out.exists() and out.stat().st_size > 44),
                "the streamed WAV to hold its first piece",
            )
        else:
            wait_for(
                lambda: proc.poll() is not None or _connected_to(proc.pid, port),
                "the client's connection to the server",
            )
        assert proc.poll() is None, f"the client ended before the signal: {proc.communicate()}"
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signum, stderr
    assert stderr.splitlines() == [stderr.strip()] and "Traceback" not in stderr, stderr
    assert stderr.startswith(f"client: stopped by {signal.Signals(signum).name}: the request was abandoned"), stderr
    assert stdout == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # a benchmark run (the bench CLI against the session's server)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_bench_says_one_line_and_writes_no_report(server, tmp_path, signum):
    """Ctrl-C (or SIGTERM) during `python -m client bench`: one line, 128 + the signal, no half report."""
    out = tmp_path / "bench"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "client",
            "bench",
            "--url",
            server.grpc_url,
            "--concurrency",
            "1",
            "--requests",
            "50",
            "--warmup",
            "1",
            "--nfe-step",
            "4",
            "--output-dir",
            str(out),
            "--no-progress",
        ],
        cwd=ROOT,
        preexec_fn=_interactive_signals,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = int(server.grpc_url.rsplit(":", 1)[1])
        wait_for(lambda: proc.poll() is not None or _connected_to(proc.pid, port), "the bench's connection")
        assert proc.poll() is None, f"the bench ended before the signal: {proc.communicate()}"
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signum, stderr
    assert stderr.splitlines() == [stderr.strip()] and "Traceback" not in stderr, stderr
    assert stderr.startswith(f"bench: stopped by {signal.Signals(signum).name}"), stderr
    assert not out.exists()


def _deadline_exceeded():
    from tritonclient.utils import InferenceServerException

    return InferenceServerException("Deadline Exceeded", status="StatusCode.DEADLINE_EXCEEDED")


@pytest.mark.parametrize("raised", [_deadline_exceeded, lambda: TimeoutError("timed out")], ids=["grpc", "socket"])
def test_a_timeout_is_reported_with_the_status_every_reader_takes_for_a_timeout(raised):
    """The gateway and the RunPod worker sort failures by contract.errors.error_kind: a timeout the client
    describes must read as one there (a 504), not as the request's fault (a 400)."""
    from client.connection import describe_error
    from contract import errors

    message, status = describe_error(raised(), None, 30)
    assert message.startswith("timed out: no answer from the server within 30 s")
    assert errors.error_kind(status, message) == errors.TIMEOUT
