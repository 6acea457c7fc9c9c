"""Captions: each chunk's exact times in the joined audio, its words' estimated times, SRT and WebVTT."""

from __future__ import annotations

import base64
import html
import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import srt
import webvtt
from conftest import GATEWAY_KEY, LONG_TEXT, VOICE, assert_same_audio

import contract
from client import SynthesisOptions, stream_synthesize, synthesize
from client.captions import render, to_srt, to_vtt
from contract.captions import Cue, Word, dumps, loads
from pipeline.captions import CaptionClock, ChunkText, estimate_words, measure_words, place_all
from pipeline.requests import parse_request
from pipeline.script import MAIN
from pipeline.streaming import CROSS_FADE_SAMPLES, chunk_result, cross_fade
from pipeline.synthesizer import Synthesizer
from pipeline.vocoder import OnnxVocoder

ROOT = Path(__file__).resolve().parent.parent
NFE = 4
SCRIPT = f"[{MAIN}] Who is there at this hour of the night? [{VOICE}] Only me, the wind in the old trees."


def _chunk(k: int, text: str = "one two three", ends_segment: bool = False) -> ChunkText:
    return ChunkText(k, text, None, ends_segment)


def _starts(lengths: list[int], fade: int = CROSS_FADE_SAMPLES) -> list[int]:
    """Where each chunk's first sample lands in cross_fade's output, found by joining marked waveforms."""
    starts, joined = [], 0
    for n in lengths:
        overlap = min(fade, joined, n)
        starts.append(joined - overlap)
        joined += n - overlap
    return starts


# --- placement, without a server -----------------------------------------------------------------------
@pytest.mark.parametrize("lengths", [[5000], [50_000, 80_000], [90_000, 40_000, 70_000, 36_000], [3601, 20_000, 9000]])
def test_caption_chunk_times_are_the_chunks_sample_counts_across_the_cross_fade(lengths):
    waves = [np.ones(n, np.float32) for n in lengths]
    cues = place_all([(_chunk(k), n) for k, n in enumerate(lengths)], CROSS_FADE_SAMPLES)
    starts = _starts(lengths)
    assert [c.start_sample for c in cues] == starts
    # a cue ends where the next chunk's fade-in begins; the last with the audio
    assert [c.end_sample for c in cues] == starts[1:] + [len(cross_fade(waves))]
    assert all(c.sample_rate == contract.SAMPLE_RATE and c.end == c.end_sample / contract.SAMPLE_RATE for c in cues)


def test_captions_around_a_chunk_shorter_than_the_fade_stay_in_order_and_never_overlap():
    """A chunk under 0.15 s fades in whole, and the next one fades in over it and beyond: its start
    is then held at the previous cue's end (cues never overlap), and nothing else moves."""
    lengths = [20_000, 1000, 20_000, 30_000]
    cues = place_all([(_chunk(k), n) for k, n in enumerate(lengths)], CROSS_FADE_SAMPLES)
    starts = _starts(lengths)
    assert [c.start_sample for c in cues] == [starts[0], starts[1], cues[1].end_sample, starts[3]]
    assert all(a.end_sample <= b.start_sample and a.start_sample <= a.end_sample for a, b in zip(cues, cues[1:]))
    assert cues[-1].end_sample == len(cross_fade([np.ones(n) for n in lengths]))


def test_caption_of_a_script_segment_ends_where_the_next_voice_starts_end_to_end():
    """Segments are joined end to end (no cross-fade between voices), as f5-tts's CLI joins them."""
    chunks = [(_chunk(0), 30_000), (_chunk(1, ends_segment=True), 20_000), (_chunk(2), 25_000), (_chunk(3), 9000)]
    cues = place_all(chunks, CROSS_FADE_SAMPLES)
    first = len(cross_fade([np.ones(30_000), np.ones(20_000)]))
    assert cues[1].end_sample == cues[2].start_sample == first
    assert cues[3].end_sample == first + len(cross_fade([np.ones(25_000), np.ones(9000)]))


