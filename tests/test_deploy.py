"""Deployment files: hadolint, compose and Kubernetes checks, and the container entrypoint run
here against the bundled tritonserver with the same flags (success and each failure path)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import speak, wait_for

from launcher import TritonServer
from launcher.server import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
ENTRYPOINT = DOCKER / "entrypoint.py"


def test_hadolint_passes():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    proc = subprocess.run([hadolint, str(DOCKER / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_is_pinned_non_root_healthchecked():
    text = (DOCKER / "Dockerfile").read_text()
    release = re.search(r"ARG TRITON_RELEASE=(\S+)", text).group(1)
    assert re.fullmatch(r"\d\d\.\d\d", release)
    assert "FROM nvcr.io/nvidia/tritonserver:${TRITON_RELEASE}-py3" in text
    assert "python3 -m pip install -r requirements/gpu.txt" in text
    assert re.search(r"^USER 1000$", text, re.M)
    assert "HEALTHCHECK" in text and "/v2/health/ready" in text
    assert 'ENTRYPOINT ["python3", "/opt/f5-tts-triton/docker/entrypoint.py"]' in text
    assert "apt-get" not in text  # no build tools are left in the image
    # the heavy dependency layer comes before the project's source, for caching
    assert text.index("requirements/gpu.txt") < text.index("COPY pipeline/")


def test_compose_reserves_a_gpu_shm_volumes_and_ports():
    svc = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]["triton"]
    devices = svc["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert svc["shm_size"]
    assert any(v.endswith(":/models") for v in svc["volumes"])
    assert {p.split(":")[1].split()[0] for p in svc["ports"]} == {"8000", "8001", "8002"}
    assert "/v2/health/ready" in " ".join(svc["healthcheck"]["test"])


def _k8s(name):
    return yaml.safe_load((DOCKER / "k8s" / name).read_text())


def test_kubernetes_deployment_probes_resources_ports():
    dep = _k8s("deployment.yaml")
    assert dep["kind"] == "Deployment" and dep["spec"]["replicas"] >= 2
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    c = pod["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert c["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["resources"]["requests"]["nvidia.com/gpu"] == 1 and c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {p["containerPort"] for p in c["ports"]} == {8000, 8001, 8002}
    assert any(v.get("emptyDir", {}).get("medium") == "Memory" for v in pod["volumes"])  # /dev/shm


def test_kubernetes_service_and_queue_time_autoscaling():
    svc = _k8s("service.yaml")
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {
        "http": 8000,
        "grpc": 8001,
        "metrics": 8002,
        "openai": 8080,
    }
    hpa = _k8s("hpa.yaml")
    assert hpa["kind"] == "HorizontalPodAutoscaler"
    assert hpa["spec"]["scaleTargetRef"]["name"] == _k8s("deployment.yaml")["metadata"]["name"]
    assert "queue" in hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    assert "nv_inference_queue_duration_us" in (DOCKER / "k8s" / "hpa.yaml").read_text()


# --- the gateway beside tritonserver -------------------------------------------------------


def test_dockerfile_ships_the_gateway():
    text = (DOCKER / "Dockerfile").read_text()
    assert "COPY gateway/ gateway/" in text
    assert "mkdir -p /models /voices && chown 1000 /models /voices" in text  # the voice library, writable
    assert re.search(r"^EXPOSE 8000 8001 8002 8080$", text, re.M)


def test_compose_runs_the_gateway_beside_triton():
    from gateway.settings import parse_args

    services = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]
    gw, triton = services["gateway"], services["triton"]
    assert gw["image"] == triton["image"] and "build" not in gw  # the same image, its own command
    assert gw["entrypoint"] == ["python3", "-m", "gateway"]
    settings = parse_args(gw["command"], env={})  # the command line the gateway accepts
    assert settings.triton_urls == ("triton:8001",) and settings.host == "0.0.0.0"
    assert f"{settings.port}:{settings.port}" in gw["ports"]
    assert any(v.endswith(f":{settings.voices_dir}") for v in gw["volumes"])
    assert gw["depends_on"]["triton"]["condition"] == "service_healthy"  # starts once Triton is ready
    assert f"http://127.0.0.1:{settings.port}/health/ready" in " ".join(gw["healthcheck"]["test"])
    assert "F5_GATEWAY_API_KEY" in gw["environment"]


def test_kubernetes_runs_the_gateway_in_each_pod_ready_with_triton():
    from gateway.settings import parse_args

    pod = _k8s("deployment.yaml")["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    triton, gw = containers["triton"], containers["gateway"]
    assert gw["image"] == triton["image"] and gw["command"] == ["python3", "-m", "gateway"]
    settings = parse_args(gw["args"], env={})
    grpc = next(p["containerPort"] for p in triton["ports"] if p["name"] == "grpc")
    assert settings.triton_urls == (f"127.0.0.1:{grpc}",) and settings.host == "0.0.0.0"
    assert [p["containerPort"] for p in gw["ports"]] == [settings.port]
    # the gateway's readiness is Triton's (and both speech models'): no traffic before the warm-up
    assert gw["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": gw["ports"][0]["name"]}
    assert gw["livenessProbe"]["httpGet"]["path"] == "/health/live"
    mount = next(m for m in gw["volumeMounts"] if m["mountPath"] == str(settings.voices_dir))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert "persistentVolumeClaim" in volume  # shared by the replicas
    key = next(e for e in gw["env"] if e["name"] == "F5_GATEWAY_API_KEY")
    assert key["valueFrom"]["secretKeyRef"]["optional"] is True
    service = {p["name"]: p for p in _k8s("service.yaml")["spec"]["ports"]}
    assert service["openai"]["port"] == settings.port and service["openai"]["targetPort"] == gw["ports"][0]["name"]


# --- the entrypoint, for real ------------------------------------------------------------


def _env(repo: Path, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("F5_", "TRITON_"))}
    env.update(
        MODEL_REPOSITORY=str(repo),
        HTTP_PORT=str(free_port()),
        GRPC_PORT=str(free_port()),
        METRICS_PORT=str(free_port()),
        **extra,
    )
    return env


def _run(env, timeout=120):
    return subprocess.run([sys.executable, str(ENTRYPOINT)], env=env, capture_output=True, text=True, timeout=timeout)


def _serve_then_stop(env, reference, timeout=180, ready_line: str | None = None):
    """Start the entrypoint, speak once, SIGTERM it; returns the audio and the entrypoint's output.
    With `ready_line`, the stop waits until a line of the output starts with it too."""
    proc = subprocess.Popen(
        [sys.executable, str(ENTRYPOINT)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []

    def read():
        for line in proc.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        server = TritonServer(
            Path(env["MODEL_REPOSITORY"]),
            http_port=int(env["HTTP_PORT"]),
            grpc_port=int(env["GRPC_PORT"]),
            metrics_port=int(env["METRICS_PORT"]),
        )

        def ready():
            assert proc.poll() is None, "".join(lines)
            return server.is_ready() and (ready_line is None or any(ln.startswith(ready_line) for ln in lines))

        wait_for(ready, "the entrypoint's server to be ready", timeout=timeout, every=0.5)
        wave = speak(server, reference, nfe_step=2)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.join(timeout=10)
    return wave, "".join(lines)


@pytest.mark.slow  # deployment
@pytest.mark.parametrize("watchdog", [False, True], ids=["exec_tritonserver", "STUB_WATCHDOG"])
def test_entrypoint_serves_a_mounted_repository(tiny_repo, reference, watchdog):
    """tritonserver exec'd with the launcher's flags (a model that fails to load then stops the start:
    test_launcher); with STUB_WATCHDOG=1 the launcher instead, whose watchdog test_launcher checks."""
    launcher_ready = "tritonserver ready: pid "  # the launcher's line, printed once it has seen its stubs
    wave, out = _serve_then_stop(
        _env(tiny_repo, **({"STUB_WATCHDOG": "1"} if watchdog else {})),
        reference,
        ready_line=launcher_ready if watchdog else None,
    )
    assert wave.size > 0
    assert "entrypoint: model F5TTS_v1_Base_tiny," in out and "dtype fp32" in out and "GPU none" in out
    prefix = "entrypoint: exec (with stub watchdog) " if watchdog else "entrypoint: exec "
    exec_line = next(line for line in out.splitlines() if line.startswith(prefix))
    for flag in ("--exit-on-error=true", "--strict-readiness=true", "--model-control-mode=none"):
        assert flag in exec_line
    if watchdog:
        assert out.count(launcher_ready) == 1


@pytest.mark.slow  # deployment
def test_entrypoint_exports_on_first_start(tiny, tmp_path, reference):
    repo = tmp_path / "volume"
    repo.mkdir()
    env = _env(repo, F5_CHECKPOINT=str(tiny.checkpoint), F5_MODEL_CONFIG=str(tiny.config), F5_VOCODER=str(tiny.vocoder))
    volume = repo.stat().st_ino
    wave, out = _serve_then_stop(env, reference)
    assert "exporting" in out and (repo / "manifest.json").is_file() and wave.size > 0
    assert repo.stat().st_ino == volume  # a mount point cannot be replaced: the export is moved into it
    assert sorted(p.name for p in repo.iterdir()) == ["f5_tts", "f5_tts_stream", "manifest.json", "vocoder"]


@pytest.mark.slow
def test_entrypoint_exports_the_released_checkpoint_from_the_hub_cache(released_hub_cache, tmp_path, reference):
    """No repository and no F5_CHECKPOINT: the same default export as `python -m export` and the demo."""
    repo = tmp_path / "volume"
    repo.mkdir()
    env = _env(repo, HF_HOME=str(released_hub_cache), HF_HUB_OFFLINE="1")
    wave, out = _serve_then_stop(env, reference, timeout=900)
    assert f"exporting the released F5TTS_v1_Base (Hugging Face cache or hub) into {repo}" in out
    assert "entrypoint: model F5TTS_v1_Base, dtype fp32" in out  # not the demo model
    manifest = json.loads((repo / "manifest.json").read_text())
    model = manifest["models"]["f5_tts"]
    assert model["model"] == "F5TTS_v1_Base" and model["demo_model"] is False
    assert model["sources"]["checkpoint"]["path"].startswith(str(released_hub_cache))
    assert wave.size > 0 and np.isfinite(wave).all()


def _broken(tiny_repo, tmp_path, change):
    repo = tmp_path / "repo"
    shutil.copytree(tiny_repo, repo)
    for p in repo.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    change(repo)
    return repo


@pytest.mark.parametrize(
    "case,change,env_extra,message",
    [
        (
            "no_repository",
            lambda r: shutil.rmtree(r / "f5_tts"),
            {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": "/nonexistent"},
            "holds no model repository (f5_tts/config.pbtxt is missing); exporting the released F5TTS_v1_Base (Hugging "
            "Face cache or hub) on first start failed: hf://charactr/vocos-mel-24khz/config.yaml is not in the Hugging "
            "Face cache (/nonexistent) and HF_HUB_OFFLINE is set",
        ),
        (
            "missing_checkpoint",
            lambda r: shutil.rmtree(r / "f5_tts"),
            {"F5_CHECKPOINT": "/nowhere/model.safetensors"},
            "F5_CHECKPOINT=/nowhere/model.safetensors does not exist",
        ),
        (
            "missing_weights",
            lambda r: (r / "f5_tts/1/model.safetensors").unlink(),
            {},
            "f5_tts/1/model.safetensors is missing",
        ),
        ("missing_vocoder", lambda r: (r / "vocoder/1/vocos.onnx").unlink(), {}, "vocoder/1/vocos.onnx is missing"),
        (
            "bad_config",
            lambda r: (r / "vocoder/config.pbtxt").write_text("name: [oops"),
            {},
            "vocoder/config.pbtxt is not a valid model config",
        ),
        (
            "gpu_without_gpu",
            lambda r: (r / "f5_tts/config.pbtxt").write_text(
                (r / "f5_tts/config.pbtxt").read_text().replace("KIND_CPU", "KIND_GPU")
            ),
            {},
            "asks for KIND_GPU but no GPU is visible",
        ),
        ("bad_admin_key", lambda r: None, {"TRITON_ADMIN_KEY": "novalue"}, "TRITON_ADMIN_KEY must be HEADER=VALUE"),
    ],
)
def test_entrypoint_failures_exit_nonzero_with_one_line(tiny_repo, tmp_path, case, change, env_extra, message):
    repo = _broken(tiny_repo, tmp_path, change)
    proc = _run(_env(repo, **env_extra))
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("entrypoint: error: ") and message in errors[0], proc.stderr


def _without_transcriber(repo: Path) -> None:
    """What an export without --asr writes: no transcriber, and no model parameter naming one."""
    shutil.rmtree(repo / "transcriber")
    named = re.compile(
        r'parameters \{\s*key: "transcriber_model"\s*value \{\s*string_value: "transcriber"\s*\}\s*\}\s*'
    )
    for model in ("f5_tts", "f5_tts_fr"):  # the default model and the one added to it
        config = repo / model / "config.pbtxt"
        text, found = named.subn("", config.read_text())
        assert found == 1, f"the tiny repository's {model} no longer names its transcriber this way"
        config.write_text(text)


def test_preflight_accepts_a_repository_with_or_without_a_transcriber(tiny_repo, tmp_path):
    from deploy.preflight import check_repository, describe

    found = check_repository(tiny_repo, None)  # the session's repository is exported with --asr
    assert found["transcriber"]["kinds"] == ["KIND_CPU"]
    assert ", transcriber " in describe(found, None) and "whisper" in describe(found, None)
    repo = _broken(tiny_repo, tmp_path, _without_transcriber)
    found = check_repository(repo, None)
    assert "transcriber" not in found and ", no transcriber, " in describe(found, None)


@pytest.mark.parametrize(
    "change,message",
    [
        (
            lambda r: (r / "transcriber/1/whisper/tokenizer_config.json").unlink(),
            "{repo}/transcriber/1/whisper/tokenizer_config.json is missing; re-export the repository",
        ),
        (
            lambda r: (r / "transcriber/1/whisper/model.safetensors").unlink(),
            "{repo}/transcriber/1/whisper/model.safetensors (or pytorch_model.bin: the Whisper's weights) is missing; "
            "re-export the repository",
        ),
        (
            lambda r: (r / "transcriber/1/model.py").unlink(),
            "{repo}/transcriber/1/model.py is missing; re-export the repository",
        ),
        (
            lambda r: shutil.rmtree(r / "transcriber"),
            "{repo}/f5_tts/config.pbtxt transcribes references with 'transcriber' (parameter transcriber_model) but "
            "{repo}/transcriber/config.pbtxt is missing; re-export the repository (with --asr, or --no-asr for none)",
        ),
    ],
    ids=["whisper_file", "whisper_weights", "model_code", "named_but_absent"],
)
def test_preflight_refuses_a_transcriber_without_its_files(tiny_repo, tmp_path, change, message):
    from deploy.preflight import RepositoryError, check_repository

    repo = _broken(tiny_repo, tmp_path, change)
    with pytest.raises(RepositoryError) as refused:
        check_repository(repo, None)
    assert str(refused.value) == message.format(repo=repo)


def test_the_entrypoint_refuses_a_transcriber_without_its_whisper_in_one_line(tiny_repo, tmp_path):
    repo = _broken(tiny_repo, tmp_path, lambda r: (r / "transcriber/1/whisper/config.json").unlink())
    proc = _run(_env(repo))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"entrypoint: error: {repo}/transcriber/1/whisper/config.json is missing; re-export the repository"
    )


def test_entrypoint_not_a_directory(tmp_path):
    proc = _run(_env(tmp_path / "absent"))
    assert proc.returncode == 2 and "is not a directory" in proc.stderr


def test_a_gpu_that_cuda_cannot_use_is_an_error_not_no_gpu(monkeypatch):
    """No GPU here: torch.cuda is made to report one that fails, as a driver/runtime mismatch does."""
    import torch

    from deploy.preflight import RepositoryError, gpu_name

    assert gpu_name() is None  # this machine has none
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def broken(device):
        raise RuntimeError("CUDA driver version is insufficient for CUDA runtime version")

    monkeypatch.setattr(torch.cuda, "get_device_name", broken)
    with pytest.raises(RepositoryError, match="CUDA reports a GPU but torch cannot use it .*insufficient"):
        gpu_name()


# --- the deployments' settings (deploy/settings.py), read without starting anything -------------------


def _settings_classes():
    from deploy.settings import ContainerSettings, WorkerSettings

    return [ContainerSettings, WorkerSettings]


def test_every_setting_is_declared_with_its_name_kind_default_and_help():
    from deploy.settings import declared, read

    for cls in _settings_classes():
        settings = list(declared(cls))
        names = [s.env for s in settings]
        assert len(names) == len(set(names)), f"{cls.__name__} reads a variable twice"
        for s in settings:
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*", s.env) and s.help and s.kind.name
            assert s.read({}) == s.default  # unset: the declared default
            line = s.help_line()
            assert line.startswith(f"{s.env}: {s.help} ({s.kind.name}") and "default: " in line
        assert read(cls, {}) == cls()  # the class's own defaults are the declared ones


def test_a_variable_means_the_same_in_every_deployment():
    """Declared once: a variable both deployments read is one declaration, shared. MODEL_REPOSITORY alone
    is declared for each, since its default differs (/models; model_repository inside the RunPod volume)."""
    from deploy.settings import declared

    by_name: dict[str, set] = {}
    for cls in _settings_classes():
        for s in declared(cls):
            by_name.setdefault(s.env, set()).add(s)
    twice = {name: found for name, found in by_name.items() if len(found) > 1}
    assert set(twice) == {"MODEL_REPOSITORY"}
    assert len({s.kind for s in twice["MODEL_REPOSITORY"]}) == 1


def test_defaults_of_an_empty_environment():
    import contract
    from deploy.settings import ContainerSettings, ExportSettings, TritonSettings, WorkerSettings, read

    triton = TritonSettings(
        http_port=contract.HTTP_PORT,
        grpc_port=contract.GRPC_PORT,
        metrics_port=contract.METRICS_PORT,
        log_verbose=0,
        triton_args=(),
    )
    none = ExportSettings(checkpoint=None, model_config=None, vocoder=None, export_args=None)
    assert read(ContainerSettings, {}) == ContainerSettings(
        repository=Path("/models"), export=none, triton=triton, admin_key=None, stub_watchdog=False
    )
    assert read(WorkerSettings, {}) == WorkerSettings(
        volume=Path("/runpod-volume"),
        repository=Path("model_repository"),
        export=none,
        triton=triton,
        ready_timeout=600.0,
        concurrency=8,
    )


def test_values_are_read_into_their_types():
    from deploy.settings import ContainerSettings, WorkerSettings, read

    env = {
        "MODEL_REPOSITORY": "/data/repo",
        "HTTP_PORT": "0",
        "GRPC_PORT": " 9001 ",
        "METRICS_PORT": "65535",
        "LOG_VERBOSE": "2",
        "TRITON_ARGS": "--log-info=true --backend-config='python,a=b c'",
        "TRITON_ADMIN_KEY": "X-Admin=s3cr=t",
        "STUB_WATCHDOG": "1",
        "F5_CHECKPOINT": "hf://org/repo/model.pt",
        "F5_MODEL_CONFIG": "F5TTS_Base",
        "F5_VOCODER": "/ckpt/vocos",
        "F5_EXPORT_ARGS": "--device gpu --dtype bf16",
        "F5_READY_TIMEOUT": "2.5",
        "F5_CONCURRENCY": "1",
        "F5_VOLUME": "/vol",
    }
    c = read(ContainerSettings, env)
    assert c.repository == Path("/data/repo") and c.stub_watchdog is True
    assert (c.triton.http_port, c.triton.grpc_port, c.triton.metrics_port, c.triton.log_verbose) == (0, 9001, 65535, 2)
    assert c.triton.triton_args == ("--log-info=true", "--backend-config=python,a=b c")
    assert c.admin_key == ("X-Admin", "s3cr=t")  # split at the first "="
    assert c.export.checkpoint == "hf://org/repo/model.pt" and c.export.model_config == "F5TTS_Base"
    assert c.export.vocoder == Path("/ckpt/vocos") and c.export.export_args == ("--device", "gpu", "--dtype", "bf16")
    w = read(WorkerSettings, env)
    assert (w.volume, w.repository, w.ready_timeout, w.concurrency) == (Path("/vol"), Path("/data/repo"), 2.5, 1)
    assert w.export == c.export and w.triton == c.triton
    assert c.triton.server_options() == dict(
        http_port=0, grpc_port=9001, metrics_port=65535, log_verbose=2, extra_args=c.triton.triton_args
    )


def test_empty_is_the_default_except_for_shell_words():
    """An empty F5_EXPORT_ARGS asks for no export flags, which is not its default (--device gpu on a GPU)."""
    from deploy.settings import ContainerSettings, read

    names = (
        "MODEL_REPOSITORY",
        "HTTP_PORT",
        "LOG_VERBOSE",
        "TRITON_ADMIN_KEY",
        "STUB_WATCHDOG",
        "F5_CHECKPOINT",
        "F5_MODEL_CONFIG",
        "F5_VOCODER",
        "TRITON_ARGS",
    )
    assert read(ContainerSettings, dict.fromkeys(names, "")) == ContainerSettings()
    assert read(ContainerSettings, {"F5_EXPORT_ARGS": ""}).export.export_args == ()
    assert ContainerSettings().export.export_args is None


@pytest.mark.parametrize(
    "env,message",
    [
        ({"HTTP_PORT": "http"}, "HTTP_PORT='http' is not an integer; 0 to 65535 is allowed"),
        ({"GRPC_PORT": "8001.5"}, "GRPC_PORT='8001.5' is not an integer; 0 to 65535 is allowed"),
        ({"METRICS_PORT": "65536"}, "METRICS_PORT=65536; 0 to 65535 is allowed"),
        ({"HTTP_PORT": "-1"}, "HTTP_PORT=-1; 0 to 65535 is allowed"),
        ({"LOG_VERBOSE": "-2"}, "LOG_VERBOSE=-2; at least 0 is allowed"),
        ({"STUB_WATCHDOG": "true"}, "STUB_WATCHDOG='true' is not 0 or 1"),
        ({"TRITON_ARGS": "--log-file='x"}, 'TRITON_ARGS="--log-file=\'x" is not shell words (no closing quotation)'),
        ({"F5_EXPORT_ARGS": '--voice "a'}, "F5_EXPORT_ARGS='--voice \"a' is not shell words (no closing quotation)"),
        (
            {"TRITON_ADMIN_KEY": "novalue"},
            "TRITON_ADMIN_KEY must be HEADER=VALUE (a header name, '=', then the value the header must carry)",
        ),
        ({"TRITON_ADMIN_KEY": "=s3cret"}, "TRITON_ADMIN_KEY must be HEADER=VALUE"),
        ({"F5_READY_TIMEOUT": "soon"}, "F5_READY_TIMEOUT='soon' is not a number; more than 0 is allowed"),
        ({"F5_READY_TIMEOUT": "inf"}, "F5_READY_TIMEOUT='inf' is not a number; more than 0 is allowed"),
        ({"F5_READY_TIMEOUT": "0"}, "F5_READY_TIMEOUT=0; more than 0 is allowed"),
        ({"F5_CONCURRENCY": "0"}, "F5_CONCURRENCY=0; at least 1 is allowed"),
        ({"F5_CONCURRENCY": "eight"}, "F5_CONCURRENCY='eight' is not an integer; at least 1 is allowed"),
        # the first bad value in declaration order, alone
        ({"F5_CONCURRENCY": "0", "HTTP_PORT": "x"}, "HTTP_PORT='x' is not an integer; 0 to 65535 is allowed"),
    ],
    ids=lambda v: "-".join(v) if isinstance(v, dict) else None,
)
def test_a_bad_value_is_one_line_naming_the_variable_and_what_is_allowed(env, message):
    from deploy.settings import ContainerSettings, SettingError, WorkerSettings, read

    cls = WorkerSettings if any(k in ("F5_READY_TIMEOUT", "F5_CONCURRENCY") for k in env) else ContainerSettings
    with pytest.raises(SettingError) as err:
        read(cls, env)
    assert str(err.value).startswith(message) and "\n" not in str(err.value), str(err.value)


def test_a_secret_is_never_echoed():
    from deploy.settings import ContainerSettings, SettingError, read

    with pytest.raises(SettingError) as err:
        read(ContainerSettings, {"TRITON_ADMIN_KEY": "Bearer-s3cret-token"})
    assert "s3cret" not in str(err.value)


def test_help_lists_every_variable_with_its_default():
    from deploy.settings import ContainerSettings, WorkerSettings, declared, help_lines
    from export.api import DEFAULT_MODEL_CONFIG

    lines = help_lines(ContainerSettings)
    assert "HTTP_PORT: Triton's HTTP port; 0 picks a free one (an integer, 0 to 65535; default: 8000)" in lines
    assert "STUB_WATCHDOG: " in "\n".join(lines) and "(0 or 1; default: 0)" in "\n".join(lines)
    worker = "\n".join(help_lines(WorkerSettings))
    assert (
        "F5_READY_TIMEOUT: seconds allowed for loading and warming up the models (a number, more than 0; "
        "default: 600)" in worker
    )
    model_config = next(s for s in declared(ContainerSettings) if s.env == "F5_MODEL_CONFIG")
    assert DEFAULT_MODEL_CONFIG in model_config.help_line()  # the export's own default, not a stale copy
    listed = {"deploy": _settings_classes(), str(ENTRYPOINT): [ContainerSettings]}
    for command in ([sys.executable, "-m", "deploy"], [sys.executable, str(ENTRYPOINT), "--help"]):
        out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True).stdout
        for cls in listed[command[2] if command[1] == "-m" else command[1]]:
            assert all(f"  {s.help_line()}" in out for s in declared(cls)), out


@pytest.mark.parametrize(
    "variable,value,message",
    [
        ("HTTP_PORT", "eighty", "entrypoint: error: HTTP_PORT='eighty' is not an integer; 0 to 65535 is allowed"),
        ("STUB_WATCHDOG", "yes", "entrypoint: error: STUB_WATCHDOG='yes' is not 0 or 1"),
    ],
)
def test_entrypoint_refuses_a_bad_variable_before_anything_else(tmp_path, variable, value, message):
    """Before the repository is looked at (here it is not even a directory) and before torch loads."""
    env = {**_env(tmp_path / "absent"), variable: value}
    proc = _run(env)
    assert proc.returncode == 2
    assert [line for line in proc.stderr.splitlines() if line.strip()] == [message]


# --- the first-start export's request, from the typed settings ----------------------------------------


def test_the_export_request_comes_from_the_typed_settings(tmp_path):
    from deploy.preflight import export_request
    from deploy.settings import ContainerSettings, read
    from export.__main__ import request_from_argv

    out = tmp_path / "out"
    typed = read(
        ContainerSettings,
        {"F5_CHECKPOINT": "/ckpt/model.safetensors", "F5_MODEL_CONFIG": "F5TTS_Base", "F5_VOCODER": "/ckpt/vocos"},
    ).export
    want = request_from_argv(
        [
            "--ckpt",
            "/ckpt/model.safetensors",
            "--model-config",
            "F5TTS_Base",
            "--vocoder",
            "/ckpt/vocos",
            "--output",
            str(out),
        ]
    )
    assert export_request(typed, out, gpu=None) == want  # no GPU: the export's defaults (cpu)
    gpu = request_from_argv(
        [
            "--ckpt",
            "/ckpt/model.safetensors",
            "--model-config",
            "F5TTS_Base",
            "--vocoder",
            "/ckpt/vocos",
            "--device",
            "gpu",
            "--output",
            str(out),
        ]
    )
    assert export_request(typed, out, gpu="NVIDIA H100") == gpu  # unset F5_EXPORT_ARGS on a GPU: --device gpu
    flags = dataclasses.replace(typed, export_args=("--device", "cpu", "--instances", "2"))
    assert export_request(flags, out, gpu="NVIDIA H100") == request_from_argv(
        [
            "--ckpt",
            "/ckpt/model.safetensors",
            "--model-config",
            "F5TTS_Base",
            "--vocoder",
            "/ckpt/vocos",
            "--device",
            "cpu",
            "--instances",
            "2",
            "--output",
            str(out),
        ]
    )
    # nothing set: the export's own defaults (the released checkpoint of its default config)
    assert export_request(read(ContainerSettings, {}).export, out, gpu=None) == request_from_argv(
        ["--output", str(out)]
    )


def test_a_source_flag_in_F5_EXPORT_ARGS_wins_over_its_variable(tmp_path):
    from deploy.preflight import export_request
    from deploy.settings import ExportSettings

    source = ExportSettings(
        checkpoint="/a.safetensors",
        model_config="F5TTS_Base",
        vocoder=Path("/vocos-a"),
        export_args=(
            "--ckpt",
            "/b.pt",
            "--model-config",
            "E2TTS_Base",
            "--vocoder",
            "/vocos-b",
            "--output",
            "/elsewhere",
        ),
    )
    request = export_request(source, tmp_path, gpu=None)
    assert (request.ckpt, request.model_config, request.vocoder) == ("/b.pt", "E2TTS_Base", Path("/vocos-b"))
    assert request.output == tmp_path  # where the bootstrap exports, whatever the flags say


def test_bad_export_flags_name_F5_EXPORT_ARGS(tmp_path):
    from deploy.preflight import RepositoryError, export_request
    from deploy.settings import ExportSettings

    with pytest.raises(
        RepositoryError,
        match=r"^F5_EXPORT_ARGS='--device tpu': export flags: argument --device: "
        r"invalid choice: 'tpu'",
    ):
        export_request(ExportSettings(export_args=("--device", "tpu")), tmp_path, gpu=None)


# --- the RunPod worker's settings: paths inside the volume ----------------------------------------------


def test_worker_paths_are_inside_the_volume_with_its_checkpoint_found(tmp_path):
    from deploy.settings import VOLUME_CHECKPOINT, VOLUME_VOCODER
    from runpod_worker.startup import Settings, WorkerStartError

    volume = tmp_path / "volume"
    volume.mkdir()
    bare = Settings.from_env({"F5_VOLUME": str(volume)})
    assert bare.repository == volume / "model_repository"
    assert bare.checkpoint is None and bare.export.vocoder is None  # the released ones
    (volume / VOLUME_CHECKPOINT).parent.mkdir(parents=True)
    (volume / VOLUME_CHECKPOINT).write_bytes(b"")
    (volume / VOLUME_VOCODER).mkdir()
    found = Settings.from_env({"F5_VOLUME": str(volume), "F5_CONCURRENCY": "3"})
    assert found.checkpoint == volume / VOLUME_CHECKPOINT and found.export.vocoder == volume / VOLUME_VOCODER
    assert found.concurrency == 3
    given = Settings.from_env(
        {
            "F5_VOLUME": str(volume),
            "MODEL_REPOSITORY": "repos/main",
            "F5_CHECKPOINT": "mine.pt",
            "F5_VOCODER": "/abs/vocos",
        }
    )
    assert given.repository == volume / "repos" / "main" and given.checkpoint == volume / "mine.pt"
    assert given.export.vocoder == Path("/abs/vocos")  # an absolute path stays itself
    with pytest.raises(WorkerStartError, match=r"^F5_CONCURRENCY=0; at least 1 is allowed$"):
        Settings.from_env({"F5_VOLUME": str(volume), "F5_CONCURRENCY": "0"})
    with pytest.raises(WorkerStartError, match="the network volume F5_VOLUME=.* is not a directory"):
        Settings.from_env({"F5_VOLUME": str(tmp_path / "absent")})
