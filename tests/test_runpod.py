"""The RunPod worker (runpod_worker/), run for real: the SDK's --test_input and its local API server
(--rp_serve_api) in front of the bundled tritonserver on the tiny repository, start-up failures,
bad jobs, and that no tritonserver outlives its worker."""

from __future__ import annotations

import ast
import base64
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import (
    FR_MODEL,
    FRENCH_TEXT,
    VOICE,
    _say,
    assert_same_audio,
    behind_a_long_request,
    calls_shared_a_batch,
    wait_until_answering,
)

import contract
from export.repository import REFERENCE_WAV
from launcher import TritonServer
from launcher.server import free_port
from pipeline.reference import prepare_reference
from runpod_worker.handler import decode_audio, encode_wav

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 180  # seconds; a bound for a hung start, not a measurement

pytestmark = pytest.mark.slow  # the RunPod worker


def _reference_job(**extra) -> dict:
    """A job with the first 2 s of the shipped reference as FLAC: small enough for --test_input's argv."""
    audio, rate = sf.read(str(REFERENCE_WAV), dtype="float32")
    buf = io.BytesIO()
    sf.write(buf, audio[: 2 * rate], rate, format="FLAC")
    job = {
        "text": "I don't really care what you call me.",
        "reference_text": "Some call me nature.",
        "reference_audio": base64.b64encode(buf.getvalue()).decode(),
        "nfe_step": 4,
        "seed": 7,
    }
    job.update(extra)
    return job


def _env(volume: Path, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("F5_", "TRITON_", "RUNPOD_", "MODEL_REPOSITORY"))}
    env.update(
        F5_VOLUME=str(volume),
        HTTP_PORT=str(free_port()),
        GRPC_PORT=str(free_port()),
        METRICS_PORT=str(free_port()),
        **extra,
    )
    return env


def _worker(*args: str) -> list[str]:
    return [sys.executable, "-m", "runpod_worker", *args]


def _server_pid(stdout: str) -> int:
    return int(re.search(r"tritonserver \S+ pid (\d+) ready", stdout).group(1))