def test_a_stream_places_each_caption_before_the_next_chunk_exists():
    """CaptionClock sees one chunk at a time, as the stream model does, and agrees with the whole answer."""
    lengths = [40_000, 33_000, 51_000, 2000]
    clock = CaptionClock(CROSS_FADE_SAMPLES)
    one_by_one = [clock.place(_chunk(k), n, last=k == len(lengths) - 1) for k, n in enumerate(lengths)]
    assert one_by_one == place_all([(_chunk(k), n) for k, n in enumerate(lengths)], CROSS_FADE_SAMPLES)


@pytest.mark.parametrize(
    "text", ["Hello there, my old friend.", "突然，身边一阵笑声。", "Bonjour — ça va?  Très bien!", "one"]
)
def test_caption_words_are_monotonic_inside_their_chunk_and_cover_every_word(text):
    words = estimate_words(text, 48_000, 96_000)
    spoken = re.sub(r"\s+", "", text)
    assert "".join(w.text for w in words) == spoken  # every character of every word, in order
    assert all(w.estimated for w in words)
    assert words[0].start == 2.0 and words[-1].end == 4.0
    assert all(a.end == b.start for a, b in zip(words, words[1:]))
    assert all(w.start < w.end for w in words)


def test_caption_json_round_trips():
    cue = Cue(3, 100, 2500, 24_000, "Hi there.", "alice", (Word("Hi", 0.1, 0.5, True), Word("there.", 0.5, 1.0, True)))
    assert loads(dumps([cue])) == [cue]
    assert json.loads(dumps([cue]))["chunks"][0]["start"] == pytest.approx(100 / 24_000, abs=1e-6)


def test_srt_and_vtt_captions_parse_with_subtitle_libraries(tmp_path):
    cues = place_all(
        [
            (ChunkText(0, "It was late, and the <house> was quiet.", "narrator", True), 60_000),
            (ChunkText(1, "Who's there?", "alice", True), 30_000),
        ],
        CROSS_FADE_SAMPLES,
    )
    subs = list(srt.parse(to_srt(cues)))
    assert [s.content for s in subs] == ["[narrator] It was late, and the <house> was quiet.", "[alice] Who's there?"]
    assert [(s.start.total_seconds(), s.end.total_seconds()) for s in subs] == [(0.0, 2.5), (2.5, 3.75)]
    path = tmp_path / "out.vtt"
    path.write_text(to_vtt(cues))
    captions = webvtt.read(str(path))
    assert [(c.start, c.end) for c in captions] == [("00:00:00.000", "00:00:02.500"), ("00:00:02.500", "00:00:03.750")]
    assert [c.voice for c in captions] == ["narrator", "alice"]
    # the words' timestamps are markup; '<' is escaped as WebVTT requires (players show it unescaped)
    assert html.unescape(captions[0].text) == "It was late, and the <house> was quiet."
    assert render(cues, "json") == dumps(cues)


# --- the synthesizer, in-process ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synthesizer(tiny_repo):
    vocoder = OnnxVocoder(tiny_repo / contract.VOCODER_MODEL / contract.MODEL_VERSION / contract.VOCODER_ONNX_FILE)
    return Synthesizer.from_directory(tiny_repo / contract.TTS_MODEL / "1", vocoder)


def _request(text: str, **inputs):
    tensors = {
        contract.VOICE: np.array([[VOICE.encode()]], dtype=object),
        contract.TARGET_TEXT: np.array([[text.encode()]], dtype=object),
        contract.NFE_STEP: np.array([[NFE]]),
        contract.SEED: np.array([[5]]),
    }
    tensors.update({k: np.array([[v]]) for k, v in inputs.items()})
    return parse_request(tensors, voices=[VOICE])


def _captions(speech) -> list[Cue]:
    return loads(speech.outputs()[contract.CAPTIONS].reshape(-1)[0])


