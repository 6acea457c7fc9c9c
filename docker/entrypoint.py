"""Container entrypoint: check (or build) the model repository, say what was found, exec tritonserver.

Environment:
  MODEL_REPOSITORY   the repository (default /models); a volume
  F5_CHECKPOINT      a checkpoint to export on first start when MODEL_REPOSITORY holds no
                     repository (written into MODEL_REPOSITORY, which must be writable)
  F5_MODEL_CONFIG    f5-tts config name or YAML path for that export (default F5TTS_v1_Base)
  F5_VOCODER         local Vocos directory for that export (default: the hub)
  F5_EXPORT_ARGS     extra `python -m export` flags (default: --device gpu when a GPU is visible)
  HTTP_PORT, GRPC_PORT, METRICS_PORT (8000, 8001, 8002), LOG_VERBOSE (0)
  TRITON_ADMIN_KEY   HEADER=VALUE that admin APIs require (see README, Secure setup)
  TRITON_ARGS        extra tritonserver flags
  STUB_WATCHDOG      1: exec the launcher instead, which runs tritonserver with the same flags
                     and exits 3 when a Python stub dies (Triton 2.5x neither restarts a dead
                     stub nor reports the model unready), so the restart policy replaces it
Every failure exits non-zero with one line naming the cause. tritonserver then runs as this
process (exec), with the launcher's flags: --exit-on-error, --strict-readiness, model control
none; a model that fails to load makes it exit 1 with the model's error in its log.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import contract
from launcher.server import ServerError, TritonServer, find_tritonserver, python_stub_env

REQUIRED_FILES = {
    contract.TTS_MODEL: ["config.pbtxt", "1/model.py", "1/model.safetensors", "1/model_config.yaml", "1/vocab.txt"],
    contract.STREAM_MODEL: ["config.pbtxt", "1/model.py"],
    contract.VOCODER_MODEL: ["config.pbtxt", "1/model.py", "1/vocos.onnx"],
}


class EntrypointError(RuntimeError):
    pass


def gpu_name() -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:
        return None


def export_on_first_start(repo: Path, env: dict[str, str], gpu: str | None) -> None:
    ckpt = env.get("F5_CHECKPOINT")
    if not ckpt:
        raise EntrypointError(f"{repo} holds no model repository ({contract.TTS_MODEL}/config.pbtxt is missing) "
                              "and F5_CHECKPOINT is not set: mount an exported repository or name a checkpoint")
    if not Path(ckpt).is_file():
        raise EntrypointError(f"F5_CHECKPOINT={ckpt} does not exist (is the volume mounted?)")
    from export.__main__ import main as export_main

    args = ["--ckpt", ckpt, "--model-config", env.get("F5_MODEL_CONFIG", "F5TTS_v1_Base"),
            "--output", str(repo), "--force"]
    if env.get("F5_VOCODER"):
        args += ["--vocoder", env["F5_VOCODER"]]
    extra = shlex.split(env.get("F5_EXPORT_ARGS", "--device gpu" if gpu else ""))
    print(f"entrypoint: exporting {ckpt} into {repo} (first start)", flush=True)
    if export_main(args + extra) != 0:
        raise EntrypointError(f"export of {ckpt} into {repo} failed (its error is printed above)")


def check_repository(repo: Path, gpu: str | None) -> dict:
    """Parse every config.pbtxt and check the files each model needs; returns what was found."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    found = {}
    for model, files in REQUIRED_FILES.items():
        for rel in files:
            if not (repo / model / rel).is_file():
                raise EntrypointError(f"{repo / model / rel} is missing; re-export the repository")
        try:
            cfg = text_format.Parse((repo / model / "config.pbtxt").read_text(), pb.ModelConfig())
        except text_format.ParseError as e:
            raise EntrypointError(f"{repo / model / 'config.pbtxt'} is not a valid model config: {e}") from None
        kinds = {pb.ModelInstanceGroup.Kind.Name(g.kind) for g in cfg.instance_group}
        if "KIND_GPU" in kinds and gpu is None:
            raise EntrypointError(f"{repo / model / 'config.pbtxt'} asks for KIND_GPU but no GPU is visible "
                                  "(run with --gpus all, or export with --device cpu)")
        found[model] = {"kinds": sorted(kinds), "parameters": {k: v.string_value for k, v in cfg.parameters.items()}}
    manifest = repo / "manifest.json"
    found["manifest"] = json.loads(manifest.read_text()) if manifest.is_file() else {}
    return found


def describe(found: dict, gpu: str | None) -> str:
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
    return (f"entrypoint: model {tts.get('f5_model_name', '?')}{demo}, dtype {tts.get('dtype', '?')}, "
            f"instances {found[contract.TTS_MODEL]['kinds']}, GPU {gpu or 'none'}, "
            + ", ".join(f"{k} {v}" for k, v in versions.items()))


def main(env: dict[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    repo = Path(env.get("MODEL_REPOSITORY", "/models"))
    try:
        if not repo.is_dir():
            raise EntrypointError(f"MODEL_REPOSITORY={repo} is not a directory (mount the model volume there)")
        gpu = gpu_name()
        if not (repo / contract.TTS_MODEL / "config.pbtxt").is_file():
            export_on_first_start(repo, env, gpu)
        found = check_repository(repo, gpu)
        print(describe(found, gpu), flush=True)
        admin_key = None
        if env.get("TRITON_ADMIN_KEY"):
            header, _, value = env["TRITON_ADMIN_KEY"].partition("=")
            if not header or not value:
                raise EntrypointError("TRITON_ADMIN_KEY must be HEADER=VALUE")
            admin_key = (header, value)
        server = TritonServer(repo, http_port=int(env.get("HTTP_PORT", 8000)), grpc_port=int(env.get("GRPC_PORT", 8001)),
                              metrics_port=int(env.get("METRICS_PORT", 8002)), log_verbose=int(env.get("LOG_VERBOSE", 0)),
                              extra_args=tuple(shlex.split(env.get("TRITON_ARGS", ""))), admin_key=admin_key)
        binary = find_tritonserver()
    except (EntrypointError, ServerError, ValueError) as e:
        print(f"entrypoint: error: {e}", file=sys.stderr, flush=True)
        return 2
    cmd = server.command(binary)
    if env.get("STUB_WATCHDOG") == "1":
        launcher = [sys.executable, "-m", "launcher", "--model-repository", str(repo),
                    "--http-port", str(server.http_port), "--grpc-port", str(server.grpc_port),
                    "--metrics-port", str(server.metrics_port), "--log-verbose", str(server.log_verbose)]
        if admin_key:
            launcher += ["--admin-key", "=".join(admin_key)]
        launcher += ["--", *server.extra_args] if server.extra_args else []
        print("entrypoint: exec (with stub watchdog) " + " ".join(cmd), flush=True)
        os.execve(sys.executable, launcher, env)
    print("entrypoint: exec " + " ".join(cmd), flush=True)
    os.execve(cmd[0], cmd, python_stub_env(binary, env))
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
