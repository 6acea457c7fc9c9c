"""The launcher against the real tritonserver: serve, report load failures, stop by PID.
(`python -m launcher --check --host` is run in test_security, behind a recording proxy.)"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from conftest import LONG_TEXT, SHORT_TEXT, assert_same_audio, speak, wait_for

import contract
from client import SynthesisError
from launcher import ServerError, TritonServer
from launcher.server import SHM_DIR, free_port, model_error_lines
from pipeline.f5_model import load_vocab

ROOT = Path(__file__).resolve().parent.parent


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
            for model in (contract.TTS_MODEL, contract.STREAM_MODEL, contract.VOCODER_MODEL):
                assert c.is_model_ready(model), model
        meta = h.get_model_metadata(contract.TTS_MODEL)
        assert [i["name"] for i in meta["inputs"]] == [s.name for s in contract.TTS_INPUTS]
        assert [o["name"] for o in meta["outputs"]] == [s.name for s in contract.TTS_OUTPUTS]
        # the vocoder model serves mel -> waveform: Vocos's centred ISTFT gives (frames - 1) * hop
        frames = 50
        mel = np.random.default_rng(0).normal(-4, 1, (1, contract.N_MELS, frames)).astype(np.float32)
        inp = grpcclient.InferInput(contract.MEL, list(mel.shape), "FP32")
        inp.set_data_from_numpy(mel)
        wave = g.infer(contract.VOCODER_MODEL, [inp]).as_numpy(contract.WAVEFORM)
        assert wave.shape == (1, (frames - 1) * contract.HOP_LENGTH)
    finally:
        g.close()
        h.close()


def _failing_repo(tmp_path):
    model = tmp_path / "broken" / "1"
    model.mkdir(parents=True)
    (tmp_path / "broken" / "config.pbtxt").write_text(
        textwrap.dedent("""
        name: "broken"
        backend: "python"
        max_batch_size: 1
        input [ { name: "x" data_type: TYPE_FP32 dims: [ 1 ] } ]
        output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] } ]
        instance_group [ { kind: KIND_CPU } ]
    """)
    )
    (model / "model.py").write_text(
        textwrap.dedent("""
        class TritonPythonModel:
            def initialize(self, args):
                raise FileNotFoundError("weights file /models/broken/1/model.safetensors is missing")
    """)
    )
    return tmp_path


@pytest.mark.slow  # a tritonserver of its own, started directly, to read the failed server's fields
def test_model_that_fails_to_load_stops_the_launcher_with_its_error(tmp_path):
    server = TritonServer(_failing_repo(tmp_path), ready_timeout=60)
    with pytest.raises(ServerError) as err:
        server.start()
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


@pytest.mark.slow  # the launcher CLI starts a tritonserver of its own
def test_launcher_cli_exits_nonzero_with_the_model_error_and_keeps_the_log(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "launcher",
            "--model-repository",
            str(_failing_repo(tmp_path)),
            "--check",
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            "--metrics-port",
            "0",
            "--ready-timeout",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "model.safetensors is missing" in proc.stderr
    log = _temp_log(proc.stderr)  # named in the error, and kept for the post-mortem
    try:
        assert "failed to load 'broken'" in log.read_text()
    finally:
        log.unlink(missing_ok=True)


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
            ip = ipaddress.ip_address(b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4)))
            mapped = getattr(ip, "ipv4_mapped", None)
            found.add(str(mapped or ("0.0.0.0" if ip.is_unspecified else ip)))
    return found


def test_the_server_binds_the_host_it_is_given(server):
    """The session's server binds 127.0.0.1 (conftest); the default, all interfaces, is checked on the
    launcher CLI in test_dead_stub_fails_requests_and_the_launcher_exits."""
    assert server.bound() == (
        f"HTTP 127.0.0.1:{server.http_port}, gRPC 127.0.0.1:{server.grpc_port}, metrics 127.0.0.1:{server.metrics_port}"
    )
    for port in (server.http_port, server.grpc_port, server.metrics_port):
        assert _listening(port) == {"127.0.0.1"}, port
    assert server.http_url.startswith("127.0.0.1:") and server.is_ready()


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
    log = "\n".join(
        [
            'E1129 15:57:32.691100 7613 server.cc:241] "CudaDriverHelper has not been initialized."',
            "E1129 15:57:39.444634031    7613 chttp2_server.cc:1060]  UNKNOWN:No address added out of total 1 resolved "
            "for '0.0.0.0:18001' {children:[UNKNOWN:Address already in use {errno:98}]}",
            'E1129 15:57:39.451184 7613 main.cc:245] "failed to start GRPC service: Unavailable - Socket '
            "'0.0.0.0:18001' already in use \"",
        ]
    )
    lines = model_error_lines(log)
    assert "failed to start GRPC service" in lines[0] and "already in use" in lines[0]
    assert not any("CudaDriverHelper" in ln for ln in lines)


def test_a_second_server_answers_the_same_audio_and_stop_leaves_nothing_behind(
    tiny_repo, server, start_server, reference
):
    """A restart changes no audio; stop() ends the server and its stubs and removes its temp log."""
    second = start_server(tiny_repo)
    assert_same_audio(
        speak(second, reference, LONG_TEXT, seed=99), speak(server, reference, LONG_TEXT, seed=99), rel=1e-6
    )
    group = subprocess.run(["pgrep", "-g", str(second.pid)], capture_output=True, text=True).stdout.split()
    assert len(group) >= 2  # the server and at least one Python stub
    log = second.log_path
    second.stop()
    for p in group:
        assert not _alive(int(p)), f"process {p} of the server's group survived stop()"
    assert not log.exists(), "a clean stop removes the server's temp log"


def test_a_killed_servers_shared_memory_is_removed_and_no_other_servers(tiny_repo, server, start_server):
    """kill -9 of tritonserver leaves Python-backend regions in /dev/shm (RAM until reboot); stop() removes
    exactly those of its own server (its own shm-region-prefix-name), never a live server's.

    Whether a region outlives the kill is not this test's to rely on (no process of the killed server
    unlinks one, yet one CI machine found none left), so a stand-in region named as the killed server
    names its own is planted beside whatever the kill left: stop() must remove it too."""
    live = server.shm_regions()
    assert live and all(p.name.startswith(server.shm_prefix) for p in live)
    second = start_server(tiny_repo)
    assert second.shm_prefix != server.shm_prefix and second.shm_regions()
    os.killpg(second.pid, signal.SIGKILL)  # the server, its stubs and their watchers at once, as an OOM kill
    second.process.wait()
    wait_for(lambda: not second.stubs(), "the killed server's stubs to exit", timeout=60)
    stand_in = Path("/dev/shm") / f"{second.shm_prefix}stand_in"
    stand_in.write_bytes(b"\0" * 4096)
    leaked = second.shm_regions()
    assert stand_in in leaked
    assert second.stop() == -signal.SIGKILL
    second.log_path.unlink()  # kept after a failure, for a post-mortem this test does not need
    assert not any(p.exists() for p in leaked) and second.shm_regions() == []
    assert all(p.exists() for p in live) and server.is_ready()


def test_free_ports_are_distinct_and_never_ones_an_outgoing_connection_can_take():
    """Port 0 picks: outgoing connections take ephemeral ports, so a pick from that range could be taken
    between the pick and tritonserver's bind (seconds later); and three picks for one server must differ."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(1024 <= port < low for port in ports), sorted(ports)[-5:]


