"""Before tritonserver starts: check an exported repository, or export one on first start.

Shared by the container entrypoint (docker/entrypoint.py) and the RunPod worker, so both
accept and refuse the same repositories with the same messages.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import contract
from deploy.settings import ExportSettings
from export.asr import REQUIRED_FILES as WHISPER_FILES
from export.asr import WEIGHT_FILES as WHISPER_WEIGHTS

if TYPE_CHECKING:  # the export imports torch: only when a first start exports
    from export.api import ExportRequest

_CODE = f"{contract.MODEL_VERSION}/{contract.MODEL_CODE_FILE}"
REQUIRED_FILES = {  # per model, relative to its directory
    contract.TTS_MODEL: [contract.MODEL_CONFIG_FILE, _CODE]
    + [
        f"{contract.MODEL_VERSION}/{name}"
        for name in (contract.TTS_WEIGHTS_FILE, contract.TTS_ARCH_FILE, contract.TTS_VOCAB_FILE)
    ],
    contract.STREAM_MODEL: [contract.MODEL_CONFIG_FILE, _CODE],
    contract.VOCODER_MODEL: [
        contract.MODEL_CONFIG_FILE,
        _CODE,
        f"{contract.MODEL_VERSION}/{contract.VOCODER_ONNX_FILE}",
    ],
}
# The optional transcriber (export --asr), checked when the repository has its config: the Whisper's files
# as released, and one of its weight files.
_WHISPER = f"{contract.MODEL_VERSION}/{contract.WHISPER_DIR}"
TRANSCRIBER_FILES = [contract.MODEL_CONFIG_FILE, _CODE] + [f"{_WHISPER}/{name}" for name in WHISPER_FILES]


class RepositoryError(RuntimeError):
    """The repository cannot be served as it is; the message names the file and the fix."""


def gpu_name() -> str | None:
    """The first GPU's name, or None when torch sees none. A GPU that CUDA reports but cannot use (a
    driver or runtime mismatch) is an error, not "no GPU": serving it on CPU would hide the fault."""
    import torch

    if not torch.cuda.is_available():
        return None
    try:
        return torch.cuda.get_device_name(0)
    except Exception as e:  # torch raises RuntimeError, AssertionError or CUDA's own errors here
        raise RepositoryError(
            f"CUDA reports a GPU but torch cannot use it ({type(e).__name__}: {e}); check the "
            "NVIDIA driver against the CUDA version of torch"
        ) from None


def export_request(source: ExportSettings, output: Path, gpu: str | None) -> ExportRequest:
    """The export that `source` asks for, into `output`. F5_EXPORT_ARGS goes through the export's own
    flag parser (it holds flags); the typed settings go into the request as they are. A source flag in
    F5_EXPORT_ARGS (--ckpt, --model-config, --vocoder) wins over its variable, as it always has."""
    from export.__main__ import request_from_argv
    from export.api import ExportRequest
    from export.errors import ExportError

    if source.export_args is None:
        # `python -m export --device gpu|cpu`, with every default that flag brings (on a GPU, the transcriber)
        request = request_from_argv(["--device", "gpu" if gpu else "cpu", "--output", str(output)])
    else:
        try:
            request = request_from_argv([*source.export_args, "--output", str(output)])
        except ExportError as e:
            raise RepositoryError(f"F5_EXPORT_ARGS={shlex.join(source.export_args)!r}: {e}") from None
    default = ExportRequest(output=output)
    return dataclasses.replace(
        request,
        output=output,
        ckpt=request.ckpt if request.ckpt != default.ckpt else source.checkpoint,
        model_config=request.model_config
        if request.model_config != default.model_config
        else source.model_config or default.model_config,
        vocoder=request.vocoder if request.vocoder != default.vocoder else source.vocoder,
    )


def export_on_first_start(repo: Path, source: ExportSettings, gpu: str | None) -> None:
    """Export into `repo`: F5_CHECKPOINT, or else the released checkpoint of F5_MODEL_CONFIG from the
    Hugging Face cache or hub, as `python -m export` does by default (with F5_VOCODER, F5_EXPORT_ARGS)."""
    from export.api import export_model
    from export.errors import ExportError

    ckpt = source.checkpoint
    if ckpt and not ckpt.startswith("hf://") and not Path(ckpt).is_file():
        raise RepositoryError(f"F5_CHECKPOINT={ckpt} does not exist (is the volume mounted?)")
    # `repo` is often a volume's mount point, which cannot be replaced: export beside its content,
    # inside it, and move the result in.
    staging = repo / f".first-start-export-{os.getpid()}"
    request = export_request(source, staging, gpu)
    what = request.ckpt or f"the released {request.model_config} (Hugging Face cache or hub)"
    print(f"exporting {what} into {repo} (first start)", flush=True)
    repo.mkdir(parents=True, exist_ok=True)
    try:
        export_model(request)
        for entry in staging.iterdir():
            entry.rename(repo / entry.name)
    except ExportError as e:
        raise RepositoryError(
            f"exporting {what} on first start failed: {e}. Mount an exported repository, or "
            "set F5_CHECKPOINT to a checkpoint file"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_repository(repo: Path, gpu: str | None) -> dict:
    """Parse every config.pbtxt and check the files each model needs; returns what was found."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    models = dict(REQUIRED_FILES)
    for added in _added_models(repo):  # export --name: f5_tts_NAME with its stream, vocoder_NAME
        if contract.is_tts_model(added):
            models[added] = REQUIRED_FILES[contract.TTS_MODEL]
            models[contract.stream_model_name(added)] = REQUIRED_FILES[contract.STREAM_MODEL]
        elif added.startswith(contract.VOCODER_MODEL + "_"):
            models[added] = REQUIRED_FILES[contract.VOCODER_MODEL]
    if (repo / contract.TRANSCRIBER_MODEL / contract.MODEL_CONFIG_FILE).is_file():
        models[contract.TRANSCRIBER_MODEL] = TRANSCRIBER_FILES
    found = {}
    for model, files in models.items():
        for rel in files:
            if not (repo / model / rel).is_file():
                raise RepositoryError(f"{repo / model / rel} is missing; re-export the repository")
        try:
            cfg = text_format.Parse((repo / model / contract.MODEL_CONFIG_FILE).read_text(), pb.ModelConfig())
        except text_format.ParseError as e:
            raise RepositoryError(
                f"{repo / model / contract.MODEL_CONFIG_FILE} is not a valid model config: {e}"
            ) from None
        kinds = {pb.ModelInstanceGroup.Kind.Name(g.kind) for g in cfg.instance_group}
        if "KIND_GPU" in kinds and gpu is None:
            raise RepositoryError(
                f"{repo / model / contract.MODEL_CONFIG_FILE} asks for KIND_GPU but no GPU is visible "
                "(run with --gpus all, or export with --device cpu)"
            )
        found[model] = {"kinds": sorted(kinds), "parameters": {k: v.string_value for k, v in cfg.parameters.items()}}
    for model in tts_models(found):
        parameters = found[model]["parameters"]
        onnx = (repo / model / parameters.get("vocoder_file", "")).resolve()
        if parameters.get("vocoder_runtime", "onnx") == "onnx" and not onnx.is_file():
            raise RepositoryError(f"{onnx} is missing ({model} vocodes with it); re-export the repository")
        if parameters.get("vocoder_runtime") == "torch":  # PyTorch Vocos beside the ONNX
            for name in (contract.VOCOS_CONFIG_FILE, contract.VOCOS_WEIGHTS_FILE):
                path = (repo / model / parameters.get("torch_vocoder_dir", "") / name).resolve()
                if not path.is_file():
                    raise RepositoryError(
                        f"{path} is missing ({model} runs the PyTorch vocoder); re-export the repository"
                    )
        _check_transcriber(repo, found, model)
    manifest = repo / contract.MANIFEST_FILE
    found["manifest"] = json.loads(manifest.read_text()) if manifest.is_file() else {}
    return found


