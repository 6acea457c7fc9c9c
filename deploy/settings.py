"""The deployments' environment: every variable declared once with its type, range, default and help.

A settings class is a frozen dataclass whose fields are `setting(...)` declarations (or `group(...)`
of another such class); `read(cls, env)` turns the environment into a typed instance, and a bad
value is one SettingError line: the variable, what is wrong with its value, what is allowed.
`help_lines(cls)` renders the same declarations for `--help` and `python -m deploy`.

Unset and empty variables take the default, except shell words (F5_EXPORT_ARGS, TRITON_ARGS),
where an empty value is a value: no words.

Imports nothing heavy: reading settings never pays for torch, so a bad value fails in milliseconds.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TypeVar

import contract

T = TypeVar("T")


class SettingError(ValueError):
    """One variable's value cannot be used; the message is one line naming it and what is allowed."""


@dataclass(frozen=True)
class Kind:
    """How a variable's text becomes a value. `parse` raises ValueError, with a detail or "" when the
    kind's name says it all."""

    name: str  # what a value is, as errors and help say it: "an integer"
    parse: Callable[[str], Any]
    empty_is_value: bool = False  # an empty text parses (else it means "the default")


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("") from None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("") from None
    if not math.isfinite(value):
        raise ValueError("")
    return value


def _words(text: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(text))
    except ValueError as e:  # an unbalanced quote: shlex says which
        raise ValueError(str(e).lower()) from None


def _switch(text: str) -> bool:
    if text.strip() not in ("0", "1"):
        raise ValueError("")
    return text.strip() == "1"


def _header_value(text: str) -> tuple[str, str]:
    header, sep, value = text.partition("=")
    if not sep or not header or not value:
        raise ValueError("a header name, '=', then the value the header must carry")
    return header, value


INTEGER = Kind("an integer", _integer)
NUMBER = Kind("a number", _number)
TEXT = Kind("text", str)
PATH = Kind("a path", Path)
WORDS = Kind("shell words", _words, empty_is_value=True)
SWITCH = Kind("0 or 1", _switch)
HEADER_VALUE = Kind("HEADER=VALUE", _header_value)


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, kind, bounds, default and help."""

    env: str
    kind: Kind
    default: Any
    help: str
    minimum: float | None = None  # >=
    maximum: float | None = None  # <=
    above: float | None = None  # >
    secret: bool = False  # its value is never echoed back in an error
    default_help: str | None = None  # the default as help says it, where it is not a plain value

    def allowed(self) -> str:
        """The range, as errors and help say it; "" when any value of the kind is allowed."""
        if self.minimum is not None and self.maximum is not None:
            return f"{self.minimum:g} to {self.maximum:g}"
        if self.minimum is not None:
            return f"at least {self.minimum:g}"
        if self.above is not None:
            return f"more than {self.above:g}"
        if self.maximum is not None:
            return f"at most {self.maximum:g}"
        return ""

    def read(self, env: Mapping[str, str]) -> Any:
        text = env.get(self.env)
        if text is None or (text == "" and not self.kind.empty_is_value):
            return self.default
        allowed = self.allowed()
        try:
            value = self.kind.parse(text)
        except ValueError as e:
            detail = f" ({e})" if str(e) else ""
            if self.secret:
                raise SettingError(f"{self.env} must be {self.kind.name}{detail}") from None
            raise SettingError(
                f"{self.env}={text!r} is not {self.kind.name}{detail}" + (f"; {allowed} is allowed" if allowed else "")
            ) from None
        if (
            (self.minimum is not None and value < self.minimum)
            or (self.maximum is not None and value > self.maximum)
            or (self.above is not None and value <= self.above)
        ):
            raise SettingError(f"{self.env}={text.strip()}; {allowed} is allowed")
        return value

    def help_line(self) -> str:
        if self.default_help is not None:
            default = self.default_help
        elif self.default is None or self.default == ():
            default = "none"
        elif isinstance(self.default, bool):
            default = str(int(self.default))
        elif isinstance(self.default, float):
            default = f"{self.default:g}"
        else:
            default = str(self.default)
        allowed = self.allowed()
        return f"{self.env}: {self.help} ({self.kind.name}{', ' + allowed if allowed else ''}; default: {default})"


def setting(env: str, kind: Kind, default: Any, help: str, **bounds: Any) -> Any:
    """A settings class's field read from the variable `env` (see Setting for `bounds`)."""
    return dataclasses.field(default=default, metadata={"setting": Setting(env, kind, default, help, **bounds)})


def group(cls: type) -> Any:
    """A settings class's field holding another settings class, read from the same environment."""
    return dataclasses.field(default_factory=cls, metadata={"group": cls})


def read(cls: type[T], env: Mapping[str, str]) -> T:
    """`cls` from the environment; raises SettingError for the first bad value, in declaration order."""
    values = {}
    for f in dataclasses.fields(cls):
        if "group" in f.metadata:
            values[f.name] = read(f.metadata["group"], env)
        else:
            values[f.name] = f.metadata["setting"].read(env)
    return cls(**values)


