"""Write a ready-to-serve Triton model repository from an F5-TTS checkpoint and Vocos, or add a
model to one (--name NAME: f5_tts_NAME, f5_tts_NAME_stream, and vocoder_NAME only when its Vocos
differs from the repository's).

Layout written (all generated; never committed):
  f5_tts/config.pbtxt, f5_tts/1/{model.py, model.safetensors, model_config.yaml, vocab.txt},
  f5_tts/1/voices/{voices.json, <name>.wav} (registered voices, when given),
  f5_tts/warmup/<input files>, f5_tts_stream/{config.pbtxt, 1/model.py} (decoupled, no weights),
  vocoder/config.pbtxt, vocoder/1/{model.py, vocos.onnx, vocos/{config.yaml, pytorch_model.bin}},
  transcriber/{config.pbtxt, 1/model.py, 1/whisper/<the Whisper's files as released>} (with --asr),
  manifest.json (every model with its sources and checksums, options, versions).
The repository is built in a temporary sibling directory and moved into place at the end,
so a failed export never leaves a half-written repository behind.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import os
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from importlib.resources import files
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

import contract
from export import asr, memory
from export import checkpoint as ckpt
from export import model_config as mc
from export import vocoder as voc
from export.errors import ExportError
from pipeline.f5_model import DTYPES, ModelConfig, build_cfm, load_vocab
from pipeline.voices import VOICES_DIR, VoiceError, check_transcripts, prepare_voice, save_voices

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = PROJECT_ROOT / "model_repository"
REFERENCE_WAV = Path(str(files("f5_tts").joinpath("infer/examples/basic/basic_ref_en.wav")))
REFERENCE_TEXT = "Some call me nature, others call me mother nature."


@dataclass(frozen=True)
class ExportSources:
    checkpoint: Path
    model_config: Path
    vocab: Path
    vocoder_dir: Path  # a Vocos directory (config.yaml + pytorch_model.bin), checked by vocoder.resolve_vocoder
    vocoder_source: str  # where vocoder_dir came from, for the manifest (a path or hf://...)
    use_ema: bool = True
    voices: tuple[tuple[str, Path, str], ...] = ()  # (name, audio file, transcript or "": transcribe it)
    asr_files: dict[str, Path] | None = None  # a Whisper's files (export.asr.resolve_asr); None: no transcriber
    asr_source: str = ""  # where they came from, for the manifest


class Steps:
    """Numbered progress lines with timings for the long steps of an export."""

    def __init__(self, total: int) -> None:
        self.total, self.n = total, 0

    def __call__(self, title: str):
        self.n += 1
        n, total = self.n, self.total

        class _Step:
            def __enter__(self_inner):
                self_inner.t = time.monotonic()
                print(f"[{n}/{total}] {title} ...", flush=True)

            def __exit__(self_inner, exc_type, *_):
                if exc_type is None:
                    print(f"[{n}/{total}] {title}: done in {time.monotonic() - self_inner.t:.1f} s", flush=True)

        return _Step()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _versions() -> dict[str, str]:
    out = {}
    for pkg in (
        "f5-tts-triton",
        "f5-tts",
        "torch",
        "torchaudio",
        "vocos",
        "onnx",
        "onnxruntime",
        "onnxruntime-gpu",
        "tritonclient",
        "numpy",
    ):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _write_bytes_tensor(path: Path, value: str) -> None:
    data = value.encode("utf-8")  # Triton's BYTES serialisation: 4-byte LE length, then bytes
    path.write_bytes(struct.pack("<I", len(data)) + data)


def write_warmup(directory: Path, reference: np.ndarray, sample_rate: int) -> dict[str, list[int]]:
    """model_warmup inputs from real speech; returns the dims of each input (batch excluded)."""
    directory.mkdir(parents=True)
    audio = np.ascontiguousarray(reference[None, :], dtype="<f4")  # [channels=1, samples]
    (directory / contract.REFERENCE_AUDIO).write_bytes(audio.tobytes())
    (directory / contract.REFERENCE_SAMPLE_RATE).write_bytes(np.array([sample_rate], "<i4").tobytes())
    _write_bytes_tensor(directory / contract.REFERENCE_TEXT, REFERENCE_TEXT)
    _write_bytes_tensor(directory / contract.TARGET_TEXT, mc.WARMUP_TARGET_TEXT)
    (directory / contract.NFE_STEP).write_bytes(np.array([mc.WARMUP_NFE_STEP], "<i4").tobytes())
    (directory / contract.SEED).write_bytes(np.array([0], "<i8").tobytes())
    return {
        contract.REFERENCE_AUDIO: list(audio.shape),
        contract.REFERENCE_SAMPLE_RATE: [1],
        contract.REFERENCE_TEXT: [1],
        contract.TARGET_TEXT: [1],
        contract.NFE_STEP: [1],
        contract.SEED: [1],
    }


def _copy_model_code(template: str, model: str, repository: Path) -> None:
    """A model's model.py, from this project's model_repository/<template> (f5_tts_NAME runs f5_tts's)."""
    rel = Path(contract.MODEL_VERSION) / contract.MODEL_CODE_FILE
    shutil.copyfile(TEMPLATES / template / rel, repository / model / rel)


def _lock_down(root: Path) -> None:
    """Nothing in the repository is writable by group or others."""
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def check_output(output: Path, force: bool) -> None:
    """Refuse an --output that the export could not replace at its end (before any work)."""
    output = Path(output).resolve()
    if output.exists() and not output.is_dir():
        raise FileExistsError(
            f"output {output} is a file, not a directory; --output names the model repository "
            "directory to write (--force replaces only a directory): choose another path"
        )
    if output.exists() and any(output.iterdir()) and not force:
        raise FileExistsError(f"output {output} exists and is not empty; pass --force to replace it")
    blocking = next((p for p in output.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise FileExistsError(
            f"output {output} cannot be created: {blocking} is a file, not a directory; choose another --output"
        )
    _check_writable(output)


# Why a directory could not be written, and what to do, by errno (root too is stopped by all of these).
_UNWRITABLE = {
    errno.EROFS: ("it is on a read-only file system", "choose a --output on a writable file system"),
    errno.EACCES: ("permission denied", "choose a --output you may write, or fix the directory's permissions"),
    errno.EPERM: (
        "operation not permitted (an immutable or append-only directory? see lsattr -d)",
        "choose another --output, or clear the attribute (chattr -i / -a)",
    ),
    errno.ENOENT: (
        "this file system does not accept new directories (a virtual one such as /proc or /sys)",
        "choose a --output on a disk",
    ),
}


def _probe(directory: Path, output: Path) -> None:
    """Create and remove a directory in `directory` (as the staging one will be), or raise ExportError
    saying why `output` cannot be written. A name of its own: a stale staging directory is no error."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=f".{output.name}.export-probe-", dir=directory))
    except OSError as e:
        why, todo = _UNWRITABLE.get(e.errno, (e.strerror or str(e), "choose another --output"))
        raise ExportError(
            f"output {output} cannot be written: creating a directory in {directory} failed: {why}; {todo}"
        ) from None


def _check_writable(output: Path) -> None:
    """Fail in a second, before the export's minutes of work, where its end would fail: the staging
    directory beside the output cannot be made, or an existing output cannot be replaced."""
    # Beside the output, where the staging directory goes; when the output's parents do not exist
    # yet, where the first of them would be made.
    _probe(next(p for p in output.parents if p.exists()), output)
    if not output.exists():
        return
    _probe(output, output)
    if os.path.ismount(output):  # renaming onto or removing a mount point fails with EBUSY
        raise ExportError(
            f"output {output} is a mount point, which the export cannot replace (it writes the "
            f"repository beside it and moves it into place); choose a directory inside it, "
            f"e.g. --output {output / 'model_repository'}"
        )
    for directory in [p for p in output.rglob("*") if p.is_dir() and not p.is_symlink()]:
        if not os.access(directory, os.W_OK | os.X_OK):  # its files could not be removed
            raise ExportError(
                f"output {output} cannot be replaced: {directory} is not writable; fix its "
                "permissions or choose another --output"
            )


def prepare_output(output: Path, force: bool) -> Path:
    """The staging directory beside a checked --output."""
    check_output(output, force)
    return _staging_beside(output)


def _staging_beside(output: Path) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.parent / f".{output.name}.export-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    return staging


def read_manifest(repository: Path) -> dict:
    """The manifest of a repository this export wrote, to add a model to it; ExportError if there is none."""
    path = Path(repository) / contract.MANIFEST_FILE
    if not path.is_file():
        raise ExportError(
            f"--name adds a model to an exported repository, but {path} does not exist: export the default "
            f"model first (without --name), then add models to it with --name NAME --output {repository}"
        )
    manifest = json.loads(path.read_text())
    if "models" not in manifest:
        raise ExportError(
            f"{path} was written by an older export (it lists no 'models'); re-export the repository, "
            "then add models to it"
        )
    return manifest


@dataclass(frozen=True)
class Addition:
    """What adding model `name` to the repository at `output` finds there (check_addition)."""

    manifest: dict
    has_transcriber: bool


def check_addition(output: Path, name: str, *, force: bool, adds_transcriber: bool, locked: bool = False) -> Addition:
    """Refuse, before any work or download, an addition the repository cannot take: a bad or taken name
    (without --force), a second transcriber, a repository that is not one or cannot be written."""
    output = Path(output).resolve()
    problem = contract.model_name_problem(name)
    if problem:
        raise ExportError(f"--name: {problem}")
    manifest = read_manifest(output)
    tts_name = contract.tts_model_name(name)
    if tts_name in manifest["models"] and not force:
        raise ExportError(
            f"{output} already has model {name!r} ({tts_name}); pass --force to replace that model (and only it)"
        )
    has_transcriber = (output / contract.TRANSCRIBER_MODEL / contract.MODEL_CONFIG_FILE).is_file()
    if has_transcriber and adds_transcriber:
        raise ExportError(
            f"{output} already has a transcriber, which model {name!r} uses: drop --asr (or --no-asr for none)"
        )
    _probe(output.parent, output)  # the staging directory goes beside the repository
    _probe(output, output)  # and the new model's directories into it
    if not locked:  # another addition under way: refused now, not after the checkpoint is read
        os.close(_lock(output))
    return Addition(manifest, has_transcriber)


def directory_hashes(root: Path, directory: str) -> dict[str, str]:
    """sha256 of every file under root/directory, by path relative to root: what proves that adding a
    model left the others as they were."""
    base = Path(root)
    return {
        str(path.relative_to(base)): sha256(path)
        for path in sorted((base / directory).rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


def _vocos_files(directory: Path) -> dict[str, str]:
    return {name: sha256(directory / name) for name in (voc.CONFIG_FILE, voc.WEIGHTS_FILE)}


def export_repository(
    sources: ExportSources,
    output: Path,
    options: mc.ServingOptions,
    *,
    force: bool = False,
    name: str | None = None,
    gpu_memory_gb: float | None = None,
    extra_manifest: dict | None = None,
) -> dict:
    """Write a repository (name None: its default model f5_tts), or add model `name` to the one at
    `output` (f5_tts_NAME and its stream; its vocoder too when its Vocos is not the repository's).
    Adding never rewrites what is there: the other models' files keep their hashes."""
    options.check()
    output = Path(output).resolve()
    tts_name = contract.tts_model_name(name)
    stream_name = contract.stream_model_name(tts_name)
    lock = None
    if name is not None:
        if output.is_dir():
            lock = _lock(output)  # held to the end of this addition, and the manifest read under it
        addition = check_addition(
            output, name, force=force, adds_transcriber=sources.asr_files is not None, locked=lock is not None
        )
        existing, has_transcriber = addition.manifest, addition.has_transcriber
        staging = _staging_beside(output)
    else:
        existing, has_transcriber = None, False
        staging = prepare_output(output, force)
    names = [voice for voice, _, _ in sources.voices]
    if len(set(names)) != len(names):
        raise VoiceError(f"voice names must be unique, got {names}")
    adds_transcriber = sources.asr_files is not None
    uses_transcriber = adds_transcriber or has_transcriber
    step = Steps(6 + bool(sources.voices) + adds_transcriber)
    check_transcripts(sources.voices, has_transcriber=uses_transcriber)
    transcriber = None
    transcribed: dict[str, str] = {}
    asr_check: dict = {}
    new_dirs = [tts_name, stream_name]
    try:
        # The vocoder: one of the repository's when this model's Vocos is the same (not copied twice).
        vocos_files = _vocos_files(sources.vocoder_dir)
        shared = _vocoder_with_the_same_vocos(existing, vocos_files, replacing=tts_name)
        if shared is not None:
            vocoder_name, export_vocoder = shared, False
        else:
            vocoder_name, export_vocoder = contract.vocoder_model_name(name), True
            new_dirs.append(vocoder_name)
        if adds_transcriber:
            new_dirs.append(contract.TRANSCRIBER_MODEL)
        vocoder_dir = f"../{vocoder_name}/{contract.MODEL_VERSION}"
        options = dataclasses.replace(
            options,
            tts=dataclasses.replace(
                options.tts,
                transcriber_model=contract.TRANSCRIBER_MODEL if uses_transcriber else "",
                vocoder_file=f"{vocoder_dir}/{contract.VOCODER_ONNX_FILE}",
                torch_vocoder_dir=f"{vocoder_dir}/{contract.TORCH_VOCOS_DIR}",
            ),
        )
        with step("reading model config, vocab and checkpoint"):
            model_cfg = ModelConfig.load(sources.model_config)
            if options.tts.engine == "compiled" and model_cfg.backbone != "DiT":
                raise ValueError(
                    f"--engine compiled supports the DiT backbone (F5-TTS); {model_cfg.name} is "
                    f"{model_cfg.backbone}: use --engine eager"
                )
            vocab_map, vocab_size = load_vocab(sources.vocab)
            state = ckpt.read_state_dict(sources.checkpoint, use_ema=sources.use_ema)
        with step(f"checking the checkpoint against {model_cfg.name}"):
            cfm = build_cfm(model_cfg, vocab_map)
            ckpt.check_fits(state, cfm, source=sources.checkpoint, vocab_size=vocab_size)
            cfm.load_state_dict(state, strict=False)
            n_params = sum(p.numel() for p in cfm.transformer.parameters())
            print(f"      {n_params / 1e6:.1f} M parameters, vocab {vocab_size}")
        cost = memory.model_cost(
            n_params,
            options,
            vocoder_bytes=memory.vocos_bytes(sources.vocoder_dir),
            vocoder_model=vocoder_name if export_vocoder else None,
            transcriber_bytes=memory.whisper_bytes(sources.asr_files) if adds_transcriber else 0,
        )
        if gpu_memory_gb is not None:
            memory.check_fits(existing, tts_name, cost, gpu_memory_gb)
        tts_dir = staging / tts_name / contract.MODEL_VERSION
        with step(f"writing DiT weights ({options.tts.dtype})"):
            from safetensors.torch import save_file

            tts_dir.mkdir(parents=True)
            dtype = DTYPES[options.tts.dtype]
            weights = {
                k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in cfm.state_dict().items()
            }
            save_file(weights, str(tts_dir / contract.TTS_WEIGHTS_FILE))
            shutil.copyfile(sources.model_config, tts_dir / contract.TTS_ARCH_FILE)
            shutil.copyfile(sources.vocab, tts_dir / contract.TTS_VOCAB_FILE)
            _copy_model_code(contract.TTS_MODEL, tts_name, staging)
        if adds_transcriber:
            asr_dir = staging / contract.TRANSCRIBER_MODEL / contract.MODEL_VERSION
            with step(f"copying the Whisper for the transcriber ({sources.asr_source}) and checking it"):
                whisper_dir = asr.write_whisper(sources.asr_files, asr_dir)
                transcriber, heard, seconds = asr.check_whisper(whisper_dir, REFERENCE_WAV)
                print(f"      {REFERENCE_WAV.name} transcribed on CPU in {seconds:.1f} s: {heard!r}")
                asr_check = {"reference": REFERENCE_WAV.name, "transcript": heard, "cpu_seconds": round(seconds, 2)}
                _copy_model_code(contract.TRANSCRIBER_MODEL, contract.TRANSCRIBER_MODEL, staging)
        if sources.voices:
            with step(f"preparing {len(sources.voices)} registered voice(s) as f5-tts prepares references"):
                if transcriber is None and has_transcriber and any(not text for _, _, text in sources.voices):
                    transcriber = asr.load_whisper(output / contract.TRANSCRIBER_MODEL / contract.MODEL_VERSION)
                prepared = {}
                for voice, path, text in sources.voices:
                    prepared[voice] = prepare_voice(path, text, options.tts.limits, transcriber=transcriber)
                    if not text:
                        transcribed[voice] = prepared[voice].text.strip()
                        print(f"      {voice}: transcribed {transcribed[voice]!r}")
                save_voices(tts_dir / VOICES_DIR, prepared)
                for voice, path, _ in sources.voices:
                    ref = prepared[voice]
                    print(f"      {voice}: {path} ({ref.seconds:.1f} s{', clipped' if ref.clipped else ''})")
        reference, sample_rate = sf.read(str(REFERENCE_WAV), dtype="float32")
        vocoder_entry = None
        if export_vocoder:
            voc_dir = staging / vocoder_name / contract.MODEL_VERSION
            voc_dir.mkdir(parents=True)
            with step(f"exporting the Vocos vocoder to ONNX ({vocoder_name}) and checking it against PyTorch"):
                vocos = voc.load_vocos(sources.vocoder_dir)
                voc.export_onnx(vocos, voc_dir / contract.VOCODER_ONNX_FILE)
                with torch.no_grad():
                    mel = cfm.mel_spec(torch.from_numpy(reference)[None])  # real speech, f5-tts's mel front end
                error = voc.check_onnx(vocos, voc_dir / contract.VOCODER_ONNX_FILE, mel)
                print(
                    f"      ONNX vs PyTorch Vocos on {REFERENCE_WAV.name}: max |error| = {error:.2e} "
                    f"(limit {voc.MAX_ABS_ERROR:.0e})"
                )
                _copy_model_code(contract.VOCODER_MODEL, vocoder_name, staging)
                # The PyTorch Vocos too: GPU instances of f5_tts vocode with it where the mels are.
                (voc_dir / contract.TORCH_VOCOS_DIR).mkdir()
                for file in (voc.CONFIG_FILE, voc.WEIGHTS_FILE):
                    shutil.copyfile(sources.vocoder_dir / file, voc_dir / contract.TORCH_VOCOS_DIR / file)
            vocoder_entry = {
                "source": sources.vocoder_source,
                "files": vocos_files,
                "onnx_sha256": sha256(voc_dir / contract.VOCODER_ONNX_FILE),
                "onnx_max_abs_error": error,
            }
        else:
            with step(f"vocoder: the repository's own '{vocoder_name}' (the same Vocos files: not copied again)"):
                pass
        with step("writing config.pbtxt and warm-up samples"):
            dims = write_warmup(staging / tts_name / "warmup", reference, sample_rate)
            configs = [mc.tts_config(options, dims, names, name=tts_name), mc.stream_config(options, tts_name)]
            if export_vocoder:
                configs.append(mc.vocoder_config(options, vocoder_name))
            if adds_transcriber:
                configs.append(mc.transcriber_config(options, sources.asr_source))
            for config in configs:
                (staging / config.name / contract.MODEL_VERSION).mkdir(parents=True, exist_ok=True)
                (staging / config.name / contract.MODEL_CONFIG_FILE).write_text(mc.to_pbtxt(config))
            _copy_model_code(contract.STREAM_MODEL, stream_name, staging)
        with step("writing manifest.json"):
            entry = {
                "name": contract.model_short_name(tts_name),
                "stream_model": stream_name,
                "vocoder_model": vocoder_name,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "demo_model": options.tts.demo_model,
                "model": model_cfg.name,
                "parameters": n_params,
                "sources": {
                    source: {"path": str(path), "sha256": sha256(path)}
                    for source, path in [
                        ("checkpoint", sources.checkpoint),
                        ("model_config", sources.model_config),
                        ("vocab", sources.vocab),
                    ]
                },
                "voices": {
                    voice: {
                        "path": str(path),
                        "sha256": sha256(path),
                        "text": text or transcribed[voice],
                        "transcribed": not text,
                    }
                    for voice, path, text in sources.voices
                },
                "options": {**options.manifest(), "use_ema": sources.use_ema},
                "gpu_memory": cost.manifest(),
                "versions": _versions(),
                "files": {**directory_hashes(staging, tts_name), **directory_hashes(staging, stream_name)},
            }
            manifest = existing or {"versions": _versions(), "models": {}, "vocoders": {}}
            replaced = manifest["models"].get(tts_name, {}).get("vocoder_model")
            manifest["models"][tts_name] = entry
            # a replaced model's own vocoder goes with it, unless another model still vocodes with it
            orphan = replaced not in (None, contract.VOCODER_MODEL, vocoder_name) and all(
                m.get("vocoder_model") != replaced for m in manifest["models"].values()
            )
            if orphan:
                manifest["vocoders"].pop(replaced, None)
            if vocoder_entry is not None:
                manifest["vocoders"][vocoder_name] = vocoder_entry
            if adds_transcriber:
                manifest["transcriber"] = {
                    "source": sources.asr_source,
                    "files": {
                        file: sha256(
                            staging / contract.TRANSCRIBER_MODEL / contract.MODEL_VERSION / contract.WHISPER_DIR / file
                        )
                        for file in sorted(sources.asr_files)
                    },
                    "check": asr_check,
                    "gpu_memory": cost.transcriber_manifest(),
                }
            manifest["gpu_memory"] = memory.repository_total(manifest)
            manifest.update(extra_manifest or {})
            (staging / contract.MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        _lock_down(staging)
        if existing is None:
            if output.exists():
                shutil.rmtree(output)
            staging.rename(output)
        else:
            _move_in(staging, output, new_dirs, removed=[replaced] if orphan else [])
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if lock is not None:
            os.close(lock)


def _move_in(staging: Path, output: Path, directories: list[str], removed: list[str] = ()) -> None:
    """An added model's directories into the repository, then its manifest in one rename.

    What the model needs goes in before the model itself (vocoder and transcriber, then the stream model,
    then f5_tts_NAME), so that a server started meanwhile never finds the model without them. A replaced
    model's directories (and a vocoder only it used, `removed`) are first renamed aside, and put back if
    a rename fails; they are deleted once the new manifest is in place."""
    order = sorted(directories, key=lambda d: (contract.is_tts_model(d), d.endswith(contract.STREAM_SUFFIX)))
    aside = staging / ".replaced"
    aside.mkdir()
    moved: list[str] = []
    set_aside: list[str] = []
    try:
        for directory in [*order, *removed]:
            if (output / directory).exists():
                (output / directory).rename(aside / directory)
                set_aside.append(directory)
            if directory in directories:
                (staging / directory).rename(output / directory)
                moved.append(directory)
        (staging / contract.MANIFEST_FILE).replace(output / contract.MANIFEST_FILE)
    except OSError:
        for directory in reversed(moved):
            (output / directory).rename(staging / directory)
        for directory in set_aside:
            (aside / directory).rename(output / directory)
        raise


def _vocoder_with_the_same_vocos(manifest: dict | None, vocos_files: dict[str, str], replacing: str) -> str | None:
    """The repository's vocoder model whose Vocos files (sha256, as its manifest entry records them) are
    `vocos_files`, if any. None: the model gets its own, vocoder_NAME, which must then be no other model's."""
    if manifest is None:
        return None
    for vocoder, entry in manifest["vocoders"].items():
        if entry.get("files") == vocos_files:
            return vocoder
    own = contract.vocoder_model_name(contract.model_short_name(replacing))
    users = sorted(n for n, m in manifest["models"].items() if n != replacing and m.get("vocoder_model") == own)
    if users:
        raise ExportError(
            f"{own} vocodes {', '.join(users)} too; replacing it with another Vocos would change them: "
            "add this checkpoint under another --name"
        )
    return None


def _lock(output: Path) -> int:
    """An exclusive lock on the repository directory for one addition (flock: released when the export
    ends, however it ends), so that two additions never write one manifest each."""
    import fcntl

    fd = os.open(output, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ExportError(
            f"another export is adding a model to {output} right now; wait for it to finish, then run this one"
        ) from None
    return fd
