"""Registered voices: export --voice, requests naming a voice, listing voices, unknown voices."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHORT_TEXT, VOICE, assert_same_audio, speak

import contract
from client import SynthesisError, SynthesisOptions, list_voices, synthesize
from export.__main__ import request_from_argv
from export.api import export_model
from export.errors import ExportError
from export.repository import REFERENCE_TEXT, REFERENCE_WAV
from pipeline.reference import prepare_reference
from pipeline.requests import RequestError, parse_request
from pipeline.voices import VOICES_DIR, VoiceError, load_voices, parse_voice_spec

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "spec,want",
    [
        ("alice=ref.wav:Hello there.", ("alice", Path("ref.wav"), "Hello there.")),
        ("bob.v2=dir/ref.flac:Text: with a colon.", ("bob.v2", Path("dir/ref.flac"), "Text: with a colon.")),
        ("carol=ref.wav", ("carol", Path("ref.wav"), "")),  # no transcript: the export's transcriber writes it
        ("dan=ref.wav:  ", ("dan", Path("ref.wav"), "")),
    ],
)
def test_voice_spec_parsing(spec, want):
    assert parse_voice_spec(spec) == want


@pytest.mark.parametrize(
    "spec,message",
    [
        ("alice=", "must be NAME=path"),
        ("ref.wav:Hello", "must be NAME=path"),
        ("al ice=ref.wav:Hello", "is not allowed"),
        ("../x=ref.wav:Hello", "is not allowed"),
    ],
)
def test_bad_voice_specs_are_refused(spec, message):
    with pytest.raises(VoiceError, match=message):
        parse_voice_spec(spec)


def test_export_refuses_a_missing_voice_file(tiny, tmp_path):
    with pytest.raises(ExportError, match="--voice x: audio file missing.wav does not exist"):
        export_model(
            request_from_argv(
                [
                    "--ckpt",
                    str(tiny.checkpoint),
                    "--model-config",
                    str(tiny.config),
                    "--vocoder",
                    str(tiny.vocoder),
                    "--output",
                    str(tmp_path / "repo"),
                    "--voice",
                    "x=missing.wav:Hello.",
                ]
            )
        )
    assert not (tmp_path / "repo").exists()


def test_exported_voice_is_the_prepared_reference_bit_for_bit(tiny_repo, reference):
    voice = load_voices(tiny_repo / contract.TTS_MODEL / "1" / VOICES_DIR)[VOICE]
    want = prepare_reference(reference.audio, reference.sample_rate, REFERENCE_TEXT)
    assert torch.equal(voice.audio, want.audio)
    assert (voice.text, voice.rms, voice.seconds, voice.clipped) == (want.text, want.rms, want.seconds, want.clipped)


def _tensors(**values):
    return {
        k: np.array([[v.encode() if isinstance(v, str) else v]], dtype=object if isinstance(v, str) else None)
        for k, v in values.items()
    }


@pytest.mark.parametrize(
    "values,message",
    [
        ({"voice": "nobody"}, "unknown voice 'nobody'; known voices: adam, nature"),
        ({"voice": "nature", "reference_text": "Hi."}, "send either 'voice' or the reference inputs, not both"),
        (
            {},
            "no reference: send 'reference_audio', 'reference_sample_rate' and 'reference_text', or a registered "
            "'voice' (known voices: adam, nature)",
        ),
        ({"voice": "x" * 65}, "at most 64 bytes"),
    ],
)
def test_voice_request_validation(values, message):
    with pytest.raises(RequestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_request(_tensors(target_text=SHORT_TEXT, **values), voices=["nature", "adam"])


def test_no_registered_voices_says_how_to_register_one():
    with pytest.raises(RequestError, match="no registered voices .*--voice NAME="):
        parse_request(_tensors(target_text=SHORT_TEXT, voice="nature"))


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_voice_sounds_exactly_like_sending_its_reference(server, reference, protocol):
    url = server.grpc_url if protocol == "grpc" else server.http_url
    by_name, rate = synthesize(
        SHORT_TEXT, voice=VOICE, url=url, protocol=protocol, options=SynthesisOptions(nfe_step=8, seed=21), timeout=120
    )
    assert rate == contract.SAMPLE_RATE
    assert_same_audio(by_name, speak(server, reference, SHORT_TEXT, protocol=protocol, seed=21), rel=1e-6)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_unknown_voice_is_invalid_argument_listing_the_known_ones(server, protocol):
    url = server.grpc_url if protocol == "grpc" else server.http_url
    with pytest.raises(SynthesisError, match="unknown voice 'nobody'; known voices: nature") as err:
        synthesize(SHORT_TEXT, voice="nobody", url=url, protocol=protocol, timeout=60)
    assert "INVALID_ARG" in str(err.value.status) or err.value.status == "400"


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_voices_are_listed_from_the_model_config(server, protocol):
    url = server.grpc_url if protocol == "grpc" else server.http_url
    assert list_voices(url, protocol) == [VOICE]


def test_cli_lists_voices_and_speaks_with_one(server, tmp_path):
    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "client", "--url", server.grpc_url, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
        )

    listed = run("--list-voices")
    assert listed.returncode == 0 and listed.stdout.split() == [VOICE]
    out = tmp_path / "voice.wav"
    spoken = run("--voice", VOICE, "--text", SHORT_TEXT, "--nfe-step", 4, "--output", out)
    assert spoken.returncode == 0, spoken.stderr
    assert out.stat().st_size > 44
    both = run("--voice", VOICE, "--reference-text", REFERENCE_TEXT, "--text", SHORT_TEXT)
    assert both.returncode == 2 and "--voice replaces --reference-audio and --reference-text" in both.stderr
    assert REFERENCE_WAV.is_file()
