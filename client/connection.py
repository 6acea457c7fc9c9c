"""Where the server is and how to talk to it: URLs, TLS files, tritonclient objects, error messages.

Every URL a user gives (CLI, Python API, bench, RunPod worker) goes through `resolve_endpoint`,
so `localhost:8001`, `grpc://localhost:8001` and `http://localhost:8000` all work everywhere.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import contract
from contract.errors import GRPC_DEADLINE_EXCEEDED, INVALID_ARGUMENT_STATUSES

log = logging.getLogger("client")

# scheme -> (protocol, TLS)
SCHEMES = {"http": ("http", False), "https": ("http", True), "grpc": ("grpc", False), "grpcs": ("grpc", True)}
# Triton's default ports: the default addresses, and the other one to suggest when a port answers in the
# wrong protocol.
DEFAULT_PORT = {"grpc": contract.GRPC_PORT, "http": contract.HTTP_PORT}
DEFAULT_ADDRESS = {protocol: f"localhost:{port}" for protocol, port in DEFAULT_PORT.items()}
# How each protocol says that the server refused the request itself (Triton's INVALID_ARG).


@dataclass(frozen=True)
class Endpoint:
    protocol: str  # "grpc" or "http"
    address: str  # host:port (HTTP: optionally /base/path), no scheme
    ssl: bool

    @property
    def url(self) -> str:
        scheme = {("http", False): "http", ("http", True): "https", ("grpc", False): "grpc", ("grpc", True): "grpcs"}[
            (self.protocol, self.ssl)
        ]
        return f"{scheme}://{self.address}"


def resolve_endpoint(url: str | None, protocol: str | None = None, ssl: bool = False) -> Endpoint:
    """`host:port`, or `http://`, `https://` (TLS), `grpc://`, `grpcs://` (TLS) + host:port.

    A scheme sets the protocol (and TLS); given both, they must agree. Raises ValueError.
    """
    if protocol is not None and protocol not in DEFAULT_ADDRESS:
        raise ValueError(f"protocol must be grpc or http, got {protocol!r}")
    if url is None or not url.strip():
        protocol = protocol or "grpc"
        return Endpoint(protocol, DEFAULT_ADDRESS[protocol], ssl)
    address = url.strip()
    scheme, sep, rest = address.partition("://")
    if sep:
        if scheme.lower() not in SCHEMES:
            raise ValueError(
                f"URL {url!r}: scheme '{scheme}://' is not supported; use host:port, or http://, "
                "https:// (HTTP over TLS), grpc:// or grpcs:// (gRPC over TLS) before it"
            )
        implied, tls = SCHEMES[scheme.lower()]
        if protocol is not None and protocol != implied:
            raise ValueError(
                f"URL {url!r} is a{'n' if implied == 'http' else ''} {implied.upper()} address but the "
                f"protocol asked for is {protocol}; drop one of the two or make them agree"
            )
        if ssl and not tls:
            raise ValueError(
                f"URL {url!r} asks for plain {implied.upper()} but TLS was asked for too (--ssl); "
                f"write {'https' if implied == 'http' else 'grpcs'}:// instead"
            )
        protocol, ssl, address = implied, tls, rest
    protocol = protocol or "grpc"
    address = address.rstrip("/")
    host_port, _, path = address.partition("/")
    if not host_port or any(c.isspace() for c in address):
        raise ValueError(f"URL {url!r} has no host:port (e.g. {DEFAULT_ADDRESS[protocol]})")
    if path and protocol == "grpc":
        raise ValueError(f"URL {url!r}: a gRPC address is host:port, without a path")
    host, colon, port = host_port.rpartition(":")
    if colon and not host.endswith(":") and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"URL {url!r}: port {port!r} is not a port number (1-65535)")
    return Endpoint(protocol, address, ssl)


def _pem(path: str | None, what: str) -> bytes | None:
    """The file's bytes, or ValueError naming the file: read here, so that no tritonclient object is
    left half-built by a missing file (its destructor would then print a traceback)."""
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{what} file {path} does not exist") from None
    except OSError as e:
        raise ValueError(f"cannot read {what} file {path}: {e.strerror}") from None


def make_client(
    url: str | None = None,
    protocol: str | None = None,
    *,
    ssl: bool = False,
    root_certificates: str | None = None,
    private_key: str | None = None,
    certificate_chain: str | None = None,
    timeout: float | None = None,
    verbose: bool = False,
):
    """A tritonclient gRPC or HTTP client for `url` (see resolve_endpoint). `verbose` is
    tritonclient's own: it prints every request and response in full, audio included."""
    endpoint = resolve_endpoint(url, protocol, ssl)
    root, key, chain = (
        _pem(root_certificates, "root certificates"),
        _pem(private_key, "private key"),
        _pem(certificate_chain, "certificate chain"),
    )
    if endpoint.protocol == "grpc":
        import grpc
        import tritonclient.grpc as grpcclient

        creds = None
        if endpoint.ssl:
            creds = grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=chain)
        return grpcclient.InferenceServerClient(endpoint.address, verbose=verbose, creds=creds)
    import tritonclient.http as httpclient

    kwargs = {}
    if endpoint.ssl:
        kwargs = {
            "ssl": True,
            "ssl_context_factory": _ssl_context_factory(root_certificates, private_key, certificate_chain),
        }
    t = timeout or 600.0
    return httpclient.InferenceServerClient(
        endpoint.address, verbose=verbose, connection_timeout=t, network_timeout=t, **kwargs
    )


