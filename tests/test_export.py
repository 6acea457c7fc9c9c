"""The export CLI: formats, validation with actionable errors, manifest, ONNX vocoder check."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import RELEASED_VOCOS_CONFIG, RELEASED_VOCOS_CONFIG_SHA256

import contract
from export.__main__ import request_from_argv
from export.api import Exported, export_model
from export.demo import (
    TINY_VOCOS,
    write_random_checkpoint,
    write_random_vocos,
    write_tiny_model_config,
    write_tiny_vocos,
)
from export.errors import ExportError
from export.repository import REFERENCE_WAV, sha256
from export.vocoder import MAX_ABS_ERROR, VocoderError, check_onnx, export_onnx, load_vocos
from pipeline.f5_model import ModelConfig, build_cfm, default_vocab_file, load_vocab
from pipeline.vocoder import OnnxVocoder


def _export(tiny, out, *extra, ckpt=None, config=None) -> Exported:
    return export_model(
        request_from_argv(
            [
                "--ckpt",
                str(ckpt or tiny.checkpoint),
                "--model-config",
                str(config or tiny.config),
                "--vocoder",
                str(tiny.vocoder),
                "--output",
                str(out),
                *extra,
            ]
        )
    )


def _refused(tiny, out, *extra, ckpt=None, config=None) -> str:
    """The ExportError's message for an export that must fail."""
    with pytest.raises(ExportError) as err:
        _export(tiny, out, *extra, ckpt=ckpt, config=config)
    return str(err.value)


def test_repository_layout_manifest_and_permissions(tiny_repo, tiny):
    for rel in [
        "f5_tts/config.pbtxt",
        "f5_tts/1/model.py",
        "f5_tts/1/model.safetensors",
        "f5_tts/1/model_config.yaml",
        "f5_tts/1/vocab.txt",
        "f5_tts/warmup/reference_audio",
        "vocoder/config.pbtxt",
        "vocoder/1/model.py",
        "vocoder/1/vocos.onnx",
        "manifest.json",
    ]:
        assert (tiny_repo / rel).is_file(), rel
    manifest = json.loads((tiny_repo / "manifest.json").read_text())
    assert list(manifest["models"]) == ["f5_tts", "f5_tts_fr"]  # the default model, then the one added
    model = manifest["models"]["f5_tts"]
    assert (model["name"], model["stream_model"], model["vocoder_model"]) == ("default", "f5_tts_stream", "vocoder")
    assert model["sources"]["checkpoint"]["sha256"] == sha256(tiny.checkpoint)
    assert model["files"]["f5_tts/1/model.safetensors"] == sha256(tiny_repo / "f5_tts/1/model.safetensors")
    assert manifest["vocoders"]["vocoder"]["onnx_max_abs_error"] <= MAX_ABS_ERROR
    assert manifest["vocoders"]["vocoder"]["onnx_sha256"] == sha256(tiny_repo / "vocoder/1/vocos.onnx")
    assert {"f5-tts", "torch", "onnxruntime", "tritonclient"} <= set(manifest["versions"])
    assert model["options"]["dtype"] == "fp32" and model["options"]["use_ema"] is True
    for path in tiny_repo.rglob("*"):
        assert not path.stat().st_mode & stat.S_IWOTH, f"{path} is world-writable"
        assert not path.stat().st_mode & stat.S_IWGRP, f"{path} is group-writable"