def _added_models(repo: Path) -> list[str]:
    return sorted(
        d.name for d in repo.iterdir() if (d / contract.MODEL_CONFIG_FILE).is_file() and d.name not in REQUIRED_FILES
    )


def tts_models(found: dict) -> list[str]:
    """The F5-TTS models found, the default one first."""
    return sorted((m for m in found if contract.is_tts_model(m)), key=lambda m: (m != contract.TTS_MODEL, m))


def _check_transcriber(repo: Path, found: dict, model: str = contract.TTS_MODEL) -> None:
    """The Whisper's weights, and the transcriber f5_tts names: without it, every request sent without a
    transcript would fail at request time rather than here."""
    if contract.TRANSCRIBER_MODEL in found and model == contract.TTS_MODEL:
        whisper = repo / contract.TRANSCRIBER_MODEL / _WHISPER
        if not any((whisper / name).is_file() for name in WHISPER_WEIGHTS):
            raise RepositoryError(
                f"{whisper / WHISPER_WEIGHTS[0]} (or {WHISPER_WEIGHTS[1]}: the Whisper's weights) is missing; "
                "re-export the repository"
            )
    named = found[model]["parameters"].get("transcriber_model", "")
    if named and named not in found:
        raise RepositoryError(
            f"{repo / model / contract.MODEL_CONFIG_FILE} transcribes references with '{named}' "
            f"(parameter transcriber_model) but {repo / named / contract.MODEL_CONFIG_FILE} is missing; re-export "
            "the repository (with --asr, or --no-asr for none)"
        )


def describe(found: dict, gpu: str | None) -> str:
    """One line: model, dtype, instance kinds, GPU and package versions."""
    from importlib import metadata

    tts = found[contract.TTS_MODEL]["parameters"]
    versions = {p: metadata.version(p) for p in ("f5-tts", "torch", "tritonclient")}
    for ort in ("onnxruntime-gpu", "onnxruntime"):
        try:
            versions[ort] = metadata.version(ort)
            break
        except metadata.PackageNotFoundError:
            pass
    demo = " (DEMO MODEL: random weights, noise)" if tts.get("demo_model") == "true" else ""
    transcriber = found.get(contract.TRANSCRIBER_MODEL)
    asr = f"transcriber {transcriber['parameters'].get('asr_model') or '?'}" if transcriber else "no transcriber"
    others = [
        f"{contract.model_short_name(m)} ({found[m]['parameters'].get('f5_model_name', '?')})"
        for m in tts_models(found)[1:]
    ]
    return (
        f"model {tts.get('f5_model_name', '?')}{demo}, dtype {tts.get('dtype', '?')}, "
        f"instances {found[contract.TTS_MODEL]['kinds']}, "
        + (f"also models {', '.join(others)}, " if others else "")
        + f"{asr}, GPU {gpu or 'none'}, "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
    )
