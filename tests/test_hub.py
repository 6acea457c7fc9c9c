"""The default export and the demo against the Hugging Face hub: a cache laid out as huggingface_hub
writes it, offline mode, proxies, mirrors, and the demo's fallback only when the hub is unreachable.

Network access is observed, not assumed: HTTPS_PROXY or HF_ENDPOINT points at a recorder on
loopback, which sees every connection the export makes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from conftest import LONG_TEXT, RELEASED_VOCOS_CONFIG, Reference, f5tts_samples, hub_env
from hub_cache import F5_CHECKPOINT, F5_REPO, VOCOS_REPO, NetworkRecorder, fill_cache

import contract
from export.demo import write_random_checkpoint, write_random_vocos
from export.repository import REFERENCE_TEXT, REFERENCE_WAV, sha256

ROOT = Path(__file__).resolve().parent.parent
HUB_CKPT = f"hf://{F5_REPO}/{F5_CHECKPOINT}"


def _export(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "export", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def _demo(env: dict[str, str], tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "demo.py"),
            "--repository",
            str(tmp_path / "repo"),
            "--output-wav",
            str(tmp_path / "demo.wav"),
            "--nfe-step",
            "2",
            *args,
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )


# --- without the files: fail at once, say why and what to do ------------------------------------------------


def test_offline_mode_with_an_empty_cache_fails_without_touching_the_network(tmp_path):
    with NetworkRecorder() as proxy:
        proc = _export(
            hub_env(tmp_path / "hf", HF_HUB_OFFLINE="1", HTTPS_PROXY=proxy.url), "--output", str(tmp_path / "o")
        )
    assert proc.returncode == 2
    assert f"hf://{VOCOS_REPO}/config.yaml is not in the Hugging Face cache" in proc.stderr
    assert "HF_HUB_OFFLINE is set" in proc.stderr and "--vocoder DIR" in proc.stderr and "--demo-tiny" in proc.stderr
    assert proxy.lines == []
    assert not (tmp_path / "o").exists()


def test_offline_mode_names_the_missing_checkpoint_and_says_to_pass_ckpt(tiny, tmp_path):
    proc = _export(
        hub_env(tmp_path / "hf", HF_HUB_OFFLINE="1"), "--vocoder", str(tiny.vocoder), "--output", str(tmp_path / "o")
    )
    assert proc.returncode == 2
    assert f"{HUB_CKPT} is not in the Hugging Face cache" in proc.stderr
    assert "pass --ckpt PATH to a local checkpoint, or --demo-tiny" in proc.stderr


def test_an_unreachable_hub_is_asked_through_the_users_proxy_without_retries(tmp_path):
    """HTTPS_PROXY is honoured (users behind a proxy are not 'offline'), and a refusal is not retried."""
    with NetworkRecorder() as proxy:  # answers every CONNECT with 502
        proc = _export(hub_env(tmp_path / "hf", HTTPS_PROXY=proxy.url), "--output", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert (
        f"hf://{VOCOS_REPO}/config.yaml is not cached and the hub at https://huggingface.co is unreachable"
        in proc.stderr
    )
    # One connection for the file (no 25 s of retries) and at most one that huggingface_hub makes by itself
    # (its agent registry, GET /api/agent-harnesses, once per process).
    assert set(proxy.lines) == {"CONNECT huggingface.co:443 HTTP/1.1"} and len(proxy.lines) <= 2


def test_hf_endpoint_is_honoured_and_a_refusal_is_not_called_unreachable(tmp_path):
    with NetworkRecorder(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n") as mirror:
        proc = _export(hub_env(tmp_path / "hf", HF_ENDPOINT=mirror.url), "--output", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert f"the hub at {mirror.url} refused hf://{VOCOS_REPO}/config.yaml" in proc.stderr
    asked = [line for line in mirror.lines if line != "GET /api/agent-harnesses HTTP/1.1"]  # huggingface_hub's own
    assert asked == [f"HEAD /{VOCOS_REPO}/resolve/main/config.yaml HTTP/1.1"]


def test_the_vocoder_is_checked_before_the_checkpoint_is_fetched(tmp_path):
    """A vocoder this server cannot use fails in seconds, before a 1.3 GB download."""
    config = yaml.safe_load(RELEASED_VOCOS_CONFIG.read_text())
    config["head"]["init_args"]["padding"] = "valid"
    vocoder = tmp_path / "vocos"
    vocoder.mkdir()
    (vocoder / "config.yaml").write_text(yaml.safe_dump(config))
    (vocoder / "pytorch_model.bin").write_bytes(b"not read: the config is refused first")
    with NetworkRecorder() as proxy:
        proc = _export(
            hub_env(tmp_path / "hf", HTTPS_PROXY=proxy.url), "--vocoder", str(vocoder), "--output", str(tmp_path / "o")
        )
    assert proc.returncode == 2
    assert "ISTFT head padding 'valid' is not supported (supported: center, same)" in proc.stderr
    assert proxy.lines == []  # the checkpoint was never asked for


# --- with the files in the cache ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_hub_cache(tiny, tmp_path_factory) -> Path:
    """The hub's file names and cache layout, holding the tiny model (fast to export)."""
    d = tmp_path_factory.mktemp("tiny_hub")
    fill_cache(
        d / "hf",
        write_random_checkpoint(tiny.config, d / "model.safetensors"),
        write_random_vocos(d / "vocos", yaml.safe_load((tiny.vocoder / "config.yaml").read_text())),
    )
    return d / "hf"