def _processes_using(repo: Path) -> list[int]:
    """tritonserver and its Python stubs serving `repo` (their command lines name it)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(repo).encode() in (proc / "cmdline").read_bytes():
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state not in ("Z", "X"):
                    found.append(int(proc.name))
        except OSError:
            continue
    return found


def _assert_none_left(repo: Path) -> None:
    deadline = time.monotonic() + 30  # the stubs notice their server's death on their own
    while (left := _processes_using(repo)) and time.monotonic() < deadline:
        time.sleep(0.2)
    named = {pid: _command(pid) for pid in left}
    for pid in left:  # never leave them behind, even when failing
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes still serving {repo} 30 s later: {named}"


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "(gone)"


def _decode(output: dict) -> np.ndarray:
    wave, rate = sf.read(io.BytesIO(base64.b64decode(output["audio_base64"])), dtype="float32")
    assert rate == output["sample_rate"] == contract.SAMPLE_RATE
    assert wave.ndim == 1 and wave.size > 0 and np.isfinite(wave).all()
    assert output["duration_seconds"] == pytest.approx(wave.size / rate, abs=1e-3)
    return wave


# --- one job through --test_input, exporting the volume's checkpoint on first start --------------------


def test_test_input_exports_the_volume_once_and_returns_a_wav(tiny, tmp_path):
    volume = tmp_path / "volume"
    (volume / "checkpoints").mkdir(parents=True)
    shutil.copyfile(tiny.checkpoint, volume / "checkpoints" / "model_1250000.safetensors")  # the default name
    shutil.copytree(tiny.vocoder, volume / "checkpoints" / "vocos-mel-24khz")  # found without F5_VOCODER
    repo = volume / "model_repository"
    # The SDK prints the result on one log line, cut past 4096 characters: ask for 40 ms of audio
    # past the reference (`duration` counts it), measured as the server will measure it.
    job = _reference_job()
    reference = prepare_reference(*decode_audio(job["reference_audio"]), job["reference_text"])
    job["duration"] = round(reference.seconds + 0.04, 3)
    proc = subprocess.run(
        _worker("--test_input", json.dumps({"input": job})),
        cwd=ROOT,
        env=_env(volume, F5_MODEL_CONFIG=str(tiny.config)),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )
    try:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert f"exported {volume / 'checkpoints' / 'model_1250000.safetensors'} into {repo}" in proc.stdout
        assert json.loads((repo / "manifest.json").read_text())["models"]["f5_tts"]["sources"]["checkpoint"]["sha256"]
        assert sorted(p.name for p in volume.iterdir()) == ["checkpoints", "model_repository"]  # no leftovers
        line = re.search(r"Job result: (.*)$", proc.stdout, re.M).group(1)
        output = ast.literal_eval(line)["output"]
        assert 0 < _decode(output).size <= 0.05 * contract.SAMPLE_RATE
        assert set(output["timings_ms"]) == {"input", "synthesis", "encode", "total"}
    finally:
        _assert_none_left(repo)


# --- a long-lived worker serving the SDK's local API ------------------------------------------------------


class ApiWorker:
    def __init__(self, repo: Path, tmp: Path) -> None:
        self.repo = repo
        self.port = free_port()
        self.env = _env(repo.parent)
        self.log = tmp / "worker.log"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                _worker("--rp_serve_api", "--rp_api_host", "127.0.0.1", "--rp_api_port", str(self.port)),
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.started = time.monotonic()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self) -> float:
        wait_until_answering(f"http://127.0.0.1:{self.port}/", self.proc, self.output, START_TIMEOUT, "worker")
        return time.monotonic() - self.started

    def runsync(self, job_input: dict) -> dict:
        body = json.dumps({"input": job_input}).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/runsync", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=120) as r:
            return json.load(r)

    @property
    def triton(self) -> TritonServer:
        """A handle on the worker's own tritonserver (for requests and statistics; it does not own it)."""
        return TritonServer(
            self.repo,
            http_port=int(self.env["HTTP_PORT"]),
            grpc_port=int(self.env["GRPC_PORT"]),
            metrics_port=int(self.env["METRICS_PORT"]),
        )

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def api_worker(tiny_repo, tmp_path_factory, request):
    # A volume of its own: processes are told apart by the repository in their command line, and the
    # session's server serves tiny_repo itself.
    tmp = tmp_path_factory.mktemp("runpod_api")
    repo = shutil.copytree(tiny_repo, tmp / "volume" / "model_repository")
    worker = ApiWorker(repo, tmp)
    try:
        ready = worker.wait_ready()
        _say(
            request,
            f"runpod worker pid {worker.proc.pid} serving its API in {ready:.1f} s "
            f"(tritonserver pid {_server_pid(worker.output())})",
        )
        yield worker
    finally:
        worker.kill()
        _assert_none_left(repo)


def test_worker_logs_what_it_loaded(api_worker):
    out = api_worker.output()
    assert "model F5TTS_v1_Base_tiny," in out and "dtype fp32" in out and "GPU none" in out
    assert ", transcriber " in out  # the tiny repository is exported with --asr
    assert re.search(
        r"tritonserver 2\.\d+\.\d+ pid \d+ ready in [\d.]+ s, models loaded and warmed up; "
        r"f5_tts \(F5TTS_v1_Base_tiny, fp32, engine eager, vocoder onnx\) loaded on cpu in [\d.]+ s",
        out,
    )
    assert re.search(r"ready in [\d.]+ s from start: runpod 1\.10\.0, up to 8 concurrent jobs", out)
    # the job's input (users' audio) is not logged
    assert "Retrieved local job" not in out and "UklGR" not in out


def test_concurrent_jobs_share_triton_batches(api_worker):
    jobs = [
        _reference_job(seed=7),
        _reference_job(seed=7),
        _reference_job(seed=8),
        _reference_job(seed=7, text="Respect me and I'll nurture you."),
    ]
    results, batched = behind_a_long_request(
        api_worker.triton, [lambda job=job: api_worker.runsync(job) for job in jobs]
    )
    assert [r["status"] for r in results] == ["COMPLETED"] * len(jobs), results
    waves = [_decode(r["output"]) for r in results]
    assert_same_audio(waves[1], waves[0])  # same seed and text: same audio, whichever batch each job joined
    assert waves[0].shape != waves[2].shape or not np.array_equal(waves[0], waves[2])  # another seed
    assert waves[3].size > 0
    # the jobs reached the dynamic batcher together
    assert calls_shared_a_batch(batched), f"not batched together (batch size: executions): {batched}"


