"""Multi-voice scripts: `[narrator] ... [alice] ...` in target_text, as f5-tts's CLI speaks them."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import LONG_TEXT, VOICE, assert_same_audio

import contract
from client import SynthesisError, SynthesisOptions, stream_synthesize, synthesize
from export.repository import REFERENCE_TEXT, REFERENCE_WAV
from pipeline.requests import RequestError, parse_request
from pipeline.script import MAIN, Segment, split_script
from pipeline.streaming import StreamJoiner
from pipeline.synthesizer import Synthesizer
from pipeline.vocoder import OnnxVocoder

NFE = 4
SCRIPT = f"[{MAIN}] Who is there at this hour? [{VOICE}] Only me, the wind in the trees."


def _f5_tts_cli_segments(text: str) -> list[tuple[str, str]]:
    """f5_tts/infer/infer_cli.py's loop over a script (its regexes and steps), for the voices it knows."""
    out = []
    for chunk in re.split(r"(?=\[\w+\])", text):
        if not chunk.strip():
            continue
        match = re.match(r"\[(\w+)\]", chunk)
        voice = match[1] if match else "main"
        out.append((voice, re.sub(r"\[(\w+)\]", "", chunk).strip()))
    return out


@pytest.mark.parametrize(
    "text",
    [
        SCRIPT,
        "Before any tag. [alice] Hello. [bob] Hi, Alice. [alice] Bye.",
        "[narrator]It was late.[alice] Who's there?",
        "[alice] one [alice] two",
    ],
)
def test_a_script_splits_as_f5_tts_cli_splits_it(text):
    assert [(s.voice, s.text) for s in split_script(text)] == _f5_tts_cli_segments(text)


def test_escaped_brackets_are_text_and_empty_segments_are_left_out():
    assert split_script(r"[alice] She said \[laughs] no. [bob]  ") == [Segment("alice", "She said [laughs] no.")]


@pytest.fixture(scope="module")
def synthesizer(tiny_repo):
    vocoder = OnnxVocoder(tiny_repo / contract.VOCODER_MODEL / contract.MODEL_VERSION / contract.VOCODER_ONNX_FILE)
    return Synthesizer.from_directory(tiny_repo / contract.TTS_MODEL / "1", vocoder)


@pytest.fixture(scope="module")
def main_reference():
    import soundfile as sf

    audio, rate = sf.read(str(REFERENCE_WAV), dtype="float32", always_2d=True)
    return np.ascontiguousarray(audio.T), rate


def _request(text, seed=11, reference=None, voice=None, **inputs):
    tensors = {
        contract.TARGET_TEXT: np.array([[text.encode()]], dtype=object),
        contract.NFE_STEP: np.array([[NFE]]),
        contract.SEED: np.array([[seed]]),
    }
    if voice is not None:
        tensors[contract.VOICE] = np.array([[voice.encode()]], dtype=object)
    else:
        audio, rate = reference
        tensors[contract.REFERENCE_AUDIO] = audio
        tensors[contract.REFERENCE_SAMPLE_RATE] = np.array([[rate]], dtype=np.int32)
        tensors[contract.REFERENCE_TEXT] = np.array([[REFERENCE_TEXT.encode()]], dtype=object)
    tensors.update({k: np.array([[v]]) for k, v in inputs.items()})
    return parse_request(tensors, voices=[VOICE])


def test_a_two_voice_script_is_its_segments_spoken_one_by_one_with_seeds_seed_plus_j(synthesizer, main_reference):
    script = synthesizer.synthesize([_request(SCRIPT, reference=main_reference)])[0]
    first = _request("Who is there at this hour?", seed=11, reference=main_reference)
    second = _request("Only me, the wind in the trees.", seed=12, voice=VOICE)
    together = synthesizer.synthesize([first, second])  # the batch the script's segments make
    assert np.array_equal(script.waveform, np.concatenate([together[0].waveform, together[1].waveform]))
    assert (script.chunk_count, script.segment_index) == (2, 1)
    alone = [synthesizer.synthesize([r])[0].waveform for r in (first, second)]  # batched or not: the same audio
    assert_same_audio(script.waveform, np.concatenate(alone))
    again = synthesizer.synthesize([_request(SCRIPT, reference=main_reference)])[0]
    assert np.array_equal(script.waveform, again.waveform)