@pytest.mark.slow  # two whole exports through the hub code
@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE", "online"])
def test_cached_files_export_without_touching_the_network(tiny_hub_cache, tiny, tmp_path, offline):
    extra = {"HF_HUB_OFFLINE": "1"} if offline else {}
    with NetworkRecorder() as proxy:
        proc = _export(
            hub_env(tiny_hub_cache, HTTPS_PROXY=proxy.url, **extra),
            "--ckpt",
            HUB_CKPT,
            "--model-config",
            str(tiny.config),
            "--output",
            str(tmp_path / "o"),
        )
    assert proc.returncode == 0, proc.stderr
    assert proxy.lines == []
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    snapshot = tiny_hub_cache / "hub" / f"models--{F5_REPO.replace('/', '--')}" / "snapshots"
    assert manifest["models"]["f5_tts"]["sources"]["checkpoint"]["path"].startswith(str(snapshot))
    assert manifest["vocoders"]["vocoder"]["source"] == f"hf://{VOCOS_REPO}"


# --- the demo: a fallback only when the hub is unreachable -------------------------------------------------


def _chunk_progress(stdout: str) -> list[tuple[int, int, float, float]]:
    """The demo's line per text chunk: (chunk, of chunks, its audio seconds, audio seconds so far)."""
    return [
        (int(k), int(n), float(piece), float(so_far))
        for k, n, piece, so_far in re.findall(
            r"^demo: chunk (\d+)/(\d+): ([\d.]+) s of audio \(([\d.]+) s so far\) after [\d.]+ s$", stdout, re.M
        )
    ]