def declared(cls: type) -> Iterator[Setting]:
    """Every Setting of `cls`, its groups' included, in declaration order."""
    for f in dataclasses.fields(cls):
        if "group" in f.metadata:
            yield from declared(f.metadata["group"])
        else:
            yield f.metadata["setting"]


def help_lines(cls: type) -> list[str]:
    return [s.help_line() for s in declared(cls)]


# --- the settings the deployments share ----------------------------------------------------------

# Where the RunPod worker looks on its volume when F5_CHECKPOINT and F5_VOCODER are unset.
VOLUME_CHECKPOINT = Path("checkpoints/model_1250000.safetensors")
VOLUME_VOCODER = Path("checkpoints/vocos-mel-24khz")

_PORT = dict(minimum=0, maximum=65535)


@dataclass(frozen=True)
class TritonSettings:
    """How tritonserver itself is started (the launcher's flags, the same in every deployment)."""

    http_port: int = setting(
        "HTTP_PORT", INTEGER, contract.HTTP_PORT, "Triton's HTTP port; 0 picks a free one", **_PORT
    )
    grpc_port: int = setting(
        "GRPC_PORT", INTEGER, contract.GRPC_PORT, "Triton's gRPC port; 0 picks a free one", **_PORT
    )
    metrics_port: int = setting(
        "METRICS_PORT", INTEGER, contract.METRICS_PORT, "Triton's metrics port; 0 picks a free one", **_PORT
    )
    log_verbose: int = setting("LOG_VERBOSE", INTEGER, 0, "tritonserver's --log-verbose level", minimum=0)
    triton_args: tuple[str, ...] = setting("TRITON_ARGS", WORDS, (), "extra tritonserver flags")

    def server_options(self) -> dict[str, Any]:
        """TritonServer's keyword arguments for these settings."""
        return dict(
            http_port=self.http_port,
            grpc_port=self.grpc_port,
            metrics_port=self.metrics_port,
            log_verbose=self.log_verbose,
            extra_args=self.triton_args,
        )


@dataclass(frozen=True)
class ExportSettings:
    """What is exported on first start, when the repository holds no model repository."""

    checkpoint: str | None = setting(
        "F5_CHECKPOINT",
        TEXT,
        None,
        "checkpoint exported on first start: a file (.safetensors or .pt) or hf://...",
        default_help=f"on RunPod {VOLUME_CHECKPOINT} when the volume holds it; else the released checkpoint of "
        "F5_MODEL_CONFIG from the Hugging Face cache (HF_HOME) or hub, as `python -m export` does",
    )
    model_config: str | None = setting(
        "F5_MODEL_CONFIG",
        TEXT,
        None,
        "f5-tts config name or YAML path of that export",
        default_help="`python -m export`'s, F5TTS_v1_Base",
    )
    vocoder: Path | None = setting(
        "F5_VOCODER",
        PATH,
        None,
        "local Vocos directory for that export",
        default_help=f"on RunPod {VOLUME_VOCODER} when the volume holds it; else "
        "charactr/vocos-mel-24khz from the Hugging Face cache or hub",
    )
    # None, not (): an empty F5_EXPORT_ARGS asks for no flags, not for the GPU default.
    export_args: tuple[str, ...] | None = setting(
        "F5_EXPORT_ARGS",
        WORDS,
        None,
        "further `python -m export` flags for that export",
        default_help="--device gpu when a GPU is visible",
    )


# --- each deployment's settings -------------------------------------------------------------------


@dataclass(frozen=True)
class ContainerSettings:
    """The Triton image's entrypoint (docker/entrypoint.py)."""

    repository: Path = setting(
        "MODEL_REPOSITORY",
        PATH,
        Path("/models"),
        "the model repository, a volume; written on first start when it holds none",
    )
    export: ExportSettings = group(ExportSettings)
    triton: TritonSettings = group(TritonSettings)
    admin_key: tuple[str, str] | None = setting(
        "TRITON_ADMIN_KEY",
        HEADER_VALUE,
        None,
        "the header that Triton's admin APIs require (README, Secure setup)",
        secret=True,
    )
    stub_watchdog: bool = setting(
        "STUB_WATCHDOG",
        SWITCH,
        False,
        "1: run tritonserver under the launcher, which exits 3 when a Python stub "
        "dies (Triton neither restarts it nor reports the model unready), so the restart policy replaces it",
    )


@dataclass(frozen=True)
class WorkerSettings:
    """The RunPod worker (runpod_worker/): relative paths are inside the network volume."""

    volume: Path = setting(
        "F5_VOLUME", PATH, Path("/runpod-volume"), "the network volume (RunPod mounts it at /runpod-volume)"
    )
    repository: Path = setting(
        "MODEL_REPOSITORY", PATH, Path("model_repository"), "the exported repository; exported into once when absent"
    )
    export: ExportSettings = group(ExportSettings)
    triton: TritonSettings = group(TritonSettings)
    ready_timeout: float = setting(
        "F5_READY_TIMEOUT", NUMBER, 600.0, "seconds allowed for loading and warming up the models", above=0
    )
    concurrency: int = setting(
        "F5_CONCURRENCY", INTEGER, 8, "jobs this worker runs at once; they share Triton's batches", minimum=1
    )
