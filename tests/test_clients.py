"""Clients against the real server: CLI, Python API (sync + asyncio), curl JSON, bench, perf_analyzer."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import contract
from client import SynthesisError, SynthesisOptions, synthesize, synthesize_async
from export.repository import REFERENCE_TEXT, REFERENCE_WAV

from conftest import SHORT_TEXT

ROOT = Path(__file__).resolve().parent.parent


def run_client(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "client", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_client_package_does_not_import_torch():
    code = ("import sys, client, client.api, client.bench, client.request, client.__main__; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_cli_writes_a_wav(server, tmp_path, protocol):
    url = server.grpc_url if protocol == "grpc" else server.http_url
    out = tmp_path / f"{protocol}.wav"
    proc = run_client("--protocol", protocol, "--url", url, "--reference-audio", REFERENCE_WAV,
                      "--reference-text", REFERENCE_TEXT, "--text", SHORT_TEXT, "--seed", 3, "--nfe-step", 4,
                      "--output", out, "-H", "x-request-id=test-1")
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
    proc = run_client("--url", server.grpc_url, "--reference-audio", ref_path, "--reference-text", REFERENCE_TEXT,
                      "--text-file", text, "--nfe-step", 4, "--output", out)
    assert proc.returncode == 0, proc.stderr
    assert sf.info(str(out)).samplerate == contract.SAMPLE_RATE


def test_cli_reports_the_server_error_and_writes_nothing(server, tmp_path):
    out = tmp_path / "out.wav"
    proc = run_client("--url", server.grpc_url, "--reference-audio", REFERENCE_WAV, "--reference-text",
                      REFERENCE_TEXT, "--text", SHORT_TEXT, "--nfe-step", 0, "--output", out)
    assert proc.returncode == 1
    assert "'nfe_step' is 0; allowed range is [1, 128]" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_unreachable_server_fails_cleanly(tmp_path):
    out = tmp_path / "out.wav"
    proc = run_client("--protocol", "http", "--url", "127.0.0.1:9", "--reference-audio", REFERENCE_WAV,
                      "--reference-text", REFERENCE_TEXT, "--text", SHORT_TEXT, "--output", out, "--timeout", 10)
    assert proc.returncode == 1 and "client: error:" in proc.stderr
    assert not out.exists()


def test_python_api_sync_both_protocols_and_asyncio_agree(server, reference):
    import tritonclient.grpc.aio as aio

    options = SynthesisOptions(seed=21, nfe_step=4)
    args = (SHORT_TEXT, reference.audio, reference.sample_rate, reference.text)
    via_grpc, rate = synthesize(*args, url=server.grpc_url, protocol="grpc", options=options)
    via_http, _ = synthesize(*args, url=server.http_url, protocol="http", options=options)

    async def run_async():
        client = aio.InferenceServerClient(server.grpc_url)
        try:
            return await synthesize_async(*args, client=client, options=options)
        finally:
            await client.close()

    via_async, _ = asyncio.run(run_async())
    assert rate == contract.SAMPLE_RATE
    np.testing.assert_array_equal(via_grpc, via_http)
    np.testing.assert_array_equal(via_grpc, via_async)
    with pytest.raises(SynthesisError) as err:
        synthesize("  ", reference.audio, reference.sample_rate, reference.text, url=server.grpc_url)
    assert err.value.status == "StatusCode.INVALID_ARGUMENT"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_json_request_from_the_readme(server, tmp_path, reference):
    body = tmp_path / "request.json"
    proc = run_client("--reference-audio", REFERENCE_WAV, "--reference-text", REFERENCE_TEXT, "--text", SHORT_TEXT,
                      "--seed", 5, "--nfe-step", 4, "--write-request-json", body)
    assert proc.returncode == 0, proc.stderr
    curl = subprocess.run(["curl", "-sS", "--fail-with-body", "-X", "POST", "-H", "Content-Type: application/json",
                           f"http://{server.http_url}/v2/models/f5_tts/infer", "-d", f"@{body}"],
                          capture_output=True, text=True, timeout=120)
    assert curl.returncode == 0, curl.stdout + curl.stderr
    outputs = {o["name"]: o for o in json.loads(curl.stdout)["outputs"]}
    wave = np.array(outputs[contract.WAVEFORM]["data"], dtype=np.float32)
    assert outputs[contract.SAMPLE_RATE_OUT]["data"] == [contract.SAMPLE_RATE]
    want, _ = synthesize(SHORT_TEXT, reference.audio, reference.sample_rate, reference.text, url=server.grpc_url,
                         options=SynthesisOptions(seed=5, nfe_step=4))
    np.testing.assert_allclose(wave, want, atol=1e-6)


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_reports_json_and_plots(server, tmp_path):
    out = tmp_path / "bench"
    proc = run_client("bench", "--url", server.grpc_url, "--concurrency", "1,3", "--requests", 3, "--warmup", 1,
                      "--nfe-step", 4, "--output-dir", out, "--no-progress")
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


def test_bench_reads_a_jsonl_manifest(server, tmp_path):
    shutil.copy(REFERENCE_WAV, tmp_path / "ref.wav")
    manifest = tmp_path / "requests.jsonl"
    manifest.write_text("\n".join(json.dumps({"reference_audio": "ref.wav", "reference_text": REFERENCE_TEXT,
                                              "text": t}) for t in ["Hello there.", "General Kenobi."]) + "\n")
    proc = run_client("bench", "--url", server.grpc_url, "--manifest", manifest, "--concurrency", "2",
                      "--requests", 2, "--warmup", 0, "--nfe-step", 2, "--output-dir", tmp_path / "b",
                      "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "b" / "report.json").read_text())["levels"][0]["ok"] == 2


def test_committed_perf_analyzer_data_is_what_the_generator_writes(tmp_path):
    proc = subprocess.run([sys.executable, "perf_analyzer_configs/generate_input_data.py", "--example",
                           "--output", str(tmp_path / "data.json")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    committed = ROOT / "perf_analyzer_configs" / "data" / "basic_en.json"
    assert (tmp_path / "data.json").read_text() == committed.read_text()
    entry = json.loads(committed.read_text())["data"][0]
    audio = entry[contract.REFERENCE_AUDIO]
    assert audio["shape"] == [1, len(audio["content"])]
    assert all(isinstance(v, float) for v in audio["content"])  # perf_analyzer rejects ints for FP32


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_perf_analyzer_measures_the_server(server, tmp_path, protocol):
    url = server.grpc_url if protocol == "grpc" else server.http_url
    csv = tmp_path / f"{protocol}.csv"
    env = dict(os.environ, REQUEST_COUNT="4", OUT=str(csv),
               PERF_ANALYZER=str(Path(sys.executable).parent / "perf_analyzer"))
    proc = subprocess.run([str(ROOT / "perf_analyzer_configs" / "run.sh"), protocol, url, "1 2"],
                          capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "error" not in out.lower() and "failed" not in out.lower(), out
    throughputs = [float(x) for x in re.findall(r"Throughput: ([0-9.]+) infer/sec", out)]
    assert len(throughputs) == 2 and all(t > 0 for t in throughputs), out
    assert re.findall(r"Request count: (\d+)", out) == ["4", "4"]
    rows = csv.read_text().splitlines()
    assert rows[0].startswith("Concurrency") and [r.split(",")[0] for r in rows[1:]] == ["1", "2"]