@pytest.mark.parametrize("text", [LONG_TEXT, SCRIPT])
def test_caption_chunk_times_equal_the_synthesized_chunks_sample_counts(synthesizer, text):
    """Each chunk's samples come from asking f5_tts for that chunk alone (as the stream model does)."""
    whole = synthesizer.synthesize([_request(text)])[0]
    cues = _captions(whole)
    chunks = [synthesizer.synthesize([_request(text, chunk_index=k)])[0] for k in range(whole.chunk_count)]
    assert len(cues) == whole.chunk_count >= 2
    assert [c.index for c in cues] == list(range(whole.chunk_count))
    assert [c.text for c in cues] == [_captions(chunk)[0].text for chunk in chunks]
    segments = [chunk.segment_index for chunk in chunks]
    # joined as the answer is: cross-faded within a segment, end to end between segments
    starts, joined = [], 0
    for k, chunk in enumerate(chunks):
        n = len(chunk.waveform)
        overlap = 0 if k == 0 or segments[k] != segments[k - 1] else min(CROSS_FADE_SAMPLES, n)
        starts.append(joined - overlap)
        joined += n - overlap
    assert joined == len(whole.waveform)
    assert [c.start_sample for c in cues] == starts
    assert cues[-1].end_sample == len(whole.waveform)
    for cue in cues:
        assert cue.words and cue.words[0].start == cue.start and cue.words[-1].end == cue.end
    if text == SCRIPT:
        assert [c.speaker for c in cues][0] == MAIN and cues[-1].speaker == VOICE
        assert "".join(c.text for c in cues).replace(" ", "") == re.sub(r"\[\w+\]|\s", "", SCRIPT)
    else:
        assert all(c.speaker is None for c in cues)


# --- through the server ------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize("text", [LONG_TEXT, SCRIPT])
def test_stream_captions_equal_the_whole_answers_captions(server, protocol, text):
    options = SynthesisOptions(nfe_step=NFE, seed=7)
    wave, rate, whole = synthesize(text, voice=VOICE, url=server.grpc_url, options=options, captions=True)
    url = server.grpc_url if protocol == "grpc" else server.http_url
    pieces = list(
        stream_synthesize(
            text,
            voice=VOICE,
            url=url,
            protocol=protocol,
            options=SynthesisOptions(nfe_step=NFE, seed=7, first_chunk_chars=0),
            captions=True,
            timeout=120,
        )
    )
    streamed = [cue for _, cues in pieces for cue in cues]
    assert_same_audio(np.concatenate([p for p, _ in pieces]), wave)
    assert streamed == whole and len(whole) >= 2
    # each cue arrives with the piece that begins to speak it: never after its audio has been sent
    sent = 0
    for piece, cues in pieces:
        assert all(cue.start_sample <= sent + len(piece) for cue in cues)
        sent += len(piece)


def test_caption_output_without_captions_asked_changes_no_audio(server):
    options = SynthesisOptions(nfe_step=NFE, seed=3)
    plain, _ = synthesize(LONG_TEXT, voice=VOICE, url=server.grpc_url, options=options)
    captioned, _, cues = synthesize(LONG_TEXT, voice=VOICE, url=server.grpc_url, options=options, captions=True)
    np.testing.assert_array_equal(plain, captioned)
    assert cues[-1].end_sample == len(plain)
    assert " ".join(w.text for c in cues for w in c.words) == " ".join(LONG_TEXT.split())


@pytest.mark.parametrize("stream", [False, True])
def test_cli_writes_captions_beside_the_audio(server, tmp_path, stream):
    options = SynthesisOptions(nfe_step=NFE, seed=9, first_chunk_chars=0)
    _, _, whole = synthesize(LONG_TEXT, voice=VOICE, url=server.grpc_url, options=options, captions=True)
    common = ["--url", server.grpc_url, "--voice", VOICE, "--text", LONG_TEXT, "--nfe-step", NFE, "--seed", 9]
    common += ["--first-chunk-chars", 0, *(["--stream"] if stream else [])]
    for name in ("out.srt", "out.vtt", "out.json"):
        r = _client(*common, "--output", tmp_path / "out.wav", "--captions", tmp_path / name)
        assert r.returncode == 0, r.stderr
        assert f"captions of {len(whole)} chunk(s) in {tmp_path / name}" in r.stdout
    assert loads((tmp_path / "out.json").read_text()) == whole
    subs = list(srt.parse((tmp_path / "out.srt").read_text()))
    assert [(s.content, round(s.end.total_seconds(), 3)) for s in subs] == [(c.text, round(c.end, 3)) for c in whole]
    assert len(webvtt.read(str(tmp_path / "out.vtt"))) == len(whole)


