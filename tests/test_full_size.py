"""A full-size F5TTS_v1_Base-shaped random checkpoint exports, loads, warms up and serves.

Random weights run at the speed of the real ones; one short request with a low nfe_step
proves the released architecture fits end to end (about a minute on 2 CPU cores).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from omegaconf import OmegaConf

import contract
from export.__main__ import main as export_main
from export.demo import TINY_VOCOS, write_random_checkpoint
from launcher import TritonServer
from pipeline.f5_model import resolve_model_config

from conftest import speak

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def full_size_repo(tmp_path_factory):
    d = tmp_path_factory.mktemp("full_size")
    ckpt = write_random_checkpoint(resolve_model_config("F5TTS_v1_Base"), d / "model_1250000.safetensors")
    vocos = OmegaConf.create(TINY_VOCOS)  # charactr/vocos-mel-24khz's architecture
    vocos.backbone.init_args.update(dim=512, intermediate_dim=1536, num_layers=8)
    vocos.head.init_args.dim = 512
    (d / "vocos").mkdir()
    OmegaConf.save(vocos, d / "vocos" / "config.yaml")
    from vocos import Vocos
    import torch

    torch.save(Vocos.from_hparams(str(d / "vocos" / "config.yaml")).state_dict(), d / "vocos" / "pytorch_model.bin")
    ckpt_size = ckpt.stat().st_size
    out = d / "repo"
    assert export_main(["--ckpt", str(ckpt), "--vocoder", str(d / "vocos"), "--output", str(out)]) == 0
    ckpt.unlink()  # 1.3 GB; the repository holds its own copy
    return out, ckpt_size


def test_full_size_v1_base_exports_loads_and_serves(full_size_repo, reference):
    repo, ckpt_size = full_size_repo
    manifest = json.loads((repo / "manifest.json").read_text())
    assert manifest["model"] == "F5TTS_v1_Base"
    assert 330e6 < manifest["parameters"] < 345e6  # F5TTS_v1_Base has 337 M DiT parameters
    assert ckpt_size > 1.3e9
    with TritonServer(repo, ready_timeout=600) as server:
        wave = speak(server, reference, "Hello.", nfe_step=2, seed=0)
    assert wave.size > 0 and np.isfinite(wave).all()
    assert wave.size % contract.HOP_LENGTH == 0
