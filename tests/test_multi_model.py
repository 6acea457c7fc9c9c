"""Several F5-TTS models in one repository, served by one tritonserver (`python -m export --name`).

The session's repository (tiny_repo) holds the default model (the v1 architecture with f5-tts's
vocab) and FR_MODEL, added to it: the v0 architecture (F5TTS_Base's flags) from a v0 release's .pt,
with a French vocab. Each must answer as f5-tts's own inference answers for its checkpoint.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import (
    FR_MODEL,
    FRENCH_TEXT,
    SHORT_TEXT,
    VOICE,
    assert_same_audio,
    export_tiny,
    f5tts_inference,
    f5tts_load,
    metric_value,
    speak,
)

import contract
from client import SynthesisError, SynthesisOptions, stream_synthesize, synthesize
from export.__main__ import main as export_main
from export.demo import write_random_checkpoint, write_tiny_vocos
from export.repository import REFERENCE_WAV, sha256
from pipeline.f5_model import default_vocab_file

SEED, NFE = 1234, 8
FR = contract.tts_model_name(FR_MODEL)
# Characters the French vocab lacks: f5-tts turns the Chinese into pinyin (whose tone digits the vocab
# lacks too) and gives every unknown character the filler token 0.
OUTSIDE_THE_VOCAB = "Die Straße nach 東京, s'il vous plaît."


def _files(repository) -> dict[str, str]:
    return {
        str(p.relative_to(repository)): sha256(p)
        for p in sorted(repository.rglob("*"))
        if p.is_file() and p.name != contract.MANIFEST_FILE
    }


@pytest.fixture(scope="module")
def f5tts_fr(tiny, tmp_path_factory):
    model, vocoder = f5tts_load(tiny.v0_config, tiny.v0_checkpoint, tiny.french_vocab, tiny.vocoder)
    return f5tts_inference(model, vocoder, tmp_path_factory.mktemp("f5tts_fr"), nfe_step=NFE, seed=SEED)


@pytest.fixture(scope="module")
def f5tts_default(tiny, tmp_path_factory):
    model, vocoder = f5tts_load(tiny.config, tiny.checkpoint, default_vocab_file(), tiny.vocoder)
    return f5tts_inference(model, vocoder, tmp_path_factory.mktemp("f5tts_default"), nfe_step=NFE, seed=SEED)


def test_multi_model_manifest_lists_every_model_with_its_sources(tiny_repo, tiny):
    manifest = json.loads((tiny_repo / contract.MANIFEST_FILE).read_text())
    assert list(manifest["models"]) == [contract.TTS_MODEL, FR]
    fr = manifest["models"][FR]
    assert (fr["name"], fr["stream_model"], fr["vocoder_model"]) == (FR_MODEL, f"{FR}_stream", contract.VOCODER_MODEL)
    assert fr["sources"]["checkpoint"]["sha256"] == sha256(tiny.v0_checkpoint)
    assert fr["sources"]["vocab"]["sha256"] == sha256(tiny.french_vocab)
    assert fr["model"] == "F5TTS_Base_tiny_demo"  # the v0 config's own name
    assert manifest["models"][contract.TTS_MODEL]["model"] == "F5TTS_v1_Base_tiny_demo"
    # the same Vocos: one vocoder, not copied twice
    assert list(manifest["vocoders"]) == [contract.VOCODER_MODEL] and not (tiny_repo / "vocoder_fr").exists()
    for model in manifest["models"].values():
        assert model["files"] and all(sha256(tiny_repo / path) == digest for path, digest in model["files"].items())
    assert (tiny_repo / FR / "1" / contract.TTS_VOCAB_FILE).read_bytes() == tiny.french_vocab.read_bytes()
    fr_config = (tiny_repo / FR / contract.MODEL_CONFIG_FILE).read_text()
    assert f'name: "{FR}"' in fr_config and '"../vocoder/1/vocos.onnx"' in fr_config
    assert '"transcriber"' in fr_config  # the repository's transcriber serves the added model too
    stream_config = (tiny_repo / f"{FR}_stream" / contract.MODEL_CONFIG_FILE).read_text()
    assert f'string_value: "{FR}"' in stream_config and "decoupled: true" in stream_config


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_multi_model_each_model_answers_as_f5tts_for_its_checkpoint(
    server, reference, f5tts_fr, f5tts_default, protocol
):
    for text in (FRENCH_TEXT, OUTSIDE_THE_VOCAB):
        got = speak(server, reference, text, protocol, model=FR, seed=SEED, nfe_step=NFE)
        assert_same_audio(got, f5tts_fr(reference, text)[0])
    got = speak(server, reference, SHORT_TEXT, protocol, model=contract.TTS_MODEL, seed=SEED, nfe_step=NFE)
    assert_same_audio(got, f5tts_default(reference, SHORT_TEXT)[0])
    # the same request to the two models: two checkpoints, two answers
    other = speak(server, reference, SHORT_TEXT, protocol, model=FR, seed=SEED, nfe_step=NFE)
    n = min(got.size, other.size)
    assert np.max(np.abs(other[:n] - got[:n])) > 1e-2 * np.max(np.abs(got))  # far beyond assert_same_audio's 1e-3


def test_multi_model_streams_each_model_through_its_own_stream_model(server, reference):
    speaker = (reference.audio, reference.sample_rate, reference.text)
    options = SynthesisOptions(seed=SEED, nfe_step=NFE, first_chunk_chars=0)
    pieces = list(
        stream_synthesize(
            FRENCH_TEXT * 3, *speaker, url=server.grpc_url, model=contract.stream_model_name(FR), options=options
        )
    )
    assert len(pieces) >= 2
    whole, _ = synthesize(FRENCH_TEXT * 3, *speaker, url=server.grpc_url, model=FR, options=options, timeout=120)
    assert_same_audio(np.concatenate(pieces), whole)


def test_multi_model_each_model_has_its_own_voices_and_metrics(server, reference):
    wave, _ = synthesize(SHORT_TEXT, voice=VOICE, url=server.grpc_url, options=SynthesisOptions(nfe_step=2))
    assert wave.size > 0  # registered with the default model
    with pytest.raises(SynthesisError, match=f"unknown voice '{VOICE}'; this model has no registered voices"):
        synthesize(SHORT_TEXT, voice=VOICE, url=server.grpc_url, model=FR, options=SynthesisOptions(nfe_step=2))
    before = metric_value(server, f'{contract.REFERENCE_CACHE_METRIC}{{model="{FR}",result="miss"}}')
    quiet = reference.audio * 0.5  # a reference this server has not prepared yet
    speak(server, type(reference)(quiet, reference.sample_rate, reference.text), model=FR, nfe_step=2)
    assert metric_value(server, f'{contract.REFERENCE_CACHE_METRIC}{{model="{FR}",result="miss"}}') == before + 1


@pytest.mark.slow  # four exports
def test_multi_model_adding_a_model_never_changes_the_existing_ones(tmp_path, tiny, capsys):
    repo = export_tiny(tiny, tmp_path / "repo")
    first = json.loads((repo / contract.MANIFEST_FILE).read_text())
    files = _files(repo)

    def add(name, *extra, checkpoint=tiny.v0_checkpoint, vocoder=tiny.vocoder):
        argv = ["--name", name, "--ckpt", str(checkpoint), "--vocoder", str(vocoder), "--output", str(repo)]
        if checkpoint == tiny.v0_checkpoint:
            argv += ["--model-config", str(tiny.v0_config), "--vocab", str(tiny.french_vocab)]
        else:
            argv += ["--model-config", str(tiny.config)]
        return export_main([*argv, *extra])

    assert add("fr") == 0
    after_fr = _files(repo)
    assert {k: after_fr[k] for k in files} == files  # nothing that was there changed
    assert {k.split("/")[0] for k in set(after_fr) - set(files)} == {"f5_tts_fr", "f5_tts_fr_stream"}
    manifest = json.loads((repo / contract.MANIFEST_FILE).read_text())
    assert manifest["models"][contract.TTS_MODEL] == first["models"][contract.TTS_MODEL]
    assert manifest["vocoders"] == first["vocoders"]

    # another Vocos: the model gets a vocoder of its own; the first one stays as it is
    assert add("de", vocoder=write_tiny_vocos(tmp_path / "other_vocos", seed=9)) == 0
    after_de = _files(repo)
    assert {k: after_de[k] for k in after_fr} == after_fr
    assert {k.split("/")[0] for k in set(after_de) - set(after_fr)} == {"f5_tts_de", "f5_tts_de_stream", "vocoder_de"}
    assert '"../vocoder_de/1/vocos.onnx"' in (repo / "f5_tts_de" / contract.MODEL_CONFIG_FILE).read_text()
    manifest = json.loads((repo / contract.MANIFEST_FILE).read_text())
    assert list(manifest["vocoders"]) == ["vocoder", "vocoder_de"]

    # the same name again: refused, unless --force, which replaces that model only
    capsys.readouterr()
    assert add("fr") == 2
    assert "already has model 'fr' (f5_tts_fr); pass --force" in capsys.readouterr().err
    other = write_random_checkpoint(tiny.config, tmp_path / "other.safetensors", seed=11)
    assert add("fr", "--force", checkpoint=other) == 0
    replaced = _files(repo)
    assert {k: v for k, v in replaced.items() if not k.startswith("f5_tts_fr")} == {
        k: v for k, v in after_de.items() if not k.startswith("f5_tts_fr")
    }
    assert replaced["f5_tts_fr/1/model.safetensors"] != after_de["f5_tts_fr/1/model.safetensors"]
    manifest = json.loads((repo / contract.MANIFEST_FILE).read_text())
    assert list(manifest["models"]) == ["f5_tts", "f5_tts_fr", "f5_tts_de"]
    assert manifest["models"]["f5_tts_fr"]["sources"]["checkpoint"]["sha256"] == sha256(other)


@pytest.mark.slow  # six exports
def test_multi_model_vocoders_are_shared_by_every_model_of_the_same_vocos(tmp_path, tiny, capsys):
    repo = export_tiny(tiny, tmp_path / "repo")
    other_vocos = write_tiny_vocos(tmp_path / "other_vocos", seed=9)

    def add(name, vocoder, *extra):
        argv = ["--name", name, "--ckpt", str(tiny.checkpoint), "--model-config", str(tiny.config)]
        return export_main([*argv, "--vocoder", str(vocoder), "--output", str(repo), *extra])

    def vocoders():
        manifest = json.loads((repo / contract.MANIFEST_FILE).read_text())
        used = {name: m["vocoder_model"] for name, m in manifest["models"].items()}
        return used, sorted(manifest["vocoders"]), sorted(p.name for p in repo.glob("vocoder*"))

    assert add("de", other_vocos) == 0 and add("it", other_vocos) == 0  # the second shares the first's
    used, listed, on_disk = vocoders()
    assert (used["f5_tts_de"], used["f5_tts_it"]) == ("vocoder_de", "vocoder_de")
    assert listed == on_disk == ["vocoder", "vocoder_de"]
    # de's vocoder is it's too: replacing de with a third Vocos would change it; refused
    capsys.readouterr()
    assert add("de", write_tiny_vocos(tmp_path / "third_vocos", seed=13), "--force") == 2
    assert "vocoder_de vocodes f5_tts_it too" in capsys.readouterr().err
    assert add("de", tiny.vocoder, "--force") == 0  # de now vocodes with `vocoder`; it keeps vocoder_de
    used, listed, on_disk = vocoders()
    assert (used["f5_tts_de"], used["f5_tts_it"]) == ("vocoder", "vocoder_de") and on_disk == ["vocoder", "vocoder_de"]
    assert add("it", tiny.vocoder, "--force") == 0  # the last user of vocoder_de: it goes with it
    used, listed, on_disk = vocoders()
    assert set(used.values()) == {"vocoder"} and listed == on_disk == ["vocoder"]


@pytest.mark.slow  # two exports with a transcriber
def test_multi_model_an_added_models_voices_are_transcribed_by_the_repositorys_transcriber(
    tmp_path, tiny, tiny_whisper
):
    voice = f"heard={REFERENCE_WAV}"  # no transcript: the transcriber writes it
    repo = export_tiny(tiny, tmp_path / "repo", "--asr", str(tiny_whisper), "--voice", voice)
    assert (
        export_main(
            [
                "--name",
                "fr",
                "--ckpt",
                str(tiny.checkpoint),
                "--model-config",
                str(tiny.config),
                "--vocoder",
                str(tiny.vocoder),
                "--output",
                str(repo),
                "--voice",
                voice,
            ]
        )
        == 0
    )
    manifest = json.loads((repo / contract.MANIFEST_FILE).read_text())
    default, fr = (manifest["models"][m]["voices"]["heard"] for m in ("f5_tts", "f5_tts_fr"))
    assert fr["transcribed"] is True and fr["text"] == default["text"]  # one Whisper, one audio, one transcript


def test_multi_model_one_addition_at_a_time(tiny_repo, tmp_path, tiny, capsys):
    import fcntl
    import os

    repo = tmp_path / "repo"
    shutil.copytree(tiny_repo, repo)
    held = os.open(repo, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # an addition under way
        rc = export_main(["--name", "de", "--ckpt", str(tiny.checkpoint), "--output", str(repo)])
    finally:
        os.close(held)
    assert rc == 2 and "another export is adding a model to" in capsys.readouterr().err
    assert not (repo / "f5_tts_de").exists()


def test_multi_model_a_failed_move_puts_the_repository_back(tmp_path, monkeypatch):
    """A rename failing halfway through an addition (here: the model itself, after its vocoder) leaves the
    repository as it was: the replaced model back in place, nothing new, the old manifest."""
    from pathlib import Path

    from export.repository import _move_in

    repo, staging = tmp_path / "repo", tmp_path / "staging"
    for root, tag in ((repo, "old"), (staging, "new")):
        for directory in ("f5_tts_fr", "f5_tts_fr_stream", "vocoder_fr"):
            (root / directory).mkdir(parents=True)
            (root / directory / "file").write_text(tag)
        (root / contract.MANIFEST_FILE).write_text(tag)
    before = _files(repo) | {contract.MANIFEST_FILE: (repo / contract.MANIFEST_FILE).read_text()}
    rename = Path.rename

    def failing(self, target):
        if self == staging / "f5_tts_fr":
            raise OSError(28, "No space left on device")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", failing)
    with pytest.raises(OSError, match="No space left"):
        _move_in(staging, repo, ["f5_tts_fr", "f5_tts_fr_stream", "vocoder_fr"])
    monkeypatch.undo()
    assert _files(repo) | {contract.MANIFEST_FILE: (repo / contract.MANIFEST_FILE).read_text()} == before


@pytest.mark.parametrize(
    "name,why",
    [
        ("default", "is reserved"),
        ("stream", "is reserved"),  # f5_tts_stream is the default model's stream
        ("f5_tts_x", "is reserved"),
        ("fr_stream", "is reserved"),
        ("Fr", "must match"),
        ("a" * 33, "must match"),
    ],
)
def test_multi_model_bad_names_are_refused_before_any_work(tmp_path, tiny, capsys, name, why):
    rc = export_main(["--name", name, "--ckpt", str(tiny.checkpoint), "--output", str(tmp_path / "none")])
    assert rc == 2 and why in capsys.readouterr().err


def test_multi_model_adding_to_a_directory_that_is_no_repository_is_refused(tmp_path, tiny, capsys):
    rc = export_main(["--name", "fr", "--ckpt", str(tiny.checkpoint), "--output", str(tmp_path / "empty")])
    err = capsys.readouterr().err
    assert rc == 2 and "export the default model first (without --name)" in err


@pytest.mark.slow  # three exports
def test_multi_model_refuses_a_repository_that_cannot_fit_the_gpu_memory(tmp_path, tiny, capsys):
    gpu = ["--device", "gpu", "--no-asr"]
    repo = export_tiny(tiny, tmp_path / "repo", *gpu, "--gpu-memory-gb", "1.5")
    manifest = json.loads((repo / contract.MANIFEST_FILE).read_text())
    one = manifest["models"]["f5_tts"]["gpu_memory"]["total_bytes"]
    assert 1.0 * 2**30 < one < 1.01 * 2**30  # two processes (f5_tts, vocoder): a CUDA context each, tiny weights
    argv = ["--name", "fr", "--ckpt", str(tiny.checkpoint), "--model-config", str(tiny.config)]
    argv += ["--vocoder", str(tiny.vocoder), "--output", str(repo), *gpu, "--instances", "2"]
    capsys.readouterr()
    assert export_main([*argv, "--gpu-memory-gb", "2"]) == 2  # two instances of the added model: 1 GiB more
    err = capsys.readouterr().err
    assert "the repository's models need about 2.0" in err and "f5_tts 1.00, f5_tts_fr 1.00 GiB" in err
    assert "more than --gpu-memory-gb 2" in err and not (repo / "f5_tts_fr").exists()
    assert export_main([*argv, "--gpu-memory-gb", "2.5"]) == 0
    manifest = json.loads((repo / contract.MANIFEST_FILE).read_text())
    assert manifest["gpu_memory"]["total_bytes"] == one + manifest["models"]["f5_tts_fr"]["gpu_memory"]["total_bytes"]


def test_multi_model_preflight_checks_every_model(tiny_repo, tmp_path):
    from deploy.preflight import RepositoryError, check_repository, describe

    found = check_repository(tiny_repo, None)
    assert {FR, f"{FR}_stream"} <= set(found)
    assert "also models fr (F5TTS_Base_tiny)" in describe(found, None)
    broken = tmp_path / "repo"
    shutil.copytree(tiny_repo, broken)
    (broken / FR / "1" / contract.TTS_WEIGHTS_FILE).unlink()
    with pytest.raises(RepositoryError, match=f"{FR}/1/{contract.TTS_WEIGHTS_FILE} is missing; re-export"):
        check_repository(broken, None)


@pytest.mark.parametrize(
    "asked,model",
    [
        (None, "f5_tts"),
        ("default", "f5_tts"),
        ("f5_tts", "f5_tts"),
        (" fr ", "f5_tts_fr"),
        ("f5_tts_fr", "f5_tts_fr"),
        ("Fr", None),  # what export --name refuses names no model
        ("tts-2", None),
        ("fr_stream", None),
        ("f5_tts_fr_stream", None),
        ("f5_tts_stream", None),
        ("stream", None),
        ("f5_tts_f5_tts", None),
    ],
)
def test_multi_model_a_requested_name_means_the_model_export_named(asked, model):
    assert contract.parse_model_name(asked) == model
    if model and model != contract.TTS_MODEL:
        assert contract.model_name_problem(contract.model_short_name(model)) is None


def test_multi_model_the_models_of_a_repository_index():
    index = {
        "models": [
            {"name": name, "state": state}
            for name, state in [
                ("f5_tts_fr", "READY"),
                ("f5_tts_fr_stream", "READY"),
                ("f5_tts", "READY"),
                ("f5_tts_stream", "READY"),
                ("f5_tts_de", "READY"),  # its stream model failed to load: speech cannot reach it
                ("f5_tts_de_stream", "UNAVAILABLE"),
                ("f5_tts_it", "UNAVAILABLE"),
                ("vocoder", "READY"),
                ("transcriber", "READY"),
            ]
        ]
    }
    assert contract.tts_models_in_index(index) == ["f5_tts", "f5_tts_fr"]
    assert contract.tts_models_in_index(index["models"], ready_only=False) == [
        "f5_tts",
        "f5_tts_de",
        "f5_tts_fr",
        "f5_tts_it",
    ]