def test_cli_refuses_a_captions_file_it_cannot_write_before_it_calls_the_server(tmp_path):
    r = _client("--voice", VOICE, "--text", "Hi there.", "--captions", tmp_path / "out.txt", "--url", "127.0.0.1:1")
    assert r.returncode == 2 and "--captions" in r.stderr and ".srt, .vtt, .json" in r.stderr


def _client(*args):
    return subprocess.run(
        [sys.executable, "-m", "client", *map(str, args)], capture_output=True, text=True, timeout=300, cwd=ROOT
    )


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_gateway_sse_carries_the_streams_captions_and_the_file(gateway, server, fmt):
    """OpenAI's speech API with our `captions` extension: speech.captions events before the audio they
    caption, equal to the stream's own cues, then the whole file in a speech.captions.done event."""
    body = {"model": "f5-tts", "input": SCRIPT, "voice": VOICE, "nfe_step": NFE, "seed": 4}
    body |= {"response_format": "pcm", "stream_format": "sse", "captions": fmt}
    r = httpx.post(
        f"{gateway.url}/v1/audio/speech", json=body, headers={"Authorization": f"Bearer {GATEWAY_KEY}"}, timeout=120
    )
    assert r.status_code == 200, r.text
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    cues = [Cue.from_dict(c) for e in events if e["type"] == "speech.captions" for c in e["chunks"]]
    pcm = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    pieces = list(
        stream_synthesize(
            SCRIPT, voice=VOICE, url=server.grpc_url, options=SynthesisOptions(nfe_step=NFE, seed=4), captions=True
        )
    )
    assert cues == [cue for _, piece_cues in pieces for cue in piece_cues] and len(cues) >= 2
    assert cues[-1].end_sample == len(pcm) // 2
    assert {c.speaker for c in cues} == {MAIN, VOICE}
    [done] = [e for e in events if e["type"] == "speech.captions.done"]
    assert done["format"] == fmt and done["text"] == render(cues, fmt)
    assert [e["type"] for e in events][-2:] == ["speech.captions.done", "speech.audio.done"]


# --- measured word times: the transcriber's word timestamps on the generated audio ------------------------------
def test_caption_words_heard_take_the_heard_times_and_the_rest_stay_estimated():
    text = "Hello there, my old friend."
    # what Whisper might hear in the chunk: one word misheard ("mine"), one missed ("old"), times from its start
    heard = (("hello", 0.10, 0.40), ("there", 0.45, 0.80), ("mine", 0.85, 1.00), ("friend", 1.30, 1.70))
    offset, start, end = 24_000, 24_000 + 100, 24_000 + 48_000
    words = measure_words(text, heard, start, end, offset)
    assert [w.text for w in words] == ["Hello", "there,", "my", "old", "friend."]
    assert [(w.start, w.end) for w in words if not w.estimated] == [(1.1, 1.4), (1.45, 1.8), (2.3, 2.7)]
    assert [w.text for w in words if w.estimated] == ["my", "old"]  # shared between "there," and "friend."
    assert words[2].start == 1.8 and words[3].end == 2.3
    assert all(a.end <= b.start for a, b in zip(words, words[1:])) and all(w.start <= w.end for w in words)
    assert words[0].start >= start / 24_000 and words[-1].end <= end / 24_000


def test_caption_words_heard_outside_the_cue_are_clamped_into_it():
    words = measure_words("One two.", (("one", -0.5, 0.2), ("two", 0.3, 9.0)), 2400, 24_000, 0)
    assert (words[0].start, words[-1].end) == (0.1, 1.0) and not any(w.estimated for w in words)


