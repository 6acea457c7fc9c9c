"""Where a Triton model instance runs. The models' parameters themselves are declared in
contract/parameters.py (torch-free: the export and the gateway read them too)."""

from __future__ import annotations

from typing import Mapping


def instance_device(args: Mapping[str, str]) -> str:
    """torch device string for a Triton model instance (KIND_GPU -> cuda:N)."""
    if args.get("model_instance_kind") == "GPU":
        return f"cuda:{args.get('model_instance_device_id', '0')}"
    return "cpu"
