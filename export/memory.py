"""What a repository's models cost in GPU memory, and the refusal of one that cannot fit (--gpu-memory-gb).

An estimate of what every model holds once loaded: weights at the precision they run in, and per GPU
process (each instance of a Python-backend model is a process of its own) the CUDA context and
PyTorch's allocator floor. Activations come on top and grow with the batch (max_batch_chunks) and
the text length; docs/export.md says how to leave room for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import contract
from export.errors import ExportError

GIB = 1024**3
BYTES_PER_PARAMETER = {"fp32": 4, "fp16": 2, "bf16": 2}
# Per GPU process, before any weight: a CUDA context with PyTorch's kernels loaded. An estimate (commonly
# 0.3-0.5 GiB); the upper end, so that a repository that passes the check is not refused by the GPU.
CUDA_CONTEXT_BYTES = GIB // 2


@dataclass(frozen=True)
class ModelCost:
    """GPU bytes of one F5-TTS model of the repository: its instances (DiT weights + the Vocos each
    instance vocodes with + a context each), and its own vocoder model's instances when it exported one."""

    device: str
    instances: int
    dit_bytes: int
    vocoder_bytes: int
    own_vocoder: bool
    transcriber_bytes: int = 0  # a transcriber added with this model (one instance)

    @property
    def per_instance(self) -> int:
        return self.dit_bytes + self.vocoder_bytes + CUDA_CONTEXT_BYTES

    @property
    def total(self) -> int:
        """This model's GPU bytes (its own vocoder model included, the transcriber not)."""
        if self.device != "gpu":
            return 0
        vocoder_model = self.instances * (self.vocoder_bytes + CUDA_CONTEXT_BYTES) if self.own_vocoder else 0
        return self.instances * self.per_instance + vocoder_model

    @property
    def transcriber_total(self) -> int:
        return self.transcriber_bytes + CUDA_CONTEXT_BYTES if self.device == "gpu" and self.transcriber_bytes else 0

    def manifest(self) -> dict:
        return {
            "device": self.device,
            "instances": self.instances,
            "dit_bytes_per_instance": self.dit_bytes,
            "vocoder_bytes_per_instance": self.vocoder_bytes,
            "context_bytes_per_process": CUDA_CONTEXT_BYTES,
            "total_bytes": self.total,
        }

    def transcriber_manifest(self) -> dict:
        return {"weights_bytes": self.transcriber_bytes, "total_bytes": self.transcriber_total}


def model_cost(
    parameters: int, options, *, vocoder_bytes: int, vocoder_model: str | None, transcriber_bytes: int = 0
) -> ModelCost:
    return ModelCost(
        device=options.device,
        instances=options.instances,
        dit_bytes=parameters * BYTES_PER_PARAMETER[options.tts.dtype],
        vocoder_bytes=vocoder_bytes,
        own_vocoder=vocoder_model is not None,
        transcriber_bytes=transcriber_bytes,
    )


def vocos_bytes(vocos_dir: Path) -> int:
    """The Vocos runs in fp32: its weights file's size."""
    return (Path(vocos_dir) / contract.VOCOS_WEIGHTS_FILE).stat().st_size


def whisper_bytes(files: dict[str, Path]) -> int:
    """The Whisper's weight files as stored (the released one is fp16, as f5-tts runs it on GPU)."""
    return sum(Path(path).stat().st_size for name, path in files.items() if name.endswith((".safetensors", ".bin")))


def repository_total(manifest: dict) -> dict:
    """The GPU bytes of every model of a manifest, and their sum."""
    parts = {name: entry["gpu_memory"]["total_bytes"] for name, entry in manifest["models"].items()}
    if "transcriber" in manifest:
        parts[contract.TRANSCRIBER_MODEL] = manifest["transcriber"].get("gpu_memory", {}).get("total_bytes", 0)
    return {"total_bytes": sum(parts.values()), "bytes": parts}


def check_fits(existing: dict | None, tts_model: str, cost: ModelCost, gpu_memory_gb: float) -> None:
    """Refuse a repository whose models need more GPU memory than `gpu_memory_gb` (GiB)."""
    parts = {}
    if existing is not None:
        parts = {k: v for k, v in repository_total(existing)["bytes"].items() if k != tts_model}
    parts[tts_model] = cost.total
    if cost.transcriber_total:
        parts[contract.TRANSCRIBER_MODEL] = cost.transcriber_total
    total = sum(parts.values())
    if total > gpu_memory_gb * GIB:
        listed = ", ".join(f"{name} {size / GIB:.2f}" for name, size in parts.items() if size)
        raise ExportError(
            f"the repository's models need about {total / GIB:.2f} GiB of GPU memory ({listed} GiB: weights "
            f"and {CUDA_CONTEXT_BYTES / GIB:.1f} GiB of CUDA context per GPU process, before activations), more "
            f"than --gpu-memory-gb {gpu_memory_gb:g}; use --dtype fp16, fewer --instances, --device cpu for "
            "some models, or a larger GPU"
        )
