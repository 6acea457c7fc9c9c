"""The export as a function: a typed request in, the written repository out, typed errors.

Used by the CLI (`python -m export`), the demo, the container entrypoint and the RunPod
worker. Cheap checks run before expensive ones: options, voices and the vocoder (a few
small files) before the checkpoint, which may be a 1.3 GB download.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from export import model_config as mc
from export.asr import resolve_asr
from export.errors import ExportError
from export.hub import fetch_uri
from export.repository import ExportSources, check_addition, check_output, export_repository
from export.vocoder import resolve_vocoder

# Where f5-tts's own CLI fetches each released model (f5_tts/infer/infer_cli.py).
HUB_CHECKPOINTS = {
    "F5TTS_v1_Base": "hf://SWivid/F5-TTS/F5TTS_v1_Base/model_1250000.safetensors",
    "F5TTS_Base": "hf://SWivid/F5-TTS/F5TTS_Base/model_1200000.safetensors",
    "E2TTS_Base": "hf://SWivid/E2-TTS/E2TTS_Base/model_1200000.safetensors",
}
DEFAULT_MODEL_CONFIG = "F5TTS_v1_Base"


@dataclass(frozen=True)
class ExportRequest:
    output: Path
    ckpt: str | None = None  # a local path or hf://...; None: the released checkpoint of model_config
    model_config: str = DEFAULT_MODEL_CONFIG  # an f5-tts config name or a YAML path
    vocab: Path | None = None  # None: the vocab.txt f5-tts ships
    vocoder: Path | None = None  # a local Vocos directory; None: charactr/vocos-mel-24khz from the hub
    use_ema: bool = True
    voices: tuple[str, ...] = ()  # NAME=AUDIO:"TRANSCRIPT", or NAME=AUDIO to transcribe it (needs asr)
    demo_tiny: bool = False  # tiny random weights (noise), for offline smoke runs
    force: bool = False  # replace a non-empty output
    asr: str | None = None  # a Whisper for the transcriber: hub name or local directory; None: no transcriber
    serving: mc.ServingOptions = field(default_factory=mc.ServingOptions)
    name: str | None = None  # add model NAME (f5_tts_NAME) to the repository at `output`; None: a new repository
    gpu_memory_gb: float | None = None  # refuse a repository whose models need more GPU memory (GiB)


@dataclass(frozen=True)
class Exported:
    repository: Path
    manifest: dict


def resolve_checkpoint(ckpt: str | None, model_config: str) -> Path:
    """A local path, an hf:// path, or the released checkpoint of a built-in config."""
    if ckpt and not ckpt.startswith("hf://"):
        return Path(ckpt)
    uri = ckpt or HUB_CHECKPOINTS.get(model_config)
    if uri is None:
        raise ExportError(f"no released checkpoint is known for {model_config!r}; pass --ckpt PATH")
    return fetch_uri(uri, "pass --ckpt PATH to a local checkpoint, or --demo-tiny for the offline demo model")


def export_model(request: ExportRequest) -> Exported:
    """Write the model repository `request` asks for; raises ExportError (or a subclass) saying why not."""
    from pipeline.f5_model import default_vocab_file, resolve_model_config
    from pipeline.voices import VoiceError, check_transcripts, parse_voice_spec

    f5_name = "F5TTS_v1_Base_tiny_demo" if request.demo_tiny else Path(request.model_config).stem
    serving = dataclasses.replace(
        request.serving,
        tts=dataclasses.replace(request.serving.tts, demo_model=request.demo_tiny, f5_model_name=f5_name),
    )
    try:
        # before the work, which a bad output would waste
        has_transcriber = bool(request.asr)
        if request.name is None:
            check_output(request.output, request.force)
        else:
            addition = check_addition(
                request.output, request.name, force=request.force, adds_transcriber=bool(request.asr)
            )
            has_transcriber = has_transcriber or addition.has_transcriber  # the repository's serves it too
        serving.check()
        voices = tuple(parse_voice_spec(spec) for spec in request.voices)
        for name, path, _ in voices:
            if not path.is_file():
                raise ExportError(f"--voice {name}: audio file {path} does not exist")
        check_transcripts(voices, has_transcriber=has_transcriber)
        vocab = request.vocab or default_vocab_file()
        with tempfile.TemporaryDirectory(prefix="f5-export-") as tmp:
            if request.demo_tiny:
                asr = resolve_asr(request.asr) if request.asr else None
                sources = _demo_sources(Path(tmp), vocab, voices)
            else:
                # Small before large: the vocoder's few files, the Whisper (1.6 GB), then the checkpoint.
                vocoder_dir, vocoder_source = resolve_vocoder(request.vocoder)
                asr = resolve_asr(request.asr) if request.asr else None
                config = resolve_model_config(request.model_config)
                sources = ExportSources(
                    resolve_checkpoint(request.ckpt, request.model_config),
                    config,
                    vocab,
                    vocoder_dir,
                    vocoder_source,
                    request.use_ema,
                    voices,
                )
            if asr is not None:
                sources = dataclasses.replace(sources, asr_files=asr[0], asr_source=asr[1])
            manifest = export_repository(
                sources,
                request.output,
                serving,
                force=request.force,
                name=request.name,
                gpu_memory_gb=request.gpu_memory_gb,
            )
    except (VoiceError, FileNotFoundError, FileExistsError, ValueError) as e:
        raise ExportError(str(e)) from e
    return Exported(Path(request.output).resolve(), manifest)


def _demo_sources(tmp: Path, vocab: Path, voices) -> ExportSources:
    from export.demo import write_random_checkpoint, write_tiny_model_config, write_tiny_vocos

    config = write_tiny_model_config(tmp / "F5TTS_v1_Base_tiny_demo.yaml")
    vocoder = write_tiny_vocos(tmp / "vocos")
    return ExportSources(
        write_random_checkpoint(config, tmp / "model_demo.safetensors"),
        config,
        vocab,
        vocoder,
        "demo: tiny random Vocos",
        voices=voices,
    )
