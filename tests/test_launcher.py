"""The launcher against the real tritonserver: serve, report load failures, stop by PID."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

import contract
from launcher import ServerError, TritonServer
from launcher.server import model_error_lines

from conftest import speak


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def test_exported_repository_is_served_over_grpc_and_http(server):
    g = grpcclient.InferenceServerClient(server.grpc_url)
    h = httpclient.InferenceServerClient(server.http_url)
    try:
        for c in (g, h):
            assert c.is_server_live() and c.is_server_ready()
            assert c.is_model_ready(contract.TTS_MODEL) and c.is_model_ready(contract.VOCODER_MODEL)
        meta = h.get_model_metadata(contract.TTS_MODEL)
        assert [i["name"] for i in meta["inputs"]] == [s.name for s in contract.TTS_INPUTS]
        assert [o["name"] for o in meta["outputs"]] == [s.name for s in contract.TTS_OUTPUTS]
    finally:
        g.close()
        h.close()


def test_grpc_and_http_answer_the_same_audio(server, reference):
    via_grpc = speak(server, reference, protocol="grpc", seed=5)
    via_http = speak(server, reference, protocol="http", seed=5)
    assert via_grpc.size > contract.SAMPLE_RATE // 2 and np.isfinite(via_grpc).all()
    np.testing.assert_array_equal(via_grpc, via_http)


def test_vocoder_model_serves_mel_to_waveform(server):
    mel = np.random.default_rng(0).normal(-4, 1, (1, contract.N_MELS, 50)).astype(np.float32)
    c = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        inp = grpcclient.InferInput(contract.MEL, list(mel.shape), "FP32")
        inp.set_data_from_numpy(mel)
        wave = c.infer(contract.VOCODER_MODEL, [inp]).as_numpy(contract.WAVEFORM)
    finally:
        c.close()
    assert wave.shape == (1, 49 * contract.HOP_LENGTH)  # Vocos's centred ISTFT: (frames - 1) * hop


def _failing_repo(tmp_path):
    model = tmp_path / "broken" / "1"
    model.mkdir(parents=True)
    (tmp_path / "broken" / "config.pbtxt").write_text(textwrap.dedent("""
        name: "broken"
        backend: "python"
        max_batch_size: 1
        input [ { name: "x" data_type: TYPE_FP32 dims: [ 1 ] } ]
        output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] } ]
        instance_group [ { kind: KIND_CPU } ]
    """))
    (model / "model.py").write_text(textwrap.dedent("""
        class TritonPythonModel:
            def initialize(self, args):
                raise FileNotFoundError("weights file /models/broken/1/model.safetensors is missing")
    """))
    return tmp_path


def test_model_that_fails_to_load_stops_the_launcher_with_its_error(tmp_path):
    server = TritonServer(_failing_repo(tmp_path), ready_timeout=60)
    started = time.monotonic()
    with pytest.raises(ServerError) as err:
        server.start()
    assert time.monotonic() - started < 60
    message = str(err.value)
    assert "exited with code" in message  # not a generic readiness timeout
    assert "failed to load 'broken'" in message
    assert "model.safetensors is missing" in message
    assert server.process is None


def test_launcher_cli_exits_nonzero_with_the_model_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "launcher", "--model-repository", str(_failing_repo(tmp_path)), "--check",
         "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", "--ready-timeout", "60"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "model.safetensors is missing" in proc.stderr


def test_launcher_cli_check_succeeds_on_the_exported_repository(tiny_repo):
    proc = subprocess.run(
        [sys.executable, "-m", "launcher", "--model-repository", str(tiny_repo), "--check",
         "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"],
        capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "tritonserver ready" in proc.stdout


def test_stop_terminates_the_server_and_its_stubs(tiny_repo):
    server = TritonServer(tiny_repo).start()
    pid = server.pid
    stubs = subprocess.run(["pgrep", "-g", str(pid)], capture_output=True, text=True).stdout.split()
    assert len(stubs) >= 2  # the server and at least one Python stub
    server.stop()
    for p in stubs:
        assert not _alive(int(p)), f"process {p} of the server's group survived stop()"


def test_missing_repository_is_reported(tmp_path):
    with pytest.raises(ServerError, match="is not a directory"):
        TritonServer(tmp_path / "nope").start()


def test_error_lines_put_the_model_failure_first():
    log = "\n".join([
        "I1128 model_lifecycle.cc] loading: m:1",
        "Error: Failed to initialize NVML",
        "E1128 12:00:00.1 1 model_lifecycle.cc:642] \"failed to load 'm' version 1: Internal: boom\\nAt:\"",
        "error: creating server: Internal - failed to load all models",
    ])
    lines = model_error_lines(log)
    assert "failed to load 'm'" in lines[0] and "boom" in lines[0]
    assert not any("NVML" in ln for ln in lines)


@pytest.mark.parametrize("missing", ["f5_tts/1/model.safetensors", "vocoder/1/vocos.onnx"])
def test_missing_weights_fail_the_start_naming_the_file(tiny_repo, tmp_path, missing):
    import shutil

    repo = tmp_path / "repo"
    shutil.copytree(tiny_repo, repo)
    (repo / missing).chmod(0o644)
    (repo / missing).unlink()
    started = time.monotonic()
    with pytest.raises(ServerError) as err:
        TritonServer(repo, ready_timeout=120).start()
    assert time.monotonic() - started < 120
    assert f"{repo / missing} is missing" in str(err.value)