def test_caption_words_nothing_heard_are_the_estimate():
    assert measure_words("Hello there.", (), 0, 48_000, 0) == estimate_words("Hello there.", 0, 48_000)


def _hear(waves):
    """A transcriber stand-in: hears "hello zzz there" in every chunk, word k at [0.1 k, 0.1 k + 0.05) s."""
    return [[(w, k * 0.1, k * 0.1 + 0.05) for k, w in enumerate(["hello", "zzz", "there"])] for _ in waves]


def test_measured_caption_words_flow_from_what_was_heard_and_the_stream_places_them_alike(synthesizer, monkeypatch):
    text = "Hello there, " + LONG_TEXT
    monkeypatch.setattr(synthesizer, "hear", _hear)
    whole = synthesizer.synthesize([_request(text, measure_words=True)])[0]
    cues = _captions(whole)
    first = cues[0].words
    assert first[0].text == "Hello" and not first[0].estimated and first[0].start == 0.0
    assert first[1].text == "there," and not first[1].estimated and first[1].start == pytest.approx(0.2)
    assert all(w.estimated for w in first[2:]) and first[-1].end == cues[0].end
    # the stream model re-places each chunk answer's heard words, and gets the whole answer's cues
    clock, clock_cues = CaptionClock(CROSS_FADE_SAMPLES), []
    for k in range(whole.chunk_count):
        answer = chunk_result(synthesizer.synthesize([_request(text, measure_words=True, chunk_index=k)])[0].outputs())
        assert answer.caption.heard is not None
        clock_cues.append(clock.place(answer.caption, len(answer.waveform), last=k == whole.chunk_count - 1))
    assert clock_cues == cues


def test_measure_words_without_a_transcriber_says_how_to_get_one(synthesizer):
    assert synthesizer.hear is None
    error = synthesizer.synthesize([_request("Hello there.", measure_words=True)])[0]
    assert "'measure_words' asks for word times heard by the 'transcriber' model" in str(error)
    assert "--asr" in str(error)


def test_measured_caption_words_are_what_whisper_hears_in_each_chunk(server, tiny_whisper):
    """Through the server: the transcriber's words for a generated chunk equal transformers' own
    return_timestamps="word" on that chunk's audio (the tiny random Whisper hears nonsense, so no word
    of the text matches and all stay estimated: the alignment itself is tested above)."""
    import tritonclient.grpc as grpcclient
    from transformers import pipeline

    from client.request import build_inputs, grpc_inputs

    options = SynthesisOptions(nfe_step=NFE, seed=2, measure_words=True)
    tensors = build_inputs(None, None, None, LONG_TEXT, options, VOICE)
    tensors[contract.CHUNK_INDEX] = np.array([[1]], dtype=np.int32)
    with grpcclient.InferenceServerClient(server.grpc_url) as c:
        result = c.infer(contract.TTS_MODEL, grpc_inputs(tensors))
    captions = json.loads(result.as_numpy(contract.CAPTIONS).reshape(-1)[0])
    wave = result.as_numpy(contract.WAVEFORM).reshape(-1)
    pipe = pipeline("automatic-speech-recognition", model=str(tiny_whisper))
    out = pipe(
        {"raw": wave, "sampling_rate": contract.SAMPLE_RATE},
        return_timestamps="word",
        generate_kwargs={"task": "transcribe"},  # as f5-tts calls it, and so the transcriber
    )
    expected = [
        [c["text"].strip(), float(c["timestamp"][0] or 0.0), float(c["timestamp"][1] or c["timestamp"][0] or 0.0)]
        for c in out["chunks"]
        if c["text"].strip()
    ]
    assert captions[contract.HEARD] == expected and expected
    _, _, cues = synthesize(LONG_TEXT, voice=VOICE, url=server.grpc_url, options=options, captions=True)
    assert cues[-1].words[-1].end == cues[-1].end