def test_missing_repository_is_reported(tmp_path):
    with pytest.raises(ServerError, match="is not a directory"):
        TritonServer(tmp_path / "nope").start()


def test_error_lines_put_the_model_failure_first():
    log = "\n".join(
        [
            "I1128 model_lifecycle.cc] loading: m:1",
            "Error: Failed to initialize NVML",
            "E1128 12:00:00.1 1 model_lifecycle.cc:642] \"failed to load 'm' version 1: Internal: boom\\nAt:\"",
            "error: creating server: Internal - failed to load all models",
        ]
    )
    lines = model_error_lines(log)
    assert "failed to load 'm'" in lines[0] and "boom" in lines[0]
    assert not any("NVML" in ln for ln in lines)


def _copy(repo: Path, dest: Path) -> Path:
    shutil.copytree(repo, dest)
    for p in dest.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dest


# (model, file, what replaces it: None deletes it, bytes, or a function of its text; the problem named)
BREAKAGES = {
    "missing_weights": (contract.TTS_MODEL, contract.TTS_WEIGHTS_FILE, None, "is missing"),
    "corrupt_weights": (
        contract.TTS_MODEL,
        contract.TTS_WEIGHTS_FILE,
        b"\x00\x01garbage" * 100,
        "is not a readable safetensors file",
    ),
    "wrong_vocab_size": (
        contract.TTS_MODEL,
        contract.TTS_VOCAB_FILE,
        lambda text: "".join(text.splitlines(keepends=True)[:100]),
        "vocab size mismatch: the weights were trained with {trained} tokens, the vocab file has 100",
    ),
    "missing_vocoder": (contract.VOCODER_MODEL, contract.VOCODER_ONNX_FILE, None, "is missing"),
    "corrupt_vocoder": (contract.VOCODER_MODEL, contract.VOCODER_ONNX_FILE, b"not onnx", contract.VOCODER_ONNX_FILE),
}


