"""Launch tritonserver with explicit flags, wait until ready, stop it by PID.

Two server builds are supported: `tritonserver` on PATH (the official NGC container)
and the one bundled in the nvidia-pytriton wheel (this project's venv). The bundled
build needs the environment prepared by `python_stub_env()` (its docstring says why).
"""

from __future__ import annotations

import errno
import logging
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 15.0

# Where the Python backend's shared-memory regions (shm_open) appear on Linux. Each server gets a
# prefix of its own (the backend's shm-region-prefix-name) so that the regions a killed server
# leaves behind can be told from every other server's and removed. It starts like the backend's
# default prefix, which is followed by a UUID: "f5tts-" (not hex) can never begin one.
SHM_DIR = Path("/dev/shm")
SHM_PREFIX_OPTION = "shm-region-prefix-name"


class ServerError(RuntimeError):
    """The server could not be started or did not become ready.

    Besides the message, for programs that report it their own way: `headline`, what happened;
    `causes`, the server log's lines that explain it (each failed model's own error first) or else
    its last line; `log_path`, that log (None when tritonserver never ran).
    """

    def __init__(
        self, message: str, *, headline: str | None = None, causes: tuple[str, ...] = (), log_path: Path | None = None
    ) -> None:
        super().__init__(message)
        self.headline = headline or message
        self.causes = causes
        self.log_path = log_path


@dataclass(frozen=True)
class ServerBinary:
    path: Path
    backend_dir: Path | None  # None: the server's default (NGC layout)
    lib_dirs: tuple[Path, ...] = ()


def _bundled_root() -> Path | None:
    try:
        import importlib.util

        spec = importlib.util.find_spec("pytriton")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
    return root if (root / "bin" / "tritonserver").exists() else None


def find_tritonserver() -> ServerBinary:
    """The `tritonserver` on PATH (NGC image) wins; else the nvidia-pytriton bundled one."""
    on_path = shutil.which("tritonserver")
    if on_path:
        return ServerBinary(Path(on_path), None)
    root = _bundled_root()
    if root is None:
        raise ServerError(
            "tritonserver not found: not on PATH and nvidia-pytriton is not installed. "
            "Run `make setup` (or use the official Triton container)."
        )
    stub = root / "backends" / "python" / "triton_python_backend_stub"
    if not stub.exists():
        raise ServerError(
            f"the Python backend stub is missing at {stub}; `make setup` copies the one "
            f"for Python {sys.version_info.major}.{sys.version_info.minor} there"
        )
    libs = root.parent.parent / "nvidia_pytriton.libs"
    return ServerBinary(root / "bin" / "tritonserver", root / "backends", (libs,))


def python_stub_env(binary: ServerBinary, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment under which the Python stub finds this interpreter's venv.

    The stub embeds libpython and runs isolated (PYTHONPATH is ignored), so the venv
    must come first on PATH and its base interpreter's lib dir on LD_LIBRARY_PATH;
    the bundled server additionally hangs at load without its own libs dir.
    """
    env = dict(os.environ if base is None else base)
    env.pop("PYTHONPATH", None)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", "")])
    lib_dirs = [str(p) for p in binary.lib_dirs] + [str(Path(sys.base_prefix) / "lib")]
    if env.get("LD_LIBRARY_PATH"):
        lib_dirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(lib_dirs)
    return env


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port that is free now, never the same twice in this process (the kernel's own pick for port 0
    repeats within a few hundred calls). Picked below the kernel's ephemeral range when there is room:
    outgoing connections take ports from that range, and one could take the port between this pick and
    the server's bind seconds later."""
    first_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    pool = range(max(1024, first_ephemeral - 16384), first_ephemeral)
    for _ in range(1000):
        wanted = random.choice(pool) if len(pool) >= 1024 else 0  # else: the kernel's pick
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("", wanted))
            except OSError:
                continue
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise ServerError("no free TCP port found in 1000 tries; give the ports explicitly")


# Noise the server prints on machines without a GPU; never the cause of a failure.
_IRRELEVANT = ("NVML", "DCGM", "CudaDriverHelper has not been initialized")


def model_error_lines(log_text: str, limit: int = 6) -> list[str]:
    """The server log lines that explain a failed start: each model's load failure or an
    endpoint that could not start (a port in use) first, then the other errors."""
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not any(word in ln for word in _IRRELEVANT)]
    failures = [ln.replace("\\n", " | ") for ln in lines if "failed to load '" in ln or "failed to start" in ln]
    errors = [ln for ln in lines if re.match(r"^E\d{4} ", ln) and ln not in failures and "failed to load '" not in ln]
    fatal = [ln for ln in lines if ln.startswith("error:") or "unrecognized option" in ln]
    return (failures + fatal + errors)[:limit]


