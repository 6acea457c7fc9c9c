"""Shared fixtures, and the suite's three tiers.

Every test gets exactly one tier marker at collection (pytest_collection_modifyitems below):
- `unit`: no tritonserver. Tiny models only (exporting the tiny model takes seconds); pipeline,
  adapters (with a stubbed triton_python_backend_utils), export, clients without a server. The
  default: a test that says nothing is unit, and if it starts tritonserver through `TritonServer`
  anyway it fails at once, naming the marker it needs.
- `integration`: requests to the session's tritonserver on the tiny model (the `server` fixture,
  directly or through another fixture such as the gateway's): applied automatically.
- `slow`: what needs more than that. Tritonserver processes of a test's own (starts, restarts,
  kills, broken repositories, TLS and admin-key configurations: `start_server` makes a test slow
  automatically; a test that starts one another way, through the launcher CLI or the demo, is
  marked by hand), full-size models (the release, Small configs, the released Vocos), long runs
  (the soak, fuzzing at full count, perf_analyzer measurements, compiling the DiT), a browser (the
  playground), the RunPod worker and the deployment (the container entrypoint). It wins over the
  other two.
`make test-fast` runs unit and integration; `make test` (CI) runs all three.

Servers are started through the project's launcher and always stopped by PID in teardown. The
session's `server` is shared by every test that only sends requests (test_faults freezes it for a
second and thaws it); a test that needs its own configuration, or stops or kills its server, starts
its own with `start_server` (and is slow).
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import string
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf

import contract
from client import SynthesisOptions, synthesize
from contract.parameters import TtsParameters
from export.__main__ import request_from_argv
from export.api import export_model
from export.demo import RELEASED_VOCOS_CONFIG, write_random_checkpoint, write_tiny_model_config, write_tiny_vocos
from export.repository import REFERENCE_TEXT, REFERENCE_WAV
from launcher import TritonServer

# sha256 of RELEASED_VOCOS_CONFIG (export/demo.py): charactr/vocos-mel-24khz's config.yaml byte for byte.
RELEASED_VOCOS_CONFIG_SHA256 = "da9033922f969a47f0c160010226919e59f27761fd5066f3828d46de6650b0fc"

SHORT_TEXT = "I don't really care what you call me."
VOICE = "nature"  # registered in tiny_repo from the reference that f5-tts ships
# Long enough for f5-tts's chunk_text to split it into several chunks with the shipped reference.
LONG_TEXT = (
    "I don't really care what you call me. I've been a silent spectator, watching species evolve, empires rise "
    "and fall. But always remember, I am mighty and enduring. Respect me and I'll nurture you; ignore me and you "
    "shall face the consequences. The rivers carve the valleys, the winds shape the mountains, and the seasons "
    "turn without asking anyone for permission. Listen closely, and you will hear the whole story."
)


# The second model of tiny_repo (export --name fr): the v0 architecture (F5TTS_Base: text_mask_padding
# off, pe_attn_head 1) with a vocab of its own, as most community checkpoints are.
FR_MODEL = "fr"
# The characters of a French corpus: letters with their accented forms and ligatures, digits, and the
# punctuation of French typography (guillemets, the typographic apostrophe, dashes, the ellipsis).
FRENCH_CHARS = " " + string.ascii_letters + string.digits + "àâäæçéèêëîïôöœùûüÿÀÂÄÆÇÉÈÊËÎÏÔÖŒÙÛÜŸ" + "!\"'(),-.:?«»…–—’"
FRENCH_TEXT = "Ça va ? « Très bien », répond l'élève : déjà 3 œuvres lues… Où est-il allé ? Là-bas — près du château !"


def write_vocab(path: Path, chars: str, newline: str = "\n", final_newline: bool = True) -> Path:
    """A "custom" vocab as f5-tts's prepare_csv_wavs writes a new language's: its characters, sorted
    (the space sorts first, as id 0 must be), one per line."""
    tokens = sorted(set(chars))
    assert tokens[0] == " "
    text = newline.join(tokens) + (newline if final_newline else "")
    path.write_bytes(text.encode("utf-8"))
    return path


@dataclass(frozen=True)
class Reference:
    audio: np.ndarray  # [channels, samples]
    sample_rate: int
    text: str


@dataclass(frozen=True)
class TinySources:
    config: Path
    checkpoint: Path
    checkpoint_pt: Path
    vocoder: Path
    v0_config: Path  # the F5TTS_Base layout, scaled down
    v0_checkpoint: Path  # a v0 release's .pt (ema_model_state_dict), trained on french_vocab
    french_vocab: Path


@pytest.fixture(scope="session")
def reference() -> Reference:
    audio, sr = sf.read(str(REFERENCE_WAV), dtype="float32", always_2d=True)
    return Reference(np.ascontiguousarray(audio.T), sr, REFERENCE_TEXT)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> TinySources:
    d = tmp_path_factory.mktemp("tiny_sources")
    config = write_tiny_model_config(d / "F5TTS_v1_Base_tiny.yaml")
    v0_config = write_tiny_model_config(d / "F5TTS_Base_tiny.yaml", base="F5TTS_Base")
    french_vocab = write_vocab(d / "vocab_fr.txt", FRENCH_CHARS)
    return TinySources(
        config,
        write_random_checkpoint(config, d / "model_tiny.safetensors", fmt="safetensors"),
        write_random_checkpoint(config, d / "model_tiny.pt", fmt="pt"),
        write_tiny_vocos(d / "vocos"),
        v0_config,
        write_random_checkpoint(v0_config, d / "model_fr.pt", fmt="pt", seed=7, vocab_file=french_vocab),
        french_vocab,
    )


def as_pcm16(ref: Reference) -> Reference:
    """The reference as a 16-bit WAV would hold it (what f5-tts's preprocessing works on)."""
    return Reference(
        np.round(ref.audio * 32768).clip(-32768, 32767).astype(np.float32) / 32768, ref.sample_rate, ref.text
    )


def f5tts_preprocessed(ref: Reference, tmp_dir: Path) -> tuple[np.ndarray, int, str]:
    """f5-tts's own preprocess_ref_audio_text on `ref` written as a 16-bit WAV: (audio [C, N], rate, text)."""
    from f5_tts.infer.utils_infer import preprocess_ref_audio_text

    path = tmp_dir / f"ref_{abs(hash(ref.audio.tobytes()))}.wav"
    sf.write(str(path), ref.audio.T, ref.sample_rate, subtype="PCM_16")
    processed, text = preprocess_ref_audio_text(str(path), ref.text, show_info=lambda *_: None)
    audio, rate = sf.read(processed, dtype="float32", always_2d=True)
    return np.ascontiguousarray(audio.T), rate, text


def f5tts_samples(ref: Reference, text: str, tmp_dir: Path, speed: float = 1.0, duration: float | None = None) -> int:
    """The length of f5-tts's answer for a one-chunk `text` (infer_batch_process after its preprocessing):
    the generated frames (its duration estimate, or `duration`, less the reference's frames), vocoded by
    Vocos's centred ISTFT head into (frames - 1) * hop samples."""
    audio, rate, ref_text = f5tts_preprocessed(ref, tmp_dir)
    assert rate == contract.SAMPLE_RATE
    ref_frames = audio.shape[-1] // contract.HOP_LENGTH
    if duration is not None:
        frames = int(duration * contract.SAMPLE_RATE / contract.HOP_LENGTH) - ref_frames
    else:
        ref_text = ref_text + " " if len(ref_text[-1].encode()) == 1 else ref_text
        speed = 0.3 if len(text.encode()) < 10 else speed
        frames = int(ref_frames / len(ref_text.encode()) * len(text.encode()) / speed)
    return (frames - 1) * contract.HOP_LENGTH


def synthesis_request(ref: Reference, text: str, **inputs):
    """The pipeline's request (parse_request) for speaking `text` with `ref`; `inputs`: optional scalar
    inputs by their contract names (nfe_step, seed, speed, duration...)."""
    from pipeline.requests import parse_request

    tensors = {
        contract.REFERENCE_AUDIO: ref.audio[None],
        contract.REFERENCE_SAMPLE_RATE: np.array([[ref.sample_rate]]),
        contract.REFERENCE_TEXT: np.array([[ref.text.encode()]], dtype=object),
        contract.TARGET_TEXT: np.array([[text.encode()]], dtype=object),
    }
    tensors.update({k: np.array([[v]]) for k, v in inputs.items()})
    return parse_request(tensors)


def f5tts_load(config: Path, checkpoint: Path, vocab: Path, vocoder: Path):
    """f5-tts's own model and vocoder, as its CLI loads them: `load_model` with the config's DiT arch and
    the vocab file, `load_vocoder` from a local Vocos directory. (model, vocoder)"""
    import f5_tts.infer.utils_infer as utils_infer
    from f5_tts.model import DiT

    from pipeline.f5_model import ModelConfig

    arch = ModelConfig.load(config).arch
    model = utils_infer.load_model(DiT, arch, str(checkpoint), vocab_file=str(vocab), device="cpu")
    return model, utils_infer.load_vocoder("vocos", is_local=True, local_path=str(vocoder), device="cpu")


def f5tts_inference(model, vocoder, tmp_dir: Path, *, nfe_step: int, seed: int):
    """f5-tts's own inference with `model` and `vocoder`: infer(reference, text, seed=seed, speed=1.0,
    duration=None) -> (waveform, chunk count).

    What F5TTS.infer and infer_cli do: `preprocess_ref_audio_text` on the reference file, then
    `infer_process`'s chunking and `infer_batch_process` fed the decoded audio (infer_process itself calls
    torchaudio.load, which needs FFmpeg here), after `seed_everything(seed)`. f5-tts runs the chunks of a
    long text in a thread pool, drawing noise from the global RNG in whatever order the threads reach it;
    here that pool is sequential, so the draws are in chunk order, the order the server defines for a seed.
    """
    from concurrent.futures import ThreadPoolExecutor
    from unittest import mock

    import f5_tts.infer.utils_infer as utils_infer
    import torch
    from f5_tts.model.utils import seed_everything

    default_seed = seed

    def infer(ref: Reference, text: str, seed: int = default_seed, speed: float = 1.0, duration: float | None = None):
        audio, sample_rate, ref_text = f5tts_preprocessed(ref, tmp_dir)
        audio = torch.from_numpy(audio)
        # infer_process's chunking, on the decoded audio
        max_chars = int(
            len(ref_text.encode("utf-8"))
            / (audio.shape[-1] / sample_rate)
            * (22 - audio.shape[-1] / sample_rate)
            * speed
        )
        batches = utils_infer.chunk_text(text, max_chars=max_chars)
        seed_everything(seed)
        with mock.patch.object(utils_infer, "ThreadPoolExecutor", lambda: ThreadPoolExecutor(max_workers=1)):
            wave, rate, _ = next(
                utils_infer.infer_batch_process(
                    (audio, sample_rate),
                    ref_text,
                    batches,
                    model,
                    vocoder,
                    nfe_step=nfe_step,
                    speed=speed,
                    fix_duration=duration,
                    device="cpu",
                    progress=None,
                )
            )
        assert rate == contract.SAMPLE_RATE
        return np.asarray(wave, dtype=np.float32), len(batches)

    return infer


def export_tiny(tiny: TinySources, output: Path, *extra: str, checkpoint: Path | None = None) -> Path:
    return export_model(
        request_from_argv(
            [
                "--ckpt",
                str(checkpoint or tiny.checkpoint),
                "--model-config",
                str(tiny.config),
                "--vocoder",
                str(tiny.vocoder),
                "--output",
                str(output),
                *extra,
            ]
        )
    ).repository


@pytest.fixture(scope="session")
def released_hub_cache(tmp_path_factory) -> Path:
    """HF_HOME holding the default export's files as huggingface_hub caches them: random weights in the
    layout of SWivid/F5-TTS F5TTS_v1_Base/model_1250000.safetensors (1.3 GB) and charactr/vocos-mel-24khz
    (its real config.yaml, random pytorch_model.bin)."""
    from hub_cache import fill_cache

    from export.demo import write_random_vocos
    from pipeline.f5_model import resolve_model_config

    d = tmp_path_factory.mktemp("released")
    checkpoint = write_random_checkpoint(resolve_model_config("F5TTS_v1_Base"), d / "model_1250000.safetensors")
    fill_cache(d / "hf_home", checkpoint, write_random_vocos(d / "vocos", RELEASED_VOCOS_CONFIG))
    return d / "hf_home"


def hub_env(hf_home: Path, **extra: str) -> dict[str, str]:
    """This process's environment with its own Hugging Face and proxy settings replaced."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("HF_") and k.lower() not in ("https_proxy", "http_proxy", "all_proxy", "no_proxy")
    }
    return {**env, "HF_HOME": str(hf_home), **extra}


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory) -> Path:
    """A tiny random Whisper in openai/whisper-large-v3-turbo's layout (tests/whisper_fixture.py)."""
    from whisper_fixture import build_tiny_whisper

    return build_tiny_whisper(tmp_path_factory.mktemp("whisper") / "whisper-large-v3-turbo-tiny")


@pytest.fixture(scope="session")
def tiny_repo(tiny, tiny_whisper, tmp_path_factory) -> Path:
    # Batched DiT calls (the GPU default) so that the tests exercise the padded, masked path.
    # The export's default queue delay: the batching tests send right behind a long request
    # (behind_a_long_request), so they queue and are batched whatever the delay.
    # A second model beside the default one, as a team with two languages serves them: FR_MODEL.
    batch_chunks = str(TtsParameters.for_device("gpu").max_batch_chunks)
    repo = export_tiny(
        tiny,
        tmp_path_factory.mktemp("repo") / "model_repository",
        "--max-batch-chunks",
        batch_chunks,
        "--voice",
        f"{VOICE}={REFERENCE_WAV}:{REFERENCE_TEXT}",
        "--asr",
        str(tiny_whisper),
    )
    return export_tiny(
        tiny,
        repo,
        "--name",
        FR_MODEL,
        "--model-config",
        str(tiny.v0_config),
        "--vocab",
        str(tiny.french_vocab),
        "--max-batch-chunks",
        batch_chunks,
        checkpoint=tiny.v0_checkpoint,
    )


@pytest.fixture(scope="session")
def server(tiny_repo, request):
    """A real tritonserver on the tiny repository, shared by the session, bound to loopback only
    (test_launcher checks that the host is honoured). Says on the terminal that it ran and answered."""
    srv = TritonServer(tiny_repo, ready_timeout=180, host="127.0.0.1")
    started = time.monotonic()
    srv.start()
    _say(
        request,
        f"tritonserver pid {srv.pid} ready in {time.monotonic() - started:.1f} s "
        f"(gRPC {srv.grpc_url}, HTTP {srv.http_url}), shared by the session",
    )
    try:
        yield srv
        stats = model_stats(srv)
        _say(
            request,
            f"tritonserver pid {srv.pid} answered {stats.requests} f5_tts requests in {stats.executions} executions",
        )
    finally:
        # A stream cancelled by an earlier test goes on to the end of its current chunk (seconds on a
        # loaded machine): stopping the server then races Triton's unload with it. The stream model
        # reports how many streams it serves; a clean stop starts once none is left.
        streams_ended, deadline = False, time.monotonic() + 120
        while not streams_ended and time.monotonic() < deadline and srv.process is not None:
            try:
                streams_ended = metric_value(srv, contract.STREAMS_ACTIVE_METRIC) == 0
            except OSError:  # the server is gone: its stop says how it ended
                break
            time.sleep(0.1)
        pid, stopping = srv.pid, time.monotonic()
        # A grace beyond Triton's own exit timeout (30 s): Triton decides, and exits 1 when a client
        # connection or a model outlives that timeout. The time it took is said on the terminal.
        code = srv.stop(grace=45)
        _say(request, f"tritonserver pid {pid} stopped in {time.monotonic() - stopping:.1f} s, exit code {code}")
    # Triton waits for open client connections before it exits: a test that leaks one costs every
    # session the stop's whole grace period, and the server exits non-zero.
    if code != 0:
        log = srv.log_path.read_text(errors="replace") if srv.log_path and srv.log_path.exists() else ""
        why = [line for line in log.splitlines() if "Timeout" in line or "live model" in line][-3:]
        streams = "no stream was running" if streams_ended else "streams were still running at the stop"
        pytest.fail(
            f"the session's tritonserver did not stop cleanly (exit code {code}; {streams}): "
            + (" | ".join(why) or "no timeout reported")
            + f"; see {srv.log_path}"
        )


@pytest.fixture
def start_server():
    """start_server(repository, **TritonServer options) -> a started server of this test alone,
    stopped by PID when the test ends, pass or fail."""
    started: list[TritonServer] = []

    def start(repository: Path, **options) -> TritonServer:
        srv = TritonServer(repository, **{"ready_timeout": 180, **options})
        started.append(srv)
        return srv.start()

    yield start
    for srv in started:
        srv.stop()


def wait_until_answering(url: str, proc, log: Callable[[], str], timeout: float, what: str) -> float:
    """Poll `url` until it answers with a success status; seconds waited. Fails with the end of `log()`
    if `proc` exits or `timeout` passes first."""
    import urllib.error
    import urllib.request

    started = time.monotonic()
    while True:
        assert proc.poll() is None, f"{what} exited with {proc.returncode}:\n{log()[-3000:]}"
        assert time.monotonic() - started < timeout, f"{what} not up after {timeout} s:\n{log()[-3000:]}"
        try:
            with urllib.request.urlopen(url, timeout=2):
                return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)