@pytest.mark.slow  # the demo starts a tritonserver of its own
def test_demo_falls_back_to_the_demo_model_only_when_the_hub_is_unreachable(tmp_path):
    """Also the demo's progress: a line per text chunk as its audio arrives (a long text: several chunks)."""
    proc = _demo(hub_env(tmp_path / "hf", HF_HUB_OFFLINE="1"), tmp_path, "--text", LONG_TEXT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "is not in the Hugging Face cache" in proc.stdout and "Falling back to the demo model" in proc.stdout
    assert "produces noise, not speech" in proc.stdout.splitlines()[-1]
    assert json.loads((tmp_path / "repo" / "manifest.json").read_text())["models"]["f5_tts"]["demo_model"] is True
    progress = _chunk_progress(proc.stdout)
    total = int(re.search(r"^demo: synthesizing (\d+) text chunk\(s\) at NFE 2$", proc.stdout, re.M).group(1))
    assert total >= 3 and [(k, n) for k, n, _, _ in progress] == [(k, total) for k in range(1, total + 1)]
    wave, rate = sf.read(str(tmp_path / "demo.wav"), dtype="float32")
    assert progress[-1][3] == pytest.approx(len(wave) / rate, abs=0.01)
    assert sum(piece for _, _, piece, _ in progress) == pytest.approx(len(wave) / rate, abs=0.01 * total)


def test_demo_stops_on_any_other_export_error(tmp_path):
    proc = _demo(hub_env(tmp_path / "hf", HF_HUB_OFFLINE="1"), tmp_path, "--vocoder", str(tmp_path / "nowhere"))
    assert proc.returncode == 1
    assert f"demo: error: vocoder directory {tmp_path / 'nowhere'} has no config.yaml" in proc.stderr
    assert "Falling back" not in proc.stdout
    assert not (tmp_path / "demo.wav").exists() and not (tmp_path / "repo").exists()


# --- the released checkpoint, full size, from the cache ------------------------------------------------------


def _demo_text() -> str:
    """The sentence scripts/demo.py speaks."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_script", ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TEXT


@pytest.mark.slow
def test_demo_serves_the_released_checkpoint_from_the_hub_cache(released_hub_cache, tmp_path):
    """`make demo` for a user whose cache holds the release: F5TTS_v1_Base, not the demo model, no network."""
    from safetensors import safe_open

    cached = released_hub_cache / "hub" / f"models--{F5_REPO.replace('/', '--')}" / "snapshots"
    checkpoint = next(cached.glob(f"*/{F5_CHECKPOINT}"))
    with safe_open(str(checkpoint), "pt") as f:  # the release's key layout: 364 + 2 tensors
        keys = set(f.keys())
    assert len({k for k in keys if k.startswith("ema_model.transformer.")}) == 364
    assert keys - {k for k in keys if k.startswith("ema_model.transformer.")} == {"initted", "step"}

    with NetworkRecorder() as proxy:
        proc = _demo(hub_env(released_hub_cache, HF_HUB_OFFLINE="1", HTTPS_PROXY=proxy.url), tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proxy.lines == []
    assert "Falling back" not in proc.stdout and "noise" not in proc.stdout
    assert [(k, n) for k, n, _, _ in _chunk_progress(proc.stdout)] == [(1, 1)]  # the sentence is one chunk
    manifest = json.loads((tmp_path / "repo" / "manifest.json").read_text())
    model = manifest["models"]["f5_tts"]
    assert model["model"] == "F5TTS_v1_Base" and model["demo_model"] is False
    assert 330e6 < model["parameters"] < 345e6  # F5TTS_v1_Base has 337 M DiT parameters
    assert checkpoint.stat().st_size > 1.3e9
    assert model["sources"]["checkpoint"]["sha256"] == sha256(checkpoint)
    assert manifest["vocoders"]["vocoder"]["source"] == f"hf://{VOCOS_REPO}"
    assert manifest["vocoders"]["vocoder"]["onnx_max_abs_error"] <= 1e-3
    wave, rate = sf.read(str(tmp_path / "demo.wav"), dtype="float32")
    assert rate == contract.SAMPLE_RATE
    audio, sample_rate = sf.read(str(REFERENCE_WAV), dtype="float32", always_2d=True)
    reference = Reference(np.ascontiguousarray(audio.T), sample_rate, REFERENCE_TEXT)
    assert len(wave) == f5tts_samples(reference, _demo_text(), tmp_path)
    assert np.isfinite(wave).all() and np.abs(wave).max() > 0
    shutil.rmtree(tmp_path / "repo")  # 1.3 GB