@pytest.mark.parametrize(
    "change,message",
    [
        (
            {"speaker": "x"},
            "unknown input key(s) 'speaker'; allowed: task, text, reference_audio, reference_text, voice, "
            "nfe_step, cfg_strength, sway_sampling_coef, speed, seed, duration, measure_words, captions, model",
        ),
        ({"captions": "ass"}, "'captions' is 'ass'; allowed: 'srt', 'vtt', 'json'"),
        ({"nfe_step": "16"}, "'nfe_step' must be an integer, got string '16'"),
        ({"seed": 1.5}, "'seed' must be an integer, got number 1.5"),
        ({"speed": True}, "'speed' must be a number, got boolean True"),
        ({"text": 42}, "'text' must be a string, got integer"),
        ({"nfe_step": 2**40}, "'nfe_step' is 1099511627776, outside the INT32 range"),
        ({"reference_audio": "not base64!"}, "'reference_audio' is not valid base64"),
        (
            {"reference_audio": base64.b64encode(b"just some bytes").decode()},
            "'reference_audio' (15 bytes) is not an audio file soundfile can read",
        ),
        ({"reference_audio": None}, "'reference_text' is the transcript of 'reference_audio', which is missing"),
        (
            {"reference_audio": None, "reference_text": None},
            "give 'reference_audio' (base64 of an audio file) with 'reference_text' (its transcript; absent: the "
            "server transcribes it), or 'voice'",
        ),
        ({"voice": "narrator"}, "give either 'voice' or 'reference_audio' (with its 'reference_text'), not both"),
        ({"task": "dance"}, "'task' is 'dance'; allowed: synthesize (the default), transcribe"),
        (
            {"task": "transcribe"},  # the synthesis keys are not a transcription's
            "unknown input key(s) 'nfe_step', 'reference_text', 'seed', 'text' for the task 'transcribe'; "
            "allowed: task, reference_audio, language, as_reference",
        ),
        ({"text": None}, "'text' (the text to speak) is required"),
        # the server's own INVALID_ARG messages
        ({"nfe_step": 500}, "input 'nfe_step' is 500; allowed range is [1, 128]"),
        ({"text": "   "}, "input 'target_text' is empty or whitespace only"),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else None,
)
def test_bad_jobs_get_the_error_form(api_worker, change, message):
    job = {k: v for k, v in _reference_job(**change).items() if v is not None}
    result = api_worker.runsync(job)
    assert result["status"] == "FAILED" and "output" not in result, result
    assert message in result["error"], result["error"]


def test_a_job_asking_for_captions_gets_them_beside_its_audio(api_worker):
    import srt

    from contract.captions import loads

    results = {fmt: api_worker.runsync(_reference_job(seed=7, captions=fmt)) for fmt in ("srt", "json")}
    assert [r["status"] for r in results.values()] == ["COMPLETED"] * 2, results
    out = results["json"]["output"]
    cues = loads(out["captions"])
    assert out["captions_format"] == "json" and cues[-1].end_sample == _decode(out).size
    subs = list(srt.parse(results["srt"]["output"]["captions"]))
    assert [s.content for s in subs] == [c.text for c in cues]
    assert "captions" not in api_worker.runsync(_reference_job(seed=7))["output"]


def test_a_registered_voice_job_sounds_like_sending_its_reference(api_worker):
    """tiny_repo registers the shipped reference as `nature` (conftest.VOICE)."""
    from export.repository import REFERENCE_TEXT

    by_voice = api_worker.runsync({"text": "Respect me.", "voice": VOICE, "nfe_step": 4, "seed": 3})
    by_upload = api_worker.runsync(
        {
            "text": "Respect me.",
            "nfe_step": 4,
            "seed": 3,
            "reference_text": REFERENCE_TEXT,
            "reference_audio": base64.b64encode(REFERENCE_WAV.read_bytes()).decode(),
        }
    )
    assert by_voice["status"] == by_upload["status"] == "COMPLETED", (by_voice, by_upload)
    np.testing.assert_array_equal(_decode(by_voice["output"]), _decode(by_upload["output"]))
    unknown = api_worker.runsync({"text": "Respect me.", "voice": "narrator"})
    assert unknown["status"] == "FAILED" and "unknown voice 'narrator'; known voices: nature" in unknown["error"]


def test_a_job_without_reference_text_speaks_as_with_what_the_transcribe_task_hears(api_worker):
    """The server transcribes the reference as f5-tts would; the transcribe task's as_reference transcript
    is that text, so sending it gives the same audio (same seed)."""
    job = _reference_job()
    heard = api_worker.runsync({"task": "transcribe", "reference_audio": job["reference_audio"], "as_reference": True})
    assert heard["status"] == "COMPLETED", heard
    transcript = heard["output"][contract.TRANSCRIPT]
    assert transcript.strip() and heard["output"][contract.LANGUAGE]  # detected
    assert set(heard["output"]["timings_ms"]) == {"input", "transcription", "total"}
    untold = api_worker.runsync({k: v for k, v in job.items() if k != "reference_text"})
    told = api_worker.runsync({**job, "reference_text": transcript})
    assert untold["status"] == told["status"] == "COMPLETED", (untold, told)
    np.testing.assert_array_equal(_decode(untold["output"]), _decode(told["output"]))
    # the transcriber's own refusals, and a transcription's input checks
    for change, message in [
        ({"language": "klingon"}, "input 'language' is 'klingon', which this Whisper does not know; known: af, "),
        ({"as_reference": "yes"}, "'as_reference' must be true or false, got string 'yes'"),
        ({"reference_audio": None}, "'reference_audio' (base64 of the audio file to transcribe) is required"),
    ]:
        refused = api_worker.runsync({"task": "transcribe", "reference_audio": job["reference_audio"], **change})
        assert refused["status"] == "FAILED" and message in refused["error"], (change, refused)


def test_multi_model_a_job_is_spoken_by_the_model_it_names(api_worker):
    """tiny_repo holds the default model and FR_MODEL (f5_tts_fr): `model` picks it, by its short or Triton
    name, and the job's audio is f5_tts_fr's own answer to the same request; without `model`, the default's."""
    from client import SynthesisOptions, synthesize

    job = _reference_job(text=FRENCH_TEXT)
    runs = {name: api_worker.runsync({**job, "model": name}) for name in (FR_MODEL, "f5_tts_fr", "default")}
    runs[None] = api_worker.runsync(job)
    assert [r["status"] for r in runs.values()] == ["COMPLETED"] * 4, runs
    waves = {name: _decode(r["output"]) for name, r in runs.items()}
    np.testing.assert_array_equal(waves[FR_MODEL], waves["f5_tts_fr"])
    np.testing.assert_array_equal(waves["default"], waves[None])
    assert waves[FR_MODEL].shape != waves[None].shape or not np.array_equal(waves[FR_MODEL], waves[None])
    audio, rate = decode_audio(job["reference_audio"])
    direct, _ = synthesize(
        FRENCH_TEXT,
        audio,
        rate,
        job["reference_text"],
        url=api_worker.triton.grpc_url,
        model="f5_tts_fr",
        options=SynthesisOptions(nfe_step=4, seed=7),
        timeout=120,
    )
    want = _decode(
        {"audio_base64": encode_wav(direct, rate), "sample_rate": rate, "duration_seconds": direct.size / rate}
    )
    np.testing.assert_array_equal(waves[FR_MODEL], want)


@pytest.mark.parametrize(
    "model,message",
    [
        (
            "de",
            "unknown model 'de' (f5_tts_de): this server's models are default (f5_tts), fr (f5_tts_fr); give "
            "'model' as one of their names, or leave it out for the default model",
        ),
        ("f5_tts_de", "unknown model 'de' (f5_tts_de): this server's models are default (f5_tts), fr (f5_tts_fr)"),
        ("F R", "'model' is 'F R': give a model's short name (NAME of `export --name NAME`, or 'default')"),
        ("f5_tts_fr_stream", "'model' is 'f5_tts_fr_stream': give a model's short name"),
        (7, "'model' must be a string, got integer"),
    ],
)
def test_multi_model_a_job_naming_an_unknown_model_lists_the_models(api_worker, model, message):
    result = api_worker.runsync(_reference_job(model=model))
    assert result["status"] == "FAILED" and "output" not in result, result
    assert message in result["error"], result["error"]


def test_worker_still_serves_after_bad_jobs(api_worker):
    result = api_worker.runsync(_reference_job(nfe_step=2))
    assert result["status"] == "COMPLETED"
    _decode(result["output"])


def test_killing_the_worker_kills_its_server(api_worker):
    server = _server_pid(api_worker.output())
    assert server in _processes_using(api_worker.repo)
    api_worker.kill()  # SIGKILL: no clean-up code runs; the kernel's parent-death signal must do it
    _assert_none_left(api_worker.repo)


# --- start-up failures: exit non-zero with one line naming the cause --------------------------------------


def _copy_repo(tiny_repo: Path, tmp_path: Path, change) -> Path:
    volume = tmp_path / "volume"
    shutil.copytree(tiny_repo, volume / "model_repository")
    change(volume / "model_repository")
    return volume


@pytest.mark.parametrize(
    "case,make_volume,extra,message",
    [
        pytest.param(
            "missing_volume",
            lambda repo, tmp: tmp / "absent",
            {},
            "the network volume F5_VOLUME={volume} is not a directory",
            id="missing_volume",
        ),
        pytest.param(
            "empty_volume",
            lambda repo, tmp: tmp,
            {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": "/nonexistent"},
            "the volume {volume} holds no exported repository "
            "({volume}/model_repository/f5_tts/config.pbtxt is missing); "
            "exporting the released F5TTS_v1_Base (Hugging Face cache or hub) on first start failed: "
            "hf://charactr/vocos-mel-24khz/config.yaml is not in the Hugging Face cache",
            id="empty_volume",
        ),
        pytest.param(
            "missing_checkpoint",
            lambda repo, tmp: tmp,
            {"F5_CHECKPOINT": "checkpoints/mine.safetensors"},
            "the volume {volume} holds neither an exported repository",
            id="missing_checkpoint",
        ),
        pytest.param(
            "missing_file",
            lambda repo, tmp: _copy_repo(repo, tmp, lambda r: (r / "vocoder/1/vocos.onnx").unlink()),
            {},
            "{volume}/model_repository/vocoder/1/vocos.onnx is missing; re-export the repository",
            id="missing_file",
        ),
        pytest.param(
            "not_ready_in_time",
            lambda repo, tmp: _copy_repo(repo, tmp, lambda r: None),
            {"F5_READY_TIMEOUT": "1"},
            "tritonserver not ready after 1 s: ",
            id="not_ready_in_time",
        ),
        pytest.param(
            "bad_concurrency",
            lambda repo, tmp: tmp,
            {"F5_CONCURRENCY": "0"},
            "F5_CONCURRENCY=0; at least 1 is allowed",
            id="bad_concurrency",
        ),
    ],
)
def test_start_failures_exit_nonzero_with_one_line(tiny_repo, tmp_path, case, make_volume, extra, message):
    volume = make_volume(tiny_repo, tmp_path)
    proc = subprocess.run(
        _worker(), cwd=ROOT, env=_env(volume, **extra), capture_output=True, text=True, timeout=START_TIMEOUT
    )
    try:
        assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
        errors = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(errors) == 1 and errors[0].startswith("runpod_worker: error: "), proc.stderr
        assert message.format(volume=volume) in errors[0], errors[0]
        assert "Starting Serverless Worker" not in proc.stdout  # no job was taken
    finally:
        _assert_none_left(volume)


# --- packaging ------------------------------------------------------------------------------------------


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name, sep, version = line.partition("==")
            assert sep and version, f"{path.name}: {line!r} is not pinned with =="
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_runpod_requirements_are_pinned_and_change_no_locked_package():
    extra = _pins(ROOT / "requirements" / "runpod.txt")
    locked = _pins(ROOT / "requirements" / "lock.txt")
    assert not set(extra) & set(locked), "installed with --no-deps, these would replace locked versions"
    assert f'runpod = ["runpod=={extra["runpod"]}"]' in (ROOT / "pyproject.toml").read_text()
    import runpod

    assert runpod.__version__ == extra["runpod"]


def test_dockerfile_worker_target_builds_on_the_server_image():
    text = (ROOT / "docker" / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (.+)$", text, re.M)
    assert stages[1] == "server AS runpod-worker" and stages[-1] == "server"  # the default build stays Triton
    worker = text[text.index("AS runpod-worker") : text.rindex("FROM server")]
    assert "python3 -m pip install --no-deps -r requirements/runpod.txt" in worker
    assert re.search(r"^USER 1000$", worker, re.M)
    assert 'ENTRYPOINT ["python3", "-m", "runpod_worker"]' in worker
    assert "COPY runpod_worker/ runpod_worker/" in text[: text.index("AS runpod-worker")]
