"""The launcher against the real tritonserver: serve, report load failures, stop by PID."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

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
    assert f"server log {server.log_path}" in message and server.log_path.exists()  # kept after a failure
    server.log_path.unlink()


def _temp_log(text: str) -> Path:
    found = re.findall(r"(/\S*/tritonserver-\S+?\.log)", text)
    assert found, text
    return Path(found[0])


def test_launcher_cli_exits_nonzero_with_the_model_error_and_keeps_the_log(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "launcher", "--model-repository", str(_failing_repo(tmp_path)), "--check",
         "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", "--ready-timeout", "60"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "model.safetensors is missing" in proc.stderr
    log = _temp_log(proc.stderr)  # named in the error, and kept for the post-mortem
    try:
        assert "failed to load 'broken'" in log.read_text()
    finally:
        log.unlink(missing_ok=True)


def test_launcher_cli_check_binds_the_host_it_is_given_and_removes_its_log(tiny_repo):
    proc = subprocess.run(
        [sys.executable, "-m", "launcher", "--model-repository", str(tiny_repo), "--check", "--host", "127.0.0.1",
         "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"],
        capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    ready = [ln for ln in proc.stdout.splitlines() if ln.startswith("tritonserver ready")]
    assert ready and re.search(r"HTTP 127\.0\.0\.1:\d+, gRPC 127\.0\.0\.1:\d+, metrics 127\.0\.0\.1:\d+", ready[0])
    assert "all interfaces" not in ready[0]
    assert not _temp_log(ready[0]).exists(), "a clean stop leaves no temp log behind"


def _listening(port: int) -> set[str]:
    """Addresses a socket LISTENs on at `port` (/proc/net/tcp and tcp6; gRPC binds IPv6 sockets)."""
    import ipaddress

    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:
                continue
            raw = bytes.fromhex(address)  # 32-bit words in host (little-endian) order
            ip = ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))
            mapped = getattr(ip, "ipv4_mapped", None)
            found.add(str(mapped or ("0.0.0.0" if ip.is_unspecified else ip)))
    return found


def test_the_server_binds_the_host_it_is_given(tiny_repo, server):
    assert server.bound().endswith("(all interfaces)") and _listening(server.http_port) == {"0.0.0.0"}
    local = TritonServer(tiny_repo, host="127.0.0.1").start()
    try:
        for port in (local.http_port, local.grpc_port, local.metrics_port):
            assert _listening(port) == {"127.0.0.1"}, port
        assert local.http_url.startswith("127.0.0.1:") and local.is_ready()
    finally:
        local.stop()


@pytest.mark.parametrize("which", ["http", "grpc"])
def test_a_port_in_use_is_the_first_thing_said(tiny_repo, which):
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = TritonServer(tiny_repo, ready_timeout=60, **{f"{which}_port": port})
        with pytest.raises(ServerError) as err:
            server.start()
    label = {"http": "HTTP", "grpc": "gRPC"}[which]
    assert str(err.value).startswith(f"{label} port {port} on 0.0.0.0 is already in use"), str(err.value)
    assert "CudaDriverHelper" not in str(err.value)


def test_error_lines_lead_with_the_port_in_use_not_gpu_noise():
    log = "\n".join([
        'E1129 15:57:32.691100 7613 server.cc:241] "CudaDriverHelper has not been initialized."',
        "E1129 15:57:39.444634031    7613 chttp2_server.cc:1060]  UNKNOWN:No address added out of total 1 resolved "
        "for '0.0.0.0:18001' {children:[UNKNOWN:Address already in use {errno:98}]}",
        'E1129 15:57:39.451184 7613 main.cc:245] "failed to start GRPC service: Unavailable - Socket '
        "'0.0.0.0:18001' already in use \"",
    ])
    lines = model_error_lines(log)
    assert "failed to start GRPC service" in lines[0] and "already in use" in lines[0]
    assert not any("CudaDriverHelper" in ln for ln in lines)


def test_stop_terminates_the_server_and_its_stubs(tiny_repo):
    server = TritonServer(tiny_repo).start()
    pid = server.pid
    stubs = subprocess.run(["pgrep", "-g", str(pid)], capture_output=True, text=True).stdout.split()
    assert len(stubs) >= 2  # the server and at least one Python stub
    log = server.log_path
    server.stop()
    for p in stubs:
        assert not _alive(int(p)), f"process {p} of the server's group survived stop()"
    assert not log.exists(), "a clean stop removes the server's temp log"


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