def _ssl_context_factory(root_certificates, private_key, certificate_chain):
    import gevent.ssl

    try:
        ctx = gevent.ssl.create_default_context(cafile=root_certificates)
        if certificate_chain:
            ctx.load_cert_chain(certificate_chain, private_key)
    except gevent.ssl.SSLError as e:
        raise ValueError(f"the TLS files are not valid PEM ({e.reason or e})") from None
    return lambda: ctx


def ssl_context(root_certificates=None, private_key=None, certificate_chain=None):
    """The stdlib TLS context of the HTTP streaming path, with the same checks as make_client."""
    import ssl as ssl_module

    for path, what in [
        (root_certificates, "root certificates"),
        (private_key, "private key"),
        (certificate_chain, "certificate chain"),
    ]:
        _pem(path, what)
    try:
        context = ssl_module.create_default_context(cafile=root_certificates)
        if certificate_chain:
            context.load_cert_chain(certificate_chain, private_key)
    except ssl_module.SSLError as e:
        raise ValueError(f"the TLS files are not valid PEM ({e.reason or e})") from None
    return context


def describe_error(
    e: BaseException, endpoint: Endpoint | None, timeout: float | None = None, connected: bool = False
) -> tuple[str, str | None]:
    """(message, status) for an exception from tritonclient, gRPC or the HTTP stack.

    The low-level messages ("Socket closed", "Expected HTTP/", "Connection refused") say what
    broke, not why; this says what was reached and what to try. `connected`: a connection to
    the server had been made for this request (so a refused one means the server went away).
    """
    from tritonclient.utils import InferenceServerException

    where = f"the server at {endpoint.url}" if endpoint else "the server"
    status = None
    if isinstance(e, InferenceServerException):
        text, status = e.message() or str(e), e.status()
        if status in INVALID_ARGUMENT_STATUSES:  # the server's own message says it all
            return text, status
    else:
        text = f"{type(e).__name__}: {e}"
    low = text.lower()
    if "deadline" in low or "timed out" in low or isinstance(e, TimeoutError):
        limit = f"within {timeout:g} s" if timeout else "in time"
        return f"timed out: no answer from {where} {limit}; the request was abandoned", GRPC_DEADLINE_EXCEEDED
    if "expected http/" in low or "badstatusline" in low or ("remotedisconnected" in low and not connected):
        return (
            f"{where} did not answer in HTTP: is it the gRPC port? Triton listens for HTTP on "
            f"{DEFAULT_PORT['http']} and for gRPC on {DEFAULT_PORT['grpc']} by default "
            f"(use --protocol grpc, or the HTTP port)",
            status,
        )
    if "failed to connect to all addresses" in low:
        if "connection refused" in low:
            return (
                f"cannot reach {where}: connection refused (nothing listens there: is "
                "tritonserver running, and is the port right?)",
                status,
            )
        if "socket closed" in low or "connection reset" in low:
            return (
                f"{where} closed the connection without answering in gRPC: is it the HTTP port? Triton "
                f"listens for gRPC on {DEFAULT_PORT['grpc']} and for HTTP on {DEFAULT_PORT['http']} by "
                "default (use --protocol http, or the gRPC port; for a TLS port add --ssl)",
                status,
            )
        return f"cannot reach {where}: {text}", status
    if (
        "stream removed" in low
        or "socket closed" in low
        or "connection reset" in low
        or "remotedisconnected" in low
        or "connectionclosed" in low.replace(" ", "")
        or ("connection refused" in low and connected)
    ):
        return (
            f"{where} closed the connection during the request and went away (it stopped or crashed; see its log)",
            status,
        )
    if "connection refused" in low:
        return (
            f"cannot reach {where}: connection refused (nothing listens there: is "
            "tritonserver running, and is the port right?)",
            status,
        )
    return text, status
