"""A stand-in for `triton_python_backend_utils`, to run the model.py adapters without tritonserver
(as tensorrtllm_backend tests its Python models: the module is put into sys.modules before
model.py is imported). It holds only what the adapters use, with the server's semantics where
they matter to them: a response sender refuses to send after its final response, and a BLS
request runs whatever `InferenceRequest.handler` the test installs (the real f5_tts adapter).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import types
from pathlib import Path
from typing import Callable

import numpy as np
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2 as pb

import contract

TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1


class TritonError:
    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED, ALREADY_EXISTS, CANCELLED = range(8)

    def __init__(self, message: str, code: int = INTERNAL) -> None:
        self._message, self._code = message, code

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code


class Tensor:
    def __init__(self, name: str, array) -> None:
        self._name, self._array = name, np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class InferenceResponse:
    def __init__(self, output_tensors=(), error: TritonError | None = None) -> None:
        self._tensors, self._error = list(output_tensors), error

    def output_tensors(self) -> list[Tensor]:
        return self._tensors

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error

    def outputs(self) -> dict[str, np.ndarray]:
        return {t.name(): t.as_numpy() for t in self._tensors}


class ResponseSender:
    """Records what a decoupled model sends; `cancel_after` sends mark the request cancelled by its client."""

    def __init__(self, cancel_after: int | None = None) -> None:
        self.sent: list[tuple[InferenceResponse | None, int]] = []
        self.finished = threading.Event()
        self._cancel_after = cancel_after

    def send(self, response: InferenceResponse | None = None, flags: int = 0) -> None:
        if self.finished.is_set():
            raise RuntimeError("Unable to send response. Response sender has been closed.")
        self.sent.append((response, flags))
        if flags & TRITONSERVER_RESPONSE_COMPLETE_FINAL:
            self.finished.set()

    def is_cancelled(self) -> bool:
        return self._cancel_after is not None and len(self.sent) >= self._cancel_after

    def wait(self, timeout: float = 120.0) -> None:
        assert self.finished.wait(timeout), "the model never sent its final response"

    @property
    def pieces(self) -> list[InferenceResponse]:
        return [r for r, _ in self.sent if r is not None and not r.has_error()]

    @property
    def errors(self) -> list[TritonError]:
        return [r.error() for r, _ in self.sent if r is not None and r.has_error()]


class InferenceRequest:
    """A request handed to execute(), and a BLS request a model builds (exec() runs `handler`)."""

    handler = None  # (InferenceRequest) -> InferenceResponse: the model a BLS request reaches

    def __init__(
        self,
        model_name: str = "",
        inputs=(),
        requested_output_names=(),
        sender: ResponseSender | None = None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> None:
        """cancelled: whether the client has cancelled the request by now (asked at every is_cancelled())."""
        self.model_name, self._inputs = model_name, list(inputs)
        self.requested_output_names = list(requested_output_names)
        self._sender = sender or ResponseSender()
        self._cancelled = cancelled
        self.cancel_checks = 0

    def is_cancelled(self) -> bool:
        self.cancel_checks += 1
        return self._cancelled()

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def get_response_sender(self) -> ResponseSender:
        return self._sender

    def exec(self) -> InferenceResponse:
        return type(self).handler(self)


def _level(name: str):
    return classmethod(lambda cls, message: cls.lines.append((name, message)))


class Logger:
    lines: list[tuple[str, str]] = []  # (level, message), for the test to read
    log_info, log_warn, log_error, log_verbose = (_level(n) for n in ("info", "warn", "error", "verbose"))


class Metric:
    def __init__(self, labels: dict[str, str]) -> None:
        self.labels, self._value = dict(labels), 0.0

    def increment(self, value: float) -> None:
        self._value += value

    def set(self, value: float) -> None:
        self._value = value

    def value(self) -> float:
        return self._value


class MetricFamily:
    """Custom metrics: the test reads `families[name].metrics` (what Triton would show on /metrics)."""

    COUNTER, GAUGE, HISTOGRAM = range(3)
    families: dict[str, "MetricFamily"] = {}

    def __init__(self, name: str, description: str, kind: int) -> None:
        self.name, self.description, self.kind, self.metrics = name, description, kind, []
        type(self).families[name] = self

    def Metric(self, labels: dict[str, str] | None = None) -> Metric:  # noqa: N802 (Triton's name)
        metric = Metric(labels or {})
        self.metrics.append(metric)
        return metric


def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
    return next((t for t in request.inputs() if t.name() == name), None)


def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor | None:
    return next((t for t in response.output_tensors() if t.name() == name), None)


def using_decoupled_model_transaction_policy(config: dict) -> bool:
    return bool(config.get("model_transaction_policy", {}).get("decoupled", False))


def module() -> types.ModuleType:
    """A fresh `triton_python_backend_utils` (its own Logger lines and BLS handler)."""
    mod = types.ModuleType("triton_python_backend_utils")
    logger = type("Logger", (Logger,), {"lines": []})
    request = type("InferenceRequest", (InferenceRequest,), {"handler": None})
    families = type("MetricFamily", (MetricFamily,), {"families": {}})
    for name in (
        "TRITONSERVER_RESPONSE_COMPLETE_FINAL",
        "TritonError",
        "Tensor",
        "InferenceResponse",
        "get_input_tensor_by_name",
        "get_output_tensor_by_name",
        "using_decoupled_model_transaction_policy",
    ):
        setattr(mod, name, globals()[name])
    mod.Logger, mod.InferenceRequest, mod.MetricFamily = logger, request, families
    return mod


def load_model(path: Path, monkeypatch) -> tuple[types.ModuleType, types.ModuleType]:
    """(model.py as a module, the pb_utils it imported); sys.modules is restored after the test."""
    pb_utils = module()
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb_utils)
    spec = importlib.util.spec_from_file_location(f"adapter_{path.parent.parent.name}", path)
    model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(model)
    return model, pb_utils


def model_args(repository: Path, model: str, config: str | None = None) -> dict[str, str]:
    """initialize()'s args as Triton passes them: the config as JSON, the instance, the model's directory."""
    text = config if config is not None else (repository / model / contract.MODEL_CONFIG_FILE).read_text()
    parsed = json_format.MessageToDict(text_format.Parse(text, pb.ModelConfig()), preserving_proto_field_name=True)
    return {
        "model_config": json.dumps(parsed),
        "model_instance_kind": "CPU",
        "model_instance_name": f"{model}_0_0",
        "model_instance_device_id": "0",
        "model_repository": str(repository / model),
        "model_version": contract.MODEL_VERSION,
        "model_name": model,
    }