_LABEL = {"http": "HTTP", "grpc": "gRPC", "metrics": "metrics"}

# Triton APIs that change or expose the server's internals; with an admin key they require
# its header, while health, metadata, inference, model config and statistics stay open.
ADMIN_PROTOCOLS = ("model-repository", "shared-memory", "trace", "logging")


@dataclass(frozen=True)
class GrpcTls:
    """TLS for the gRPC endpoint (Triton's HTTP endpoint has no TLS: put a proxy in front)."""

    server_cert: Path
    server_key: Path
    root_cert: Path | None = None  # set: clients must present a certificate signed by it (mutual TLS)


@dataclass
class TritonServer:
    """One tritonserver process. Use as a context manager or call start()/stop()."""

    model_repository: Path
    http_port: int = 0  # 0: pick a free port
    grpc_port: int = 0
    metrics_port: int = 0
    log_verbose: int = 0
    ready_timeout: float = 300.0
    extra_args: tuple[str, ...] = ()
    log_path: Path | None = None
    # (header, value) that admin APIs require (ADMIN_PROTOCOLS, both endpoints); None: all open
    admin_key: tuple[str, str] | None = None
    grpc_tls: GrpcTls | None = None
    # Address the HTTP, gRPC and metrics endpoints bind to: all interfaces, or e.g. 127.0.0.1.
    host: str = "0.0.0.0"
    process: subprocess.Popen | None = field(default=None, init=False)
    _temp_log: bool = field(default=False, init=False, repr=False)  # log_path is ours to remove
    _stubs_at_ready: dict[int, str] = field(default_factory=dict, init=False, repr=False)
    # This server's shared-memory region names start with it; "" when extra_args set the prefix
    # (then the regions are not known to be this server's alone, and are left alone).
    shm_prefix: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self.model_repository = Path(self.model_repository).resolve()
        if not any(SHM_PREFIX_OPTION in arg for arg in self.extra_args):
            self.shm_prefix = f"triton_python_backend_shm_region_f5tts-{secrets.token_hex(6)}_"
        self.http_port = self.http_port or free_port()
        self.grpc_port = self.grpc_port or free_port()
        self.metrics_port = self.metrics_port or free_port()

    @property
    def _connect_host(self) -> str:
        """Where a client on this machine reaches the server (a wildcard bind is not an address)."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host

    @property
    def http_url(self) -> str:
        return f"{self._connect_host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self._connect_host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._connect_host}:{self.metrics_port}/metrics"

    def bound(self) -> str:
        """What the endpoints listen on, as a user should read it."""
        where = " (all interfaces)" if self.host in ("0.0.0.0", "::", "") else ""
        return (
            f"HTTP {self.host}:{self.http_port}, gRPC {self.host}:{self.grpc_port}, "
            f"metrics {self.host}:{self.metrics_port}{where}"
        )

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def stubs(self) -> dict[int, str]:
        """Live Python-backend stub processes of this server: pid -> model instance name."""
        if self.process is None:
            return {}
        found = {}
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if os.getpgid(int(proc.name)) != self.process.pid:
                    continue
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, ProcessLookupError, IndexError):
                continue
            if argv and argv[0].endswith(b"triton_python_backend_stub") and state not in ("Z", "X") and len(argv) > 2:
                found[int(proc.name)] = argv[-3].decode(errors="replace")  # ... <instance name> DEFAULT ''
        return found

    def dead_stubs(self) -> list[str]:
        """Instances whose stub died since the server became ready.

        Triton 2.51 neither restarts a dead Python stub nor reports the model not ready: it
        fails every request of that instance with "Stub process '<name>' is not healthy".
        """
        alive = set(self.stubs().values())
        return sorted(set(self._stubs_at_ready.values()) - alive)

    def command(self, binary: ServerBinary) -> list[str]:
        cmd = [
            str(binary.path),
            f"--model-repository={self.model_repository}",
            "--exit-on-error=true",
            "--strict-readiness=true",
            "--model-control-mode=none",
            "--disable-auto-complete-config",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--allow-metrics=true",
            f"--log-verbose={self.log_verbose}",
        ]
        if binary.backend_dir is not None:
            cmd.append(f"--backend-directory={binary.backend_dir}")
        if self.shm_prefix:
            cmd.append(f"--backend-config=python,{SHM_PREFIX_OPTION}={self.shm_prefix}")
        if self.admin_key is not None:
            header, value = self.admin_key
            restricted = f"{','.join(ADMIN_PROTOCOLS)}:{header}={value}"
            cmd += [f"--grpc-restricted-protocol={restricted}", f"--http-restricted-api={restricted}"]
        if self.grpc_tls is not None:
            tls = self.grpc_tls
            cmd += [
                "--grpc-use-ssl=true",
                f"--grpc-server-cert={tls.server_cert}",
                f"--grpc-server-key={tls.server_key}",
            ]
            if tls.root_cert is not None:
                cmd += [f"--grpc-root-cert={tls.root_cert}", "--grpc-use-ssl-mutual=true"]
        return cmd + list(self.extra_args)

    def log_text(self) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")
        return ""

    def start(self) -> "TritonServer":
        if not self.model_repository.is_dir():
            raise ServerError(f"model repository {self.model_repository} is not a directory")
        binary = find_tritonserver()
        self._check_ports()
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="tritonserver-", suffix=".log")
            os.close(fd)
            self.log_path, self._temp_log = Path(name), True
        cmd = self.command(binary)
        log.info("starting %s", " ".join(cmd))
        with open(self.log_path, "wb") as log_file:
            # Own session: stop() can signal the server and its Python stubs as one group.
            self.process = subprocess.Popen(
                cmd,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=python_stub_env(binary),
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def open_http(self, path: str, timeout: float):
        """GET `path` on this server's HTTP endpoint, never through HTTP_PROXY: a user's proxy cannot
        reach the loopback address this server listens on."""
        return _NO_PROXY.open(f"http://{self.http_url}{path}", timeout=timeout)

    def _check_ports(self) -> None:
        """A port in use fails the start at once, naming it. Else tritonserver would fail after
        seconds with GPU noise first, and the readiness poll could even reach the other server."""
        for name, port in [("http", self.http_port), ("grpc", self.grpc_port), ("metrics", self.metrics_port)]:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no clash
                try:
                    s.bind((self.host, port))
                except OSError as e:
                    why = (
                        "is already in use (another server, perhaps an earlier tritonserver, listens there)"
                        if e.errno == errno.EADDRINUSE
                        else f"cannot be bound ({e.strerror})"
                    )
                    raise ServerError(
                        f"{_LABEL[name]} port {port} on {self.host} "
                        f"{why}; stop that process or choose another --{name}-port"
                    ) from None

    def is_ready(self) -> bool:
        try:
            with self.open_http("/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            rc = self.process.poll()
            if rc is not None:
                raise self._failure(f"tritonserver exited with code {rc} before it was ready")
            if self.is_ready():
                self._stubs_at_ready = self.stubs()
                log.info("tritonserver ready (pid %d, http %s, grpc %s)", self.pid, self.http_url, self.grpc_url)
                return
            time.sleep(0.25)
        raise self._failure(f"tritonserver not ready after {self.ready_timeout:.0f} s")

    def _failure(self, headline: str) -> ServerError:
        text = self.log_text()
        errors = model_error_lines(text)
        detail = "\n  ".join(errors) if errors else "\n  ".join(text.splitlines()[-15:])
        last = [ln.strip() for ln in text.splitlines() if ln.strip()][-1:]
        return ServerError(
            f"{headline}; server log {self.log_path}:\n  {detail}",
            headline=headline,
            causes=tuple(errors or last),
            log_path=self.log_path,
        )

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> int | None:
        """SIGTERM the server's process group, SIGKILL it after `grace` seconds.

        A temporary log (no log_path given) is removed after a clean stop (exit code 0) and kept
        after anything else, for the post-mortem.
        """
        proc, self.process = self.process, None
        if proc is None:
            return None
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log.warning("tritonserver pid %d ignored SIGTERM for %.0f s; killing", proc.pid, grace)
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        # Stubs may outlive a killed server; the group signal reaches them too.
        _signal_group(proc.pid, signal.SIGKILL)
        self._remove_shm_regions()
        if self._temp_log and self.log_path is not None:
            if proc.returncode == 0:
                self.log_path.unlink(missing_ok=True)
            else:
                log.warning("tritonserver exited with code %s; its log is kept at %s", proc.returncode, self.log_path)
        return proc.returncode

    def shm_regions(self) -> list[Path]:
        """This server's Python-backend shared-memory regions that exist now."""
        return sorted(SHM_DIR.glob(f"{self.shm_prefix}*")) if self.shm_prefix else []

    def _remove_shm_regions(self) -> None:
        """The regions of this (dead) server: a clean stop removes them itself, but a killed or crashed
        server leaves them in /dev/shm (RAM) until reboot. Unlinking is safe while a dying stub still
        maps one: the memory goes when the last mapping does."""
        regions = self.shm_regions()
        for path in regions:
            path.unlink(missing_ok=True)
        if regions:
            log.info(
                "removed %d shared-memory region(s) left by tritonserver: %s*", len(regions), SHM_DIR / self.shm_prefix
            )

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it if the launching process dies, even by SIGKILL.

    The server lives in its own process group (so stop() reaches its stubs), which a signal
    to the launcher's group no longer reaches; the stubs exit when their server is gone.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: stop() is the only cleanup


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
