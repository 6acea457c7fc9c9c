"""Security: TLS (gRPC natively, HTTPS through a TLS proxy), admin APIs behind a key header,
model control mode none, checkpoints loaded without executing pickled code."""

from __future__ import annotations

import datetime
import pickle
import socket
import ssl
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from conftest import FR_MODEL, SHORT_TEXT
from tritonclient.utils import InferenceServerException

import contract
from client import SynthesisError, SynthesisOptions, synthesize
from export.checkpoint import CheckpointError, read_state_dict
from launcher import GrpcTls, TritonServer


def _certificates(d: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, as PEM files."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def key():
        return ec.generate_private_key(ec.SECP256R1())

    def cert(subject_key, name, issuer_key, issuer_name, ca=False, san=None):
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
            .public_key(subject_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    ca_key, server_key, client_key = key(), key(), key()
    ca = cert(ca_key, "test-ca", ca_key, "test-ca", ca=True)
    server = cert(
        server_key,
        "localhost",
        ca_key,
        "test-ca",
        san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    client = cert(client_key, "client", ca_key, "test-ca")
    out = {}
    for name, obj in [("ca", ca), ("server", server), ("client", client)]:
        out[f"{name}_cert"] = d / f"{name}.crt"
        out[f"{name}_cert"].write_bytes(obj.public_bytes(serialization.Encoding.PEM))
    for name, k in [("server", server_key), ("client", client_key)]:
        out[f"{name}_key"] = d / f"{name}.key"
        out[f"{name}_key"].write_bytes(
            k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
    return out


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return _certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def secure_server(tiny_repo, certs):
    """gRPC over mutual TLS, admin APIs behind `admin-key: s3cret` (its tests are marked slow by hand:
    a module's server cannot come from the per-test start_server)."""
    srv = TritonServer(
        tiny_repo,
        admin_key=("admin-key", "s3cret"),
        grpc_tls=GrpcTls(certs["server_cert"], certs["server_key"], certs["ca_cert"]),
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _speak_tls(server, reference, certs, **kw):
    return synthesize(
        SHORT_TEXT,
        reference.audio,
        reference.sample_rate,
        reference.text,
        url=server.grpc_url,
        protocol="grpc",
        options=SynthesisOptions(nfe_step=2, seed=1),
        ssl=True,
        root_certificates=str(certs["ca_cert"]),
        **kw,
    )


@pytest.mark.slow  # a tritonserver of its own (TLS and admin key, or behind a recording proxy)
def test_grpc_mutual_tls(secure_server, reference, certs):
    wave, rate = _speak_tls(
        secure_server,
        reference,
        certs,
        private_key=str(certs["client_key"]),
        certificate_chain=str(certs["client_cert"]),
    )
    assert rate == contract.SAMPLE_RATE and wave.size > 0
    with pytest.raises(SynthesisError):  # no client certificate: the handshake is refused
        _speak_tls(secure_server, reference, certs)
    with pytest.raises(SynthesisError):  # plaintext to a TLS port
        synthesize(
            SHORT_TEXT,
            reference.audio,
            reference.sample_rate,
            reference.text,
            url=secure_server.grpc_url,
            options=SynthesisOptions(nfe_step=2),
        )


class _TlsProxy:
    """HTTPS in front of Triton's plain HTTP endpoint (how HTTPS is deployed: Triton has no HTTP TLS)."""

    def __init__(self, upstream_port: int, cert: Path, key: Path):
        self.upstream_port = upstream_port
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(str(cert), str(key))
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
                tls = self.ctx.wrap_socket(conn, server_side=True)
            except OSError:
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            for a, b in ((tls, upstream), (upstream, tls)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):  # shutdown first: a close alone would not wake the other pipe's recv,
                try:  # and its connection to Triton would stay open, holding Triton's stop
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self):
        self.stopped = True
        self.sock.close()


def test_https_client_through_a_tls_proxy(server, reference, certs):
    proxy = _TlsProxy(server.http_port, certs["server_cert"], certs["server_key"])
    try:
        wave, _ = synthesize(
            SHORT_TEXT,
            reference.audio,
            reference.sample_rate,
            reference.text,
            url=f"127.0.0.1:{proxy.port}",
            protocol="http",
            ssl=True,
            root_certificates=str(certs["ca_cert"]),
            options=SynthesisOptions(nfe_step=2, seed=1),
        )
        plain, _ = synthesize(
            SHORT_TEXT,
            reference.audio,
            reference.sample_rate,
            reference.text,
            url=server.http_url,
            protocol="http",
            options=SynthesisOptions(nfe_step=2, seed=1),
        )
        assert (wave == plain).all()
        with pytest.raises(SynthesisError):  # a CA that did not sign the server certificate
            synthesize(
                SHORT_TEXT,
                reference.audio,
                reference.sample_rate,
                reference.text,
                url=f"127.0.0.1:{proxy.port}",
                protocol="http",
                ssl=True,
                root_certificates=str(certs["client_cert"]),
                options=SynthesisOptions(nfe_step=2),
            )
    finally:
        proxy.close()


def _http(server, method: str, path: str, headers=None) -> int:
    req = urllib.request.Request(
        f"http://{server.http_url}{path}",
        method=method,
        headers=headers or {},
        data=b"{}" if method == "POST" else None,
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.slow  # a tritonserver of its own (TLS and admin key, or behind a recording proxy)
def test_admin_apis_need_the_key_while_inference_stays_open(secure_server):
    key = {"admin-key": "s3cret"}
    # HTTP: the repository index is refused without the key, allowed with it
    assert _http(secure_server, "POST", "/v2/repository/index") in (401, 403)
    assert _http(secure_server, "POST", "/v2/repository/index", key) == 200
    assert _http(secure_server, "POST", "/v2/repository/index", {"admin-key": "wrong"}) in (401, 403)
    assert _http(secure_server, "GET", "/v2/logging") in (401, 403)
    # open: health, metadata, statistics
    assert _http(secure_server, "GET", "/v2/health/ready") == 200
    assert _http(secure_server, "GET", f"/v2/models/{contract.TTS_MODEL}") == 200
    assert _http(secure_server, "GET", f"/v2/models/{contract.TTS_MODEL}/stats") == 200
    # model control mode none: even with the key, models cannot be loaded or unloaded
    assert _http(secure_server, "POST", f"/v2/repository/models/{contract.TTS_MODEL}/unload", key) >= 400
    http = httpclient.InferenceServerClient(secure_server.http_url)
    try:
        assert http.is_model_ready(contract.TTS_MODEL)
    finally:
        http.close()


@pytest.mark.slow  # a tritonserver of its own (TLS and admin key, or behind a recording proxy)
def test_admin_key_over_grpc(secure_server, certs):
    def client():
        return grpcclient.InferenceServerClient(
            secure_server.grpc_url,
            ssl=True,
            root_certificates=str(certs["ca_cert"]),
            private_key=str(certs["client_key"]),
            certificate_chain=str(certs["client_cert"]),
        )

    c = client()
    try:
        with pytest.raises(InferenceServerException):
            c.get_model_repository_index()
        # Triton prefixes the header name for gRPC metadata
        index = c.get_model_repository_index(headers={"triton-grpc-protocol-admin-key": "s3cret"})
        assert {m.name for m in index.models} == {
            contract.TTS_MODEL,
            contract.STREAM_MODEL,
            contract.VOCODER_MODEL,
            contract.TRANSCRIBER_MODEL,  # the tiny repository is exported with --asr
            contract.tts_model_name(FR_MODEL),  # and holds a second model
            contract.stream_model_name(contract.tts_model_name(FR_MODEL)),
        }
        assert c.is_model_ready(contract.TTS_MODEL)
    finally:
        c.close()


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickled_code_in_a_checkpoint_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.pt"
    with open(ckpt, "wb") as f:
        pickle.dump({"ema_model_state_dict": {"x": _Payload(str(marker))}}, f)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        read_state_dict(ckpt)
    assert not marker.exists()


@pytest.mark.slow  # a tritonserver of its own (TLS and admin key, or behind a recording proxy)
def test_the_server_and_the_export_make_no_outside_connection(tiny, tmp_path):
    """Nothing phones home: onnxruntime 1.32 sends telemetry to Microsoft unless it is switched off
    before it starts. The export and a server that loads and warms up (a synthesis through both
    models' onnxruntime sessions) get a recording proxy and must not use it. The server is the
    launcher's `--check` on 127.0.0.1: it binds that host only and removes its temp log after a
    clean stop."""
    import re
    import subprocess
    import sys

    from conftest import hub_env
    from hub_cache import NetworkRecorder

    repo = tmp_path / "repo"
    with NetworkRecorder() as proxy:
        env = hub_env(tmp_path / "hf", HTTPS_PROXY=proxy.url, HTTP_PROXY=proxy.url)
        for command in (
            [
                "export",
                "--ckpt",
                str(tiny.checkpoint),
                "--model-config",
                str(tiny.config),
                "--vocoder",
                str(tiny.vocoder),
                "--output",
                str(repo),
            ],
            [
                "launcher",
                "--model-repository",
                str(repo),
                "--check",
                "--host",
                "127.0.0.1",
                "--http-port",
                "0",
                "--grpc-port",
                "0",
                "--metrics-port",
                "0",
            ],
        ):
            proc = subprocess.run(
                [sys.executable, "-m", *command], env=env, capture_output=True, text=True, timeout=300
            )
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proxy.lines == []
    ready = [ln for ln in proc.stdout.splitlines() if ln.startswith("tritonserver ready")]
    assert ready and re.search(r"HTTP 127\.0\.0\.1:\d+, gRPC 127\.0\.0\.1:\d+, metrics 127\.0\.0\.1:\d+", ready[0])
    assert "all interfaces" not in ready[0]
    log = re.findall(r"(/\S*/tritonserver-\S+?\.log)", ready[0])
    assert log and not Path(log[0]).exists(), "a clean stop leaves no temp log behind"