@pytest.mark.parametrize("case", list(BREAKAGES))
def test_a_broken_repository_fails_the_start_naming_the_file(tiny_repo, tmp_path, start_server, case):
    """The model's own load error, not a readiness timeout. The container entrypoint and the RunPod
    worker start tritonserver with these flags (test_deploy, test_runpod check their own preflight)."""
    model, name, change, problem = BREAKAGES[case]
    repo = _copy(tiny_repo, tmp_path / "repo")
    rel = f"{model}/{contract.MODEL_VERSION}/{name}"
    _, trained = load_vocab(repo / contract.TTS_MODEL / contract.MODEL_VERSION / contract.TTS_VOCAB_FILE)
    problem = problem.format(trained=trained)
    if change is None:
        (repo / rel).unlink()
    elif isinstance(change, bytes):
        (repo / rel).write_bytes(change)
    else:
        (repo / rel).write_text(change((repo / rel).read_text()))
    with pytest.raises(ServerError) as err:
        start_server(repo, ready_timeout=120)
    message = str(err.value)
    assert "exited with code" in message, message
    assert str(repo / rel) in message and problem in message, message


def _launch(repo: Path) -> tuple[subprocess.Popen, tuple[int, int, int]]:
    """`python -m launcher` on free ports, in a session of its own; returns it and its HTTP, gRPC and
    metrics ports."""
    ports = free_port(), free_port(), free_port()
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "launcher",
            "--model-repository",
            str(repo),
            *(f"--{name}-port={port}" for name, port in zip(("http", "grpc", "metrics"), ports)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    ), ports


@pytest.mark.slow  # the launcher CLI starts a tritonserver of its own
def test_dead_stub_fails_requests_and_the_launcher_exits(tiny_repo, reference):
    """Triton 2.51 neither restarts a dead Python stub nor reports the model not ready: the launcher's
    watchdog stops the server and exits 3 (the container's STUB_WATCHDOG=1 runs this launcher)."""
    launcher_process, (http, grpc, metrics) = _launch(tiny_repo)
    try:
        server = TritonServer(tiny_repo, http_port=http, grpc_port=grpc, metrics_port=metrics)
        ready = launcher_process.stdout.readline()  # once printed, the launcher has seen its stubs
        assert ready.startswith("tritonserver ready"), ready
        # the default host: all interfaces
        assert f"HTTP 0.0.0.0:{http}, gRPC 0.0.0.0:{grpc}, metrics 0.0.0.0:{metrics} (all interfaces)" in ready
        assert _listening(http) == {"0.0.0.0"}
        triton = subprocess.run(
            ["pgrep", "-P", str(launcher_process.pid)], capture_output=True, text=True
        ).stdout.split()
        assert len(triton) == 1
        command = Path(f"/proc/{triton[0]}/cmdline").read_bytes().split(b"\0")
        prefix = next(a.decode().split("shm-region-prefix-name=")[1] for a in command if b"shm-region-prefix" in a)
        assert list(SHM_DIR.glob(f"{prefix}*"))
        stubs = [
            int(p)
            for p in subprocess.run(
                ["pgrep", "-P", triton[0], "-f", f"{contract.TTS_MODEL}/1/model.py"], capture_output=True, text=True
            ).stdout.split()
        ]
        assert len(stubs) == 1
        # The watchdog (polling each second) would stop the server before the request: pause it meanwhile.
        os.kill(launcher_process.pid, signal.SIGSTOP)
        try:
            os.kill(stubs[0], signal.SIGKILL)
            with pytest.raises(SynthesisError) as err:  # reported per request, with the instance named
                speak(server, reference, SHORT_TEXT)
        finally:
            os.kill(launcher_process.pid, signal.SIGCONT)
        assert "f5_tts_0_0" in str(err.value) and "not healthy" in str(err.value)
        _, stderr = launcher_process.communicate(timeout=60)
        assert launcher_process.returncode == 3
        assert "the Python stub of f5_tts_0_0 died" in stderr
        # the server it stopped (killed: with a dead stub it hangs on SIGTERM) left no shared memory
        assert list(SHM_DIR.glob(f"{prefix}*")) == []
    finally:
        if launcher_process.poll() is None:
            os.killpg(launcher_process.pid, signal.SIGKILL)
            launcher_process.wait()
    assert subprocess.run(["pgrep", "-f", f"tritonserver.*--http-port={http}"]).returncode == 1


