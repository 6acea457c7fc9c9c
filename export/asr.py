"""The optional `transcriber` model: a Whisper checkpoint's files, copied as released.

`--asr` names a hub repository (default: the one f5-tts transcribes with) or a local directory
holding the same files. Hub files come through export.hub, so the cache, HF_HUB_OFFLINE, mirrors
and tokens work as for the DiT and the Vocos. The copy is loaded with transformers' pipeline, as
the model will load it, and asked to transcribe the reference the export ships, so a repository is
never written with a Whisper that cannot run.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import contract
from export.errors import ExportError
from export.hub import HubFileError, fetch

REQUIRED_FILES = ("config.json", "generation_config.json", "preprocessor_config.json", "tokenizer_config.json")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # the first the source has
OPTIONAL_FILES = (
    "tokenizer.json",
    "vocab.json",
    "merges.txt",
    "normalizer.json",
    "added_tokens.json",
    "special_tokens_map.json",
)
HINT = "pass --asr DIR with a local copy of the Whisper files, or --no-asr to export without transcription"


def _cached_or_fetched(repo_id: str, filename: str) -> Path | None:
    """The file from the cache or the hub; None when the repository does not have it."""
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.file_download import _CACHED_NO_EXIST

    hit = try_to_load_from_cache(repo_id, filename)
    if hit is _CACHED_NO_EXIST:
        return None
    if hit is None and constants.is_offline_mode():
        # Offline, a file absent from a cached snapshot is one the release does not have.
        return None
    try:
        return fetch(repo_id, filename, HINT)
    except HubFileError as e:
        if "404" in str(e) or "EntryNotFound" in str(e):
            return None
        raise


def resolve_asr(spec: str) -> tuple[dict[str, Path], str]:
    """{file name: path} of the Whisper `spec` names, and where it came from (for the manifest)."""
    local = Path(spec)
    if local.is_dir():
        files = {p.name: p for p in local.iterdir() if p.is_file()}
        missing = [name for name in REQUIRED_FILES if name not in files]
        if not any(name in files for name in WEIGHT_FILES):
            missing.append(" or ".join(WEIGHT_FILES))
        if missing:
            raise ExportError(
                f"--asr {spec}: the directory lacks {', '.join(missing)}; it must hold a Whisper checkpoint "
                f"as the hub releases it (e.g. {contract.DEFAULT_ASR_MODEL})"
            )
        keep = set(REQUIRED_FILES) | set(WEIGHT_FILES) | set(OPTIONAL_FILES)
        return {name: path for name, path in files.items() if name in keep}, str(local.resolve())
    if spec.count("/") != 1 or spec.startswith(("/", ".")):
        raise ExportError(f"--asr {spec!r} is neither a directory nor a hub repository name (OWNER/NAME)")
    files = {name: fetch(spec, name, HINT) for name in REQUIRED_FILES}
    for name in WEIGHT_FILES:
        path = _cached_or_fetched(spec, name)
        if path is not None:
            files[name] = path
            break
    else:
        raise ExportError(f"hf://{spec} has none of {', '.join(WEIGHT_FILES)}; {HINT}")
    for name in OPTIONAL_FILES:
        path = _cached_or_fetched(spec, name)
        if path is not None:
            files[name] = path
    return files, f"hf://{spec}"


def write_whisper(files: dict[str, Path], version_dir: Path) -> Path:
    """Copy the files (the cache's symlinks resolved) into <version_dir>/whisper/."""
    target = version_dir / contract.WHISPER_DIR
    target.mkdir(parents=True)
    for name, path in sorted(files.items()):
        shutil.copyfile(Path(path).resolve(), target / name)
    return target


def check_whisper(whisper_dir: Path, reference: Path):
    """Load the copy as the model will and transcribe `reference`; returns (Transcriber, transcript, seconds)."""
    import soundfile as sf

    from pipeline.transcriber import Clip, Transcriber

    try:
        transcriber = Transcriber(whisper_dir, device="cpu")
    except Exception as e:
        raise ExportError(f"--asr: transformers cannot load the Whisper files ({type(e).__name__}: {e})") from e
    audio, rate = sf.read(str(reference), dtype="float32", always_2d=True)
    started = time.monotonic()
    transcript = transcriber.transcribe([Clip(audio.T, rate)])[0]
    return transcriber, transcript.text, time.monotonic() - started


def load_whisper(version_dir: Path):
    """The transcriber of an exported repository (to transcribe an added model's voices)."""
    from pipeline.transcriber import Transcriber

    return Transcriber(Path(version_dir) / contract.WHISPER_DIR, device="cpu")