def test_a_scripts_chunks_one_by_one_join_to_the_whole(synthesizer, main_reference):
    """What the stream model does: chunk k of the whole script; the joiner restarts at a new voice."""
    text = f"[{VOICE}] {LONG_TEXT} [{MAIN}] Short reply."
    whole = synthesizer.synthesize([_request(text, reference=main_reference)])[0]
    joiner, pieces, segment = StreamJoiner(), [], 0
    for k in range(whole.chunk_count):
        chunk = synthesizer.synthesize([_request(text, reference=main_reference, chunk_index=k)])[0]
        assert chunk.chunk_count == whole.chunk_count
        if chunk.segment_index != segment:
            pieces.append(joiner.finish())
            joiner, segment = StreamJoiner(), chunk.segment_index
        pieces.append(joiner.push(chunk.waveform))
    assert segment == 1 and whole.chunk_count >= 3
    assert_same_audio(np.concatenate([*pieces, joiner.finish()]), whole.waveform, rel=1e-6)


@pytest.mark.parametrize(
    "text,inputs,message",
    [
        (
            "[nobody] Hello.",
            {},
            r"input 'target_text' names voice\(s\) \[nobody\] that this server does not have; known: main, "
            rf"{VOICE} \(\[main\] is the request's own reference or voice; write \\\[ for a literal bracket\)",
        ),
        ("[main] Hello. [nature]  ", {contract.DURATION: 9.0}, "'duration' cannot be combined with a multi-voice"),
    ],
)
def test_script_errors_say_what_is_wrong(synthesizer, main_reference, text, inputs, message):
    (answer,) = synthesizer.synthesize([_request(text, reference=main_reference, **inputs)])
    assert isinstance(answer, RequestError) and re.search(message, str(answer))


def test_a_text_without_tags_is_spoken_as_before_with_escaped_brackets_unescaped(synthesizer, main_reference):
    escaped = synthesizer.synthesize([_request(r"She said \[quietly] no.", reference=main_reference)])[0]
    plain = synthesizer.synthesize([_request("She said [quietly] no.", reference=main_reference)])[0]
    assert isinstance(plain, RequestError) and "[quietly]" in str(plain)
    literal = synthesizer.synthesize([_request("She said quietly no.", reference=main_reference)])[0]
    assert escaped.waveform.size > 0 and escaped.segment_index == 0 and literal.waveform.size > 0


# --- through the server and its clients ---------------------------------------------------------


def test_a_script_streams_across_voices_as_its_whole_answer(server, main_reference):
    text = f"[{VOICE}] {LONG_TEXT} [{MAIN}] Short reply."
    audio, rate = main_reference
    options = SynthesisOptions(nfe_step=NFE, seed=21, first_chunk_chars=contract.STREAM_FIRST_CHUNK_CHARS)
    pieces = list(stream_synthesize(text, audio, rate, REFERENCE_TEXT, url=server.grpc_url, options=options))
    whole, _ = synthesize(text, audio, rate, REFERENCE_TEXT, url=server.grpc_url, options=options, timeout=120)
    assert len(pieces) >= 3
    assert_same_audio(np.concatenate(pieces), whole, rel=1e-6)


def test_a_script_with_an_unknown_voice_is_refused_by_the_server(server):
    with pytest.raises(SynthesisError, match=r"names voice\(s\) \[ghost\] that this server does not have"):
        synthesize("[ghost] Boo.", voice=VOICE, url=server.grpc_url, options=SynthesisOptions(nfe_step=NFE))


def test_the_cli_speaks_a_script_from_a_text_file(server, tmp_path, main_reference):
    import subprocess
    import sys
    from pathlib import Path

    import soundfile as sf

    script = tmp_path / "script.txt"
    script.write_text(SCRIPT)
    out = tmp_path / "script.wav"
    cli = subprocess.run(
        [sys.executable, "-m", "client", "--url", server.grpc_url, "--reference-audio", str(REFERENCE_WAV)]
        + ["--reference-text", REFERENCE_TEXT, "--text-file", str(script), "--nfe-step", str(NFE), "--seed", "11"]
        + ["--output", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert cli.returncode == 0, cli.stderr
    audio, rate = main_reference
    want, _ = synthesize(
        SCRIPT, audio, rate, REFERENCE_TEXT, url=server.grpc_url, options=SynthesisOptions(nfe_step=NFE, seed=11)
    )
    got, _ = sf.read(str(out), dtype="int16")
    from client.audio import pcm16

    np.testing.assert_array_equal(got, np.frombuffer(pcm16(want), dtype="<i2"))