@pytest.mark.slow  # the launcher CLI starts a tritonserver of its own
def test_a_stop_while_the_models_load_stops_tritonserver_too(tiny_repo):
    """SIGTERM (an orchestrator scaling down a pod that is still starting) before the server is
    ready: the launcher stops tritonserver itself and exits 0, instead of dying and leaving it to the
    kernel's parent-death SIGKILL."""
    launcher_process, (http, grpc, metrics) = _launch(tiny_repo)
    try:

        def children(pid, name=None):
            return subprocess.run(
                ["pgrep", "-P", str(pid), *([name] if name else [])], capture_output=True, text=True
            ).stdout.split()

        triton = wait_for(lambda: children(launcher_process.pid, "tritonserver"), "the launcher's tritonserver", 60)
        wait_for(lambda: children(triton[0]), "a Python stub: the models are loading", timeout=60)
        launcher_process.send_signal(signal.SIGTERM)
        stdout, stderr = launcher_process.communicate(timeout=60)
    finally:
        if launcher_process.poll() is None:
            os.killpg(launcher_process.pid, signal.SIGKILL)
            launcher_process.wait()
    assert "tritonserver ready" not in stdout, "the stop came after the start, not during it"
    assert launcher_process.returncode == 0, stderr[-3000:]
    assert "stopped before tritonserver was ready" in stderr, stderr[-3000:]
    assert not _alive(int(triton[0]))
    assert "ignored SIGTERM" not in stderr  # stopped by its SIGTERM, not killed after the grace
    assert subprocess.run(["pgrep", "-f", f"tritonserver.*--http-port={http}"]).returncode == 1


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_a_stub_whose_server_was_killed_exits_on_its_own(tmp_path):
    """pipeline.lifeline, started by every model's initialize(): the 'server' here is a process that starts
    a 'stub' and is then SIGKILLed, as a launcher's parent-death signal kills tritonserver. The stub then
    blocks holding the GIL (as a stub waiting on its dead server can), so nothing inside it can run: it
    must go all the same."""
    ready = tmp_path / "stub.pid"
    stub_py = tmp_path / "stub.py"
    stub_py.write_text(
        "import os, time\n"
        "from pipeline.lifeline import exit_when_orphaned\n"
        "exit_when_orphaned(poll_s=0.05)\n"
        f"open({str(ready)!r} + '.tmp', 'w').write(str(os.getpid()))\n"
        f"os.rename({str(ready)!r} + '.tmp', {str(ready)!r})\n"
        "import ctypes\n"
        "ctypes.PyDLL(None).pause()  # PyDLL keeps the GIL for the call: no thread of this process runs\n"
    )
    server_py = tmp_path / "server.py"
    server_py.write_text(
        f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, {str(stub_py)!r}])\ntime.sleep(3600)\n"
    )
    server = subprocess.Popen(
        [sys.executable, str(server_py)],
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    stub = None
    try:
        stub = int(wait_for(lambda: ready.exists() and ready.read_text(), "the stub to start"))
        assert _alive(stub)
        server.kill()
        server.wait()
        wait_for(lambda: not _alive(stub), "the orphaned stub to exit", timeout=60)
    finally:
        server.kill()
        if stub is not None and _alive(stub):
            os.kill(stub, signal.SIGKILL)