def _say(request, line: str) -> None:
    """A line on the terminal, past pytest's output capture."""
    terminal = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if terminal and capture:
        with capture.global_and_fixture_disabled():
            terminal.write_line(f"\n[{request.fixturename}] {line}")


@dataclass(frozen=True)
class ModelStats:
    requests: int  # answered successfully
    executions: int  # model executions (a dynamic batch is one)
    batches: dict[int, int]  # batch size -> executions of that size (failed requests included)


def model_stats(srv: TritonServer, model: str = contract.TTS_MODEL) -> ModelStats:
    """Triton's statistics of `model`. The Python backend records a batch after its answers are sent:
    a client can hold every answer while the batch is not counted yet (see behind_a_long_request)."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(srv.http_url)
    try:
        stats = client.get_inference_statistics(model)["model_stats"][0]
    finally:
        client.close()
    return ModelStats(
        int(stats["inference_stats"]["success"]["count"]),
        int(stats["execution_count"]),
        {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats.get("batch_stats", [])},
    )


def pending_requests(srv: TritonServer, model: str = contract.TTS_MODEL) -> int:
    """Triton's nv_inference_pending_request_count: requests of `model` that reached the server and
    wait in its queue for an instance (not those executing)."""
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(srv.metrics_url, timeout=10) as r:
        text = r.read().decode()
    metric = r'^nv_inference_pending_request_count\{model="%s",version="%s"\} (\d+)'
    found = re.search(metric % (re.escape(model), contract.MODEL_VERSION), text, re.M)
    assert found, f"no pending-request metric for {model} at {srv.metrics_url}"
    return int(found.group(1))


def metric_value(srv: TritonServer, name: str) -> float:
    """A metric of the server's metrics port (the sum over its labels); 0 when it is not there."""
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(srv.metrics_url, timeout=10) as r:
        text = r.read().decode()
    return sum(float(m) for m in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M))