@pytest.mark.slow  # a whole export in a process of its own
def test_demo_tiny_says_it_is_noise(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "export", "--demo-tiny", "--output", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "produces noise, not speech" in proc.stdout
    assert "max |error|" in proc.stdout  # the ONNX check is printed
    manifest = json.loads((tmp_path / "demo" / "manifest.json").read_text())
    assert manifest["models"]["f5_tts"]["demo_model"] is True
    assert 'string_value: "true"' in (tmp_path / "demo/f5_tts/config.pbtxt").read_text()


def test_missing_checkpoint(tiny, tmp_path):
    assert "nope.safetensors does not exist" in _refused(tiny, tmp_path / "o", ckpt=tmp_path / "nope.safetensors")


def test_unknown_checkpoint_format(tiny, tmp_path):
    bad = tmp_path / "weights.npz"
    bad.write_bytes(b"x")
    assert "unknown format '.npz'" in _refused(tiny, tmp_path / "o", ckpt=bad)


def test_corrupt_checkpoint(tiny, tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00" * 100)
    assert "not a readable safetensors file" in _refused(tiny, tmp_path / "o", ckpt=bad)


def test_checkpoint_for_another_config_names_the_mismatch(tiny, tmp_path):
    other = write_tiny_model_config(
        tmp_path / "other.yaml", arch=dict(dim=48, depth=3, heads=2, dim_head=24, ff_mult=2, text_dim=32, conv_layers=1)
    )
    out = _refused(tiny, tmp_path / "o", config=other)
    assert "does not match the model config" in out
    assert "missing keys" in out and "transformer.transformer_blocks.2" in out  # depth 3 vs 2
    assert "shape mismatches" in out


def test_vocab_size_mismatch_is_named(tiny, tmp_path):
    _, trained = load_vocab(default_vocab_file())
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("".join(default_vocab_file().read_text().splitlines(keepends=True)[:100]))
    out = _refused(tiny, tmp_path / "o", "--vocab", str(vocab))
    assert "vocab size mismatch" in out and f"{trained} tokens" in out and "has 100" in out


def test_no_ema_reads_model_state_dict(tiny, tmp_path):
    raw = torch.load(tiny.checkpoint_pt, weights_only=True)
    plain = {
        k.removeprefix("ema_model."): v for k, v in raw["ema_model_state_dict"].items() if k not in ("initted", "step")
    }
    ckpt = tmp_path / "model_only.pt"
    torch.save({"model_state_dict": plain}, ckpt)
    out = _refused(tiny, tmp_path / "o", ckpt=ckpt)
    assert "no `ema_model_state_dict`" in out and "--no-ema" in out
    assert (_export(tiny, tmp_path / "o", "--no-ema", ckpt=ckpt).repository / "manifest.json").is_file()


def test_non_empty_output_needs_force(tiny, tmp_path):
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    (out_dir / "keep.txt").write_text("x")
    assert "pass --force" in _refused(tiny, out_dir) and (out_dir / "keep.txt").exists()
    assert _export(tiny, out_dir, "--force").repository == out_dir
    assert not (out_dir / "keep.txt").exists() and (out_dir / "manifest.json").exists()


def test_failed_export_leaves_no_repository(tiny, tmp_path):
    _refused(tiny, tmp_path / "o", "--vocab", str(tmp_path / "missing_vocab.txt"))
    assert list(tmp_path.iterdir()) == []  # no output, no staging directory


def test_half_precision_needs_gpu(tiny, tmp_path):
    assert "needs --device gpu" in _refused(tiny, tmp_path / "o", "--dtype", "fp16")


def test_pt_checkpoint_exports_the_same_repository_as_safetensors(tiny, tiny_repo, tmp_path):
    """Both released formats of the same weights export the same weights, config and vocab (so they serve
    the same audio: the served model reads only these files)."""
    from safetensors.torch import load_file

    repo = _export(tiny, tmp_path / "repo_pt", ckpt=tiny.checkpoint_pt).repository
    model_dir = repo / contract.TTS_MODEL / contract.MODEL_VERSION
    want_dir = tiny_repo / contract.TTS_MODEL / contract.MODEL_VERSION
    got = load_file(str(model_dir / contract.TTS_WEIGHTS_FILE))
    want = load_file(str(want_dir / contract.TTS_WEIGHTS_FILE))
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    for name in (contract.TTS_ARCH_FILE, contract.TTS_VOCAB_FILE):
        assert (model_dir / name).read_bytes() == (want_dir / name).read_bytes(), name


def test_fp16_weights_are_stored_in_fp16(tiny, tmp_path):
    from safetensors import safe_open

    from export import model_config as mc
    from export.api import ExportRequest, export_model

    export_model(
        ExportRequest(
            tmp_path / "o",
            ckpt=str(tiny.checkpoint),
            model_config=str(tiny.config),
            vocoder=tiny.vocoder,
            serving=mc.ServingOptions.create(device="gpu", dtype="fp16"),
        )
    )
    with safe_open(str(tmp_path / "o/f5_tts/1/model.safetensors"), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys() if k.startswith("transformer.")}
    assert dtypes == {torch.float16}


@pytest.mark.slow  # random-init Small models (150 M parameters)
@pytest.mark.parametrize("name", ["F5TTS_v1_Small", "F5TTS_Small"])
def test_builtin_small_configs_export(tmp_path, tiny, name):
    """The v1 and v0 Small architectures, from f5-tts's own config names, export from a .pt checkpoint."""
    from pipeline.f5_model import resolve_model_config

    ckpt = write_random_checkpoint(resolve_model_config(name), tmp_path / f"{name}.pt", fmt="pt")
    assert _export(tiny, tmp_path / "o", ckpt=ckpt, config=name).manifest["models"]["f5_tts"]["model"] == name


@pytest.fixture(scope="module")
def speech_mel(tiny):
    """f5-tts's mel of real speech (the reference it ships), [1, 100, frames]."""
    import soundfile as sf

    vocab, _ = load_vocab(default_vocab_file())
    cfm = build_cfm(ModelConfig.load(tiny.config), vocab)
    audio, _ = sf.read(str(REFERENCE_WAV), dtype="float32")
    with torch.no_grad():
        mel = cfm.mel_spec(torch.from_numpy(audio)[None])
    assert mel.shape[1] == contract.N_MELS
    return mel


def test_onnx_vocoder_matches_pytorch_on_real_speech(tmp_path, tiny, speech_mel):
    vocos = load_vocos(tiny.vocoder)
    export_onnx(vocos, tmp_path / "v.onnx")
    error = check_onnx(vocos, tmp_path / "v.onnx", speech_mel)
    assert error < 1e-5
    # a different vocoder in the ONNX file fails the check loudly
    other = load_vocos(write_tiny_vocos(tmp_path / "other", seed=1))
    with pytest.raises(VocoderError, match="max \\|error\\|"):
        check_onnx(other, tmp_path / "v.onnx", speech_mel)


def test_released_vocos_config_is_the_real_file():
    """tests/data holds charactr/vocos-mel-24khz's config.yaml byte for byte (461 bytes)."""
    assert sha256(RELEASED_VOCOS_CONFIG) == RELEASED_VOCOS_CONFIG_SHA256


def test_tiny_vocos_is_the_released_architecture_scaled_down():
    """The demo/test Vocos differs from the release only in its sizes: same classes, mel front end and head padding."""
    sizes = {"backbone": ("dim", "intermediate_dim", "num_layers"), "head": ("dim",)}

    def without_sizes(cfg):
        cfg = copy.deepcopy(cfg)
        for section, keys in sizes.items():
            for key in keys:
                cfg[section]["init_args"].pop(key)
        return cfg

    assert without_sizes(TINY_VOCOS) == without_sizes(yaml.safe_load(RELEASED_VOCOS_CONFIG.read_text()))


@pytest.mark.slow  # the released Vocos architecture, full size
@pytest.mark.parametrize("padding", ["center", "same"])
def test_released_vocos_architecture_matches_pytorch_on_real_speech(tmp_path, speech_mel, padding):
    """charactr/vocos-mel-24khz's config (random weights), with its ISTFT head padding and with the other one."""
    config = yaml.safe_load(RELEASED_VOCOS_CONFIG.read_text())
    config["head"]["init_args"]["padding"] = padding
    vocos = load_vocos(write_random_vocos(tmp_path / "vocos", config))
    export_onnx(vocos, tmp_path / "v.onnx")
    assert check_onnx(vocos, tmp_path / "v.onnx", speech_mel) <= MAX_ABS_ERROR
    frames = speech_mel.shape[-1]
    waveform = OnnxVocoder(tmp_path / "v.onnx").decode_batch(speech_mel.numpy())
    # torch.istft(center=True) trims n_fft // 2 at both ends: what f5-tts's vocos.decode returns
    want = (frames - 1) * contract.HOP_LENGTH if padding == "center" else frames * contract.HOP_LENGTH
    assert waveform.shape == (1, want)


def test_force_onto_a_file_is_refused_before_any_work(tmp_path):
    afile = tmp_path / "afile.txt"
    afile.write_text("hello\n")
    proc = subprocess.run(
        [sys.executable, "-m", "export", "--demo-tiny", "--output", str(afile), "--force"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "[1/" not in proc.stdout  # no step ran
    assert f"output {afile} is a file, not a directory" in proc.stderr
    assert afile.read_text() == "hello\n" and sorted(p.name for p in tmp_path.iterdir()) == ["afile.txt"]


def test_a_checkpoint_of_another_size_is_not_called_a_vocab_mismatch(tiny, tmp_path):
    """The issue's reproduction: a tiny checkpoint against F5TTS_v1_Small (same vocab, other widths)."""
    out = _refused(tiny, tmp_path / "o", config="F5TTS_v1_Small")
    assert "vocab size mismatch" not in out, out
    assert "does not match the model config: the checkpoint is of another model size" in out
    assert "its shapes fit none of f5-tts's configs" in out


def test_a_mismatch_names_the_f5_tts_config_the_checkpoint_fits():
    from pipeline.f5_model import resolve_model_config, state_dict_problems

    vocab, size = load_vocab(default_vocab_file())
    with torch.device("meta"):  # shapes only
        small = build_cfm(ModelConfig.load(resolve_model_config("F5TTS_v1_Small")), vocab)
        base = build_cfm(ModelConfig.load(resolve_model_config("F5TTS_v1_Base")), vocab)
    problems = state_dict_problems(small.state_dict(), base, size)
    assert problems[0].startswith("the checkpoint is of another model size"), problems
    assert "fit f5-tts's F5TTS_v1_Small or F5TTS_Small config (--model-config F5TTS_v1_Small)" in problems[0]
    assert not any("vocab" in p for p in problems), problems


# --- an output the export cannot write: one line, exit status 2, before any work ---------------------------------
# The tests run as root, whom permission bits do not stop: each case below stops root too.


@contextlib.contextmanager
def _tmpfs(path: Path, *, read_only: bool, content: bool = False):
    """A tmpfs mounted at `path` (holding a file when `content`), read-only when `read_only`; unmounted after."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs in this sandbox ({mounted.stderr.strip()}): the mount cases need mount privileges"
        )
    try:
        if content:
            (path / "old.txt").write_text("old\n")
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


@contextlib.contextmanager
def _immutable(path: Path):
    """`path` with the immutable attribute, which stops root from changing the directory; cleared after."""
    changed = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if changed.returncode != 0:
        pytest.skip(f"chattr +i is not supported here ({changed.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _refused_at_once(output: Path, *extra: str) -> str:
    """The one stderr line of `python -m export` refusing `output` before any work (no step ran). The CLI's
    main() runs in this process: the same code as `python -m export`, without paying torch's import again."""
    from export.__main__ import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["--demo-tiny", "--output", str(output), *extra])
    assert code == 2, stdout.getvalue() + stderr.getvalue()
    assert "[1/" not in stdout.getvalue(), stdout.getvalue()  # no export step started
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"export: error: output {output}"), stderr.getvalue()
    return lines[0]


def test_an_output_on_a_read_only_file_system_is_refused_before_any_work(tmp_path):
    with _tmpfs(tmp_path / "ro", read_only=True) as ro:
        line = _refused_at_once(ro / "repo")
        assert f"creating a directory in {ro} failed: it is on a read-only file system" in line
        assert "choose a --output on a writable file system" in line
        assert _tree(ro) == []


def test_force_onto_a_read_only_mount_point_is_refused_before_any_work(tmp_path):
    """Once the export's whole work and then EBUSY (or EROFS) at its end, when it replaced the output."""
    with _tmpfs(tmp_path / "ro", read_only=True, content=True) as ro:
        line = _refused_at_once(ro, "--force")
        assert "read-only file system" in line and _tree(ro) == ["old.txt"]
    assert _tree(tmp_path) == ["ro"]  # no staging directory beside it


def test_a_writable_mount_point_is_refused_with_the_directory_to_use_instead(tmp_path):
    """A mount point cannot be replaced (EBUSY), however writable: the export says to write inside it."""
    with _tmpfs(tmp_path / "volume", read_only=False, content=True) as volume:
        line = _refused_at_once(volume, "--force")
        assert "is a mount point" in line and f"--output {volume / 'model_repository'}" in line
        assert _tree(volume) == ["old.txt"]


def test_an_immutable_directory_is_refused_before_any_work(tmp_path):
    parent = tmp_path / "frozen"
    parent.mkdir()
    (parent / "old.txt").write_text("old\n")
    with _immutable(parent):
        for output, extra in [(parent / "repo", ()), (parent, ("--force",))]:
            line = _refused_at_once(output, *extra)
            assert f"creating a directory in {parent} failed: operation not permitted" in line
            assert "chattr -i" in line
    assert _tree(parent) == ["old.txt"]


def test_force_onto_an_output_holding_an_immutable_directory_is_refused(tmp_path):
    """Its files could not be removed at the end: said before the work, naming that directory."""
    output = tmp_path / "repo"
    (output / "sub").mkdir(parents=True)
    with _immutable(output / "sub"):
        line = _refused_at_once(output, "--force")
    assert f"cannot be replaced: {output / 'sub'} is not writable" in line
    assert _tree(tmp_path) == ["repo", "repo/sub"]


def test_an_output_in_proc_or_under_a_file_is_refused_before_any_work(tmp_path):
    line = _refused_at_once(Path("/proc/f5-export-test"))
    assert "creating a directory in /proc failed: this file system does not accept new directories" in line
    afile = tmp_path / "afile.txt"
    afile.write_text("hello\n")
    line = _refused_at_once(afile / "sub")
    assert f"{afile} is a file, not a directory; choose another --output" in line
    assert _tree(tmp_path) == ["afile.txt"]