ROOT = Path(__file__).resolve().parent.parent
PERF_ANALYZER = Path(sys.executable).parent / "perf_analyzer"  # the binary tritonclient's wheel installs


def run_sh(protocol: str, url: str, concurrencies: str, timeout: float = 600, **env: str):
    """perf_analyzer_configs/run.sh against `url` with the environment's perf_analyzer; `env` adds settings
    (MODEL, REQUEST_COUNT, OUT, INPUT_DATA, ... or another PERF_ANALYZER). The finished process."""
    return subprocess.run(
        [str(ROOT / "perf_analyzer_configs" / "run.sh"), protocol, url, concurrencies],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PERF_ANALYZER": str(PERF_ANALYZER), **env},
        cwd=ROOT,
    )


def wait_for(condition, what: str, timeout: float = 120.0, every: float = 0.05):
    """Poll `condition()` until it returns something true (returned); fail after `timeout` s naming `what`.
    The bound only stops a hung test: nothing is asserted about how long the wait took."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(every)
    return value


def speak(
    server: TritonServer,
    reference: Reference,
    text: str = SHORT_TEXT,
    protocol: str = "grpc",
    client=None,
    model: str = contract.TTS_MODEL,
    **options,
) -> np.ndarray:
    url = server.grpc_url if protocol == "grpc" else server.http_url
    options.setdefault("nfe_step", 8)
    waveform, rate = synthesize(
        text,
        reference.audio,
        reference.sample_rate,
        reference.text,
        url=url,
        protocol=protocol,
        options=SynthesisOptions(**options),
        timeout=120,
        client=client,
        model=model,
    )
    assert rate == contract.SAMPLE_RATE
    return waveform


def behind_a_long_request(
    server, sends: list[Callable[[], object]], requests: Callable[[object], int] = lambda result: 1
) -> tuple[list, dict[int, int]]:
    """Call each of `sends` in a thread of its own, right behind a long request to f5_tts (the registered
    voice, so any copy of the tiny repository serves it). Returns each call's result (or the exception it
    raised) and the f5_tts batches executed meanwhile (batch size -> executions).

    The calls find the model busy for seconds and queue together whatever the queue delay and the
    machine's load (or join the long request's batch). (Freezing the stub instead crashed tritonserver
    2.51: its Python backend's IPC lock times out.) The Python backend records a batch after its
    answers are sent, so the batches are read once Triton counts the long request and `requests(result)`
    f5_tts requests per call that returned (one by default; a stream makes one per chunk) and one per
    call that raised.
    """
    before = model_stats(server).batches
    go = threading.Event()

    def run(send):
        try:
            if not go.wait(timeout=30):
                raise TimeoutError("the long request was never sent")
            return send()
        except Exception as e:  # collected and asserted by the caller
            return e

    with concurrent.futures.ThreadPoolExecutor(len(sends) + 1) as pool:
        futures = [pool.submit(run, send) for send in sends]
        long_request = pool.submit(
            synthesize,
            LONG_TEXT,
            voice=VOICE,
            url=server.grpc_url,
            timeout=120,
            options=SynthesisOptions(nfe_step=8, seed=0),
        )
        go.set()
        long_request.result()
        results = [f.result() for f in futures]
    errors = [r for r in results if isinstance(r, Exception)]
    sent = 1 + len(errors) + sum(requests(r) for r in results if not isinstance(r, Exception))

    def batches_since():
        now = model_stats(server).batches
        new = {size: n - before.get(size, 0) for size, n in now.items() if n > before.get(size, 0)}
        return new if sum(size * n for size, n in new.items()) >= sent else None

    # At least, not exactly: the previous test's last batch may be counted after `before` was read.
    return results, wait_for(
        batches_since,
        f"Triton's batch statistics to count the {sent} requests (calls that raised: {errors})",
        timeout=30,
    )


def calls_shared_a_batch(batched: dict[int, int]) -> bool:
    """Whether two of behind_a_long_request's calls ran in one batch. The long request with one call
    makes at most one batch of two; a batch of three, or a second batch of two, holds two calls."""
    return max(batched) >= 3 or batched.get(2, 0) >= 2


def speak_concurrently(server, jobs: list[dict]) -> tuple[list, dict[int, int]]:
    """Speak each job (speak()'s arguments) at once, behind a long request: see behind_a_long_request."""
    return behind_a_long_request(server, [lambda job=job: speak(server, **job) for job in jobs])


def assert_same_audio(got: np.ndarray, want: np.ndarray, rel: float = 1e-3) -> None:
    """Equal length, and no sample differs by more than `rel` of the peak (-60 dB for 1e-3)."""
    assert got.shape == want.shape, f"length {got.shape} != {want.shape}"
    assert np.isfinite(got).all()
    peak = float(np.max(np.abs(want)))
    assert peak > 0
    err = float(np.max(np.abs(got - want)))
    assert err <= rel * peak, f"max |diff| {err:.3e} > {rel} x peak {peak:.3e}"


# --- tiers -------------------------------------------------------------------------------------
TIERS = ("unit", "integration", "slow")
SHARED_SERVER = {"server"}  # a test using it (or a fixture that does) is integration
OWN_SERVER = {"start_server"}  # a test starting servers of its own is slow (each start and stop costs ~10 s)


def pytest_collection_modifyitems(config, items):
    for item in items:
        marked = [t for t in TIERS if item.get_closest_marker(t)]
        fixtures = set(getattr(item, "fixturenames", ()))
        if "slow" in marked or OWN_SERVER & fixtures:
            tier = "slow"
        elif "integration" in marked or SHARED_SERVER & fixtures:
            tier = "integration"
        elif marked == ["unit"] or not marked:
            tier = "unit"
        else:
            raise pytest.UsageError(f"{item.nodeid}: tier markers {marked} contradict each other")
        if tier not in marked:
            item.add_marker(tier)


@pytest.fixture(autouse=True)
def _unit_tests_start_no_server(request, monkeypatch):
    """A unit test that reaches a started tritonserver fails, naming the marker it needs (the server
    is stopped again by TritonServer.start's own clean-up)."""
    if request.node.get_closest_marker("unit") is None:
        return

    def refuse(self):
        pytest.fail(
            f"{request.node.nodeid} started tritonserver but is a unit test: use the session's `server`, "
            "or `start_server` for a server of its own (slow), or mark it @pytest.mark.slow"
        )

    monkeypatch.setattr(TritonServer, "wait_ready", refuse)


# --- the OpenAI-compatible gateway (gateway/) in front of a server ---------------------------------------------------
GATEWAY_KEY = "test-key"


class Gateway:
    """`python -m gateway` as its own process on a free port; stopped by PID."""

    def __init__(
        self, triton_urls: list[str], voices_dir: Path, log_path: Path, *extra: str, api_key: str | None = GATEWAY_KEY
    ) -> None:
        import os
        import subprocess
        import sys

        from launcher.server import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.voices_dir = voices_dir
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if k != "F5_GATEWAY_API_KEY"}
        if api_key:
            env["F5_GATEWAY_API_KEY"] = api_key
        args = [a for url in triton_urls for a in ("--triton-url", url)]
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gateway",
                    *args,
                    "--port",
                    str(self.port),
                    "--voices-dir",
                    str(voices_dir),
                    *extra,
                ],
                cwd=Path(__file__).resolve().parent.parent,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_live(self, timeout: float = 60) -> "Gateway":
        wait_until_answering(f"{self.url}/health/live", self.proc, self.log_text, timeout, "gateway")
        return self

    def stop(self) -> int:
        import subprocess

        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="module")
def gateway(server, tmp_path_factory, request):
    """The gateway in front of this module's server, with an API key and an empty voice library."""
    work = tmp_path_factory.mktemp("gateway")
    gw = Gateway([server.grpc_url], work / "voices", work / "gateway.log", "--max-upload-mb", "2")
    try:
        gw.wait_live()
        _say(request, f"gateway pid {gw.proc.pid} on {gw.url} in front of tritonserver pid {server.pid}")
        yield gw
    finally:
        gw.stop()
