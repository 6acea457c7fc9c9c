"""References without their transcript: the transcriber model, f5_tts's transcription and its cache, the export.

The Whisper is tests/whisper_fixture.py's: random weights in openai/whisper-large-v3-turbo's layout,
loaded by transformers' pipeline exactly as the release is; its transcripts are random words that
depend on the audio, so equal transcripts mean the same audio went through the same model.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import tritonclient.grpc as grpcclient
from conftest import LONG_TEXT, REFERENCE_WAV, SHORT_TEXT, assert_same_audio, hub_env
from hub_cache import NetworkRecorder
from whisper_fixture import WHISPER_REPO, add_whisper_to_cache, build_tiny_whisper

import contract
from export.__main__ import request_from_argv
from export.api import export_model
from export.errors import ExportError
from pipeline.reference import f5_preprocess_audio, normalize_reference_text
from pipeline.requests import RequestError, parse_request
from pipeline.transcriber import Clip, Transcriber
from pipeline.transcripts import HEARD_NOTHING, NO_TRANSCRIBER, TranscriptCache

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ref_wav():
    audio, rate = sf.read(str(REFERENCE_WAV), dtype="float32", always_2d=True)
    return np.ascontiguousarray(audio.T), rate


@pytest.fixture(scope="module")
def transcriber(tiny_whisper) -> Transcriber:
    return Transcriber(tiny_whisper)


def _heard(transcriber: Transcriber, audio: np.ndarray, rate: int, as_reference: bool = False) -> str:
    if as_reference:
        audio, rate, _ = f5_preprocess_audio(audio, rate)
    return transcriber.transcribe([Clip(audio, rate)])[0].text


# --- the transcriber is f5-tts's transcribe ------------------------------------------------------------------


def test_the_transcriber_equals_f5_tts_transcribe_loaded_from_the_hub_cache_offline(tmp_path):
    """f5_tts.infer.utils_infer.transcribe loads Whisper by the release's name; ours loads the files the
    export copies. Same cache, same audio (stereo, 44.1 kHz, as uploads come): same text. No network."""
    add_whisper_to_cache(tmp_path / "hf")
    script = f"""
import numpy as np
from huggingface_hub import snapshot_download
from f5_tts.infer import utils_infer
from pipeline.transcriber import Clip, Transcriber

audio = np.random.default_rng(7).standard_normal((2, 44100 * 3)).astype(np.float32) * 0.1
utils_infer.device = "cpu"
theirs = utils_infer.transcribe({{"raw": audio.mean(axis=0), "sampling_rate": 44100}})
ours = Transcriber(snapshot_download({WHISPER_REPO!r})).transcribe([Clip(audio, 44100)])[0].text
print("THEIRS", repr(theirs))
print("OURS", repr(ours))
"""
    with NetworkRecorder() as proxy:
        proc = subprocess.run(
            [sys.executable, "-c", script],
            env=hub_env(tmp_path / "hf", HF_HUB_OFFLINE="1", HTTPS_PROXY=proxy.url, HTTP_PROXY=proxy.url),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = re.search(r"^THEIRS (.*)$", proc.stdout, re.M).group(1)
    ours = re.search(r"^OURS (.*)$", proc.stdout, re.M).group(1)
    assert theirs == ours and len(theirs) > 10
    assert proxy.lines == []


def test_the_transcribers_language_is_whispers_detection_or_the_one_asked_for(transcriber, ref_wav):
    audio, rate = ref_wav
    detected, forced = transcriber.transcribe([Clip(audio, rate), Clip(audio, rate, "fr")], detect_language=True)
    assert detected.language in transcriber.languages.values() and forced.language == "fr"
    assert transcriber.transcribe([Clip(audio, rate)])[0] == type(detected)(detected.text, "")
    with pytest.raises(RequestError, match=r"input 'language' is 'xx', which this Whisper does not know; known: af, "):
        transcriber.check_language("xx")


# --- f5_tts's transcription: when, once, and its errors ------------------------------------------------------


def _request(audio, rate, text=None, voice=None):
    tensors = {contract.TARGET_TEXT: np.array([SHORT_TEXT.encode()], dtype=object)}
    if voice:
        tensors[contract.VOICE] = np.array([voice.encode()], dtype=object)
    else:
        tensors[contract.REFERENCE_AUDIO] = audio
        tensors[contract.REFERENCE_SAMPLE_RATE] = np.array([rate], dtype=np.int32)
        if text is not None:
            tensors[contract.REFERENCE_TEXT] = np.array([text.encode()], dtype=object)
    return parse_request(tensors, voices=["nature"])


@pytest.mark.parametrize("text", [None, "", "  \u3000 "])
def test_an_absent_empty_or_blank_transcript_asks_for_transcription(ref_wav, text):
    assert _request(*ref_wav, text=text).reference_text == ""


def test_references_are_transcribed_once_after_f5_tts_preprocessing(transcriber, ref_wav):
    """f5-tts transcribes the clipped, trimmed reference and keeps the text by content: a batch with the same
    reference twice, a later request with it, and a request that gives its own text or a voice."""
    audio, rate = ref_wav
    asked = []

    def transcribe(clips):
        asked.extend(clips)
        return [t.text for t in transcriber.transcribe(clips)]

    cache = TranscriptCache(transcribe, size=4)
    first = cache.fill([_request(audio, rate), _request(audio, rate), _request(audio, rate, "Given.")])
    again = cache.fill([_request(audio, rate), _request(None, None, voice="nature")])
    want = _heard(transcriber, audio, rate, as_reference=True)
    assert [r.reference_text for r in first + again] == [want, want, "Given.", want, None]
    assert len(asked) == 1 and (cache.misses, cache.hits) == (1, 1)
    clipped, clipped_rate, _ = f5_preprocess_audio(audio, rate)
    assert np.array_equal(asked[0].audio, clipped) and asked[0].sample_rate == clipped_rate


def test_without_a_transcriber_an_empty_transcript_says_how_to_add_one(ref_wav):
    (refused,) = TranscriptCache(None, size=4).fill([_request(*ref_wav)])
    assert isinstance(refused, RequestError) and str(refused) == NO_TRANSCRIBER
    assert "has no 'transcriber' model" in NO_TRANSCRIBER and "--asr" in NO_TRANSCRIBER


def test_a_transcription_that_hears_nothing_says_to_send_the_transcript(tmp_path, ref_wav):
    silent = Transcriber(build_tiny_whisper(tmp_path / "silent", silent=True))
    cache = TranscriptCache(lambda clips: [t.text for t in silent.transcribe(clips)], size=4)
    (refused,) = cache.fill([_request(*ref_wav)])
    assert isinstance(refused, RequestError) and str(refused) == HEARD_NOTHING
    (again,) = cache.fill([_request(*ref_wav)])
    assert isinstance(again, RequestError) and cache.misses == 2, "an empty transcript is not cached"


def test_a_failed_transcription_fails_its_requests_only(ref_wav):
    audio, rate = ref_wav
    other = audio[:, : rate * 2].copy()
    cache = TranscriptCache(lambda clips: [RuntimeError("transcriber down")] + ["words"] * (len(clips) - 1), size=4)
    failed, fine = cache.fill([_request(audio, rate), _request(other, rate)])
    assert isinstance(failed, RuntimeError) and fine.reference_text == "words"


# --- the served models ---------------------------------------------------------------------------------------


def _transcriber_call(server, audio, rate, outputs=(contract.TRANSCRIPT,), **optional):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        inputs = [
            grpcclient.InferInput(contract.REFERENCE_AUDIO, [1, *audio.shape], "FP32"),
            grpcclient.InferInput(contract.REFERENCE_SAMPLE_RATE, [1, 1], "INT32"),
        ]
        inputs[0].set_data_from_numpy(audio[None].astype(np.float32))
        inputs[1].set_data_from_numpy(np.array([[rate]], dtype=np.int32))
        for name, value in optional.items():
            dtype = "BOOL" if isinstance(value, bool) else "BYTES"
            tensor = grpcclient.InferInput(name, [1, 1], dtype)
            tensor.set_data_from_numpy(
                np.array([[value if dtype == "BOOL" else value.encode()]], dtype=object if dtype == "BYTES" else bool)
            )
            inputs.append(tensor)
        result = client.infer(
            contract.TRANSCRIBER_MODEL, inputs, outputs=[grpcclient.InferRequestedOutput(o) for o in outputs]
        )
        return [result.as_numpy(o).reshape(-1)[0].decode() for o in outputs]
    finally:
        client.close()


def _speak(server, audio, rate, text=None, seed=5):
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        values = {
            contract.REFERENCE_AUDIO: audio[None].astype(np.float32),
            contract.REFERENCE_SAMPLE_RATE: np.array([[rate]], dtype=np.int32),
            contract.TARGET_TEXT: np.array([[SHORT_TEXT.encode()]], dtype=object),
            contract.SEED: np.array([[seed]], dtype=np.int64),
            contract.NFE_STEP: np.array([[4]], dtype=np.int32),
        }
        if text is not None:
            values[contract.REFERENCE_TEXT] = np.array([[text.encode()]], dtype=object)
        types = {np.dtype(np.float32): "FP32", np.dtype(np.int32): "INT32", np.dtype(np.int64): "INT64"}
        inputs = []
        for name, value in values.items():
            tensor = grpcclient.InferInput(name, list(value.shape), types.get(value.dtype, "BYTES"))
            tensor.set_data_from_numpy(value)
            inputs.append(tensor)
        return client.infer(contract.TTS_MODEL, inputs).as_numpy(contract.WAVEFORM)[0]
    finally:
        client.close()


def _metric(server, result: str) -> float:
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(server.metrics_url, timeout=10) as r:
        text = r.read().decode()
    found = re.search(
        rf'^{contract.TRANSCRIPTION_CACHE_METRIC}{{model="{contract.TTS_MODEL}",result="{result}"}} (\S+)$', text, re.M
    )
    return float(found.group(1)) if found else 0.0


def test_the_transcriber_model_answers_as_the_pipeline_transcribes(server, transcriber, ref_wav):
    audio, rate = ref_wav
    text, language = _transcriber_call(server, audio, rate, outputs=(contract.TRANSCRIPT, contract.LANGUAGE))
    want = transcriber.transcribe([Clip(audio, rate)], detect_language=True)[0]
    assert (text, language) == (want.text, want.language)
    assert _transcriber_call(server, audio, rate, as_reference=True) == [_heard(transcriber, audio, rate, True)]
    assert _transcriber_call(server, audio, rate, outputs=(contract.LANGUAGE,), language="de") == ["de"]


def test_bad_transcriber_requests_are_refused_with_what_is_allowed(server, ref_wav):
    audio, rate = ref_wav
    with pytest.raises(Exception, match=r"INVALID_ARGUMENT.*input 'language' is 'klingon'.*known: af, am"):
        _transcriber_call(server, audio, rate, language="klingon")
    with pytest.raises(Exception, match=r"INVALID_ARGUMENT.*input 'reference_sample_rate' is 1 Hz"):
        _transcriber_call(server, audio, 1)


def test_a_reference_without_transcript_speaks_as_the_one_sending_its_transcription(server, transcriber, ref_wav):
    """The server transcribes what f5-tts would (the preprocessed ref_wav) and speaks as if it had been
    sent; the second request with the same reference is not transcribed again (the metric says so)."""
    audio = ref_wav[0][:, : ref_wav[1] * 3].copy()  # a clip of its own: a miss, whatever ran before
    rate = ref_wav[1]
    misses, hits = _metric(server, "miss"), _metric(server, "hit")
    untold = _speak(server, audio, rate)
    assert (_metric(server, "miss"), _metric(server, "hit")) == (misses + 1, hits)
    again = _speak(server, audio, rate, text="")
    assert (_metric(server, "miss"), _metric(server, "hit")) == (misses + 1, hits + 1)
    told = _speak(server, audio, rate, text=_heard(transcriber, audio, rate, as_reference=True))
    assert untold.size > 0 and np.array_equal(untold, again) and np.array_equal(untold, told)


def test_a_stream_without_transcript_is_the_whole_answer_in_pieces(server, ref_wav):
    """Each chunk of the stream is an f5_tts request without the transcript: the first transcribes, the
    others find it cached; joined, they are the whole-text answer."""
    from client import SynthesisOptions, stream_synthesize, synthesize

    audio = ref_wav[0][:, : ref_wav[1] * 4].copy()
    rate = ref_wav[1]
    options = SynthesisOptions(nfe_step=4, seed=3, first_chunk_chars=contract.STREAM_FIRST_CHUNK_CHARS)
    misses = _metric(server, "miss")
    pieces = list(stream_synthesize(LONG_TEXT, audio, rate, "", url=server.grpc_url, options=options, timeout=120))
    assert len(pieces) >= 3 and _metric(server, "miss") == misses + 1
    whole, _ = synthesize(LONG_TEXT, audio, rate, "", url=server.grpc_url, options=options, timeout=120)
    assert_same_audio(np.concatenate(pieces), whole)


# --- the export ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv,want",
    [
        ([], None),
        (["--device", "gpu"], contract.DEFAULT_ASR_MODEL),
        (["--device", "gpu", "--no-asr"], None),
        (["--asr"], contract.DEFAULT_ASR_MODEL),
        (["--asr", "org/my-whisper"], "org/my-whisper"),
    ],
)
def test_the_transcriber_is_on_by_default_for_gpu_exports_only(argv, want, tmp_path):
    assert request_from_argv(["--output", str(tmp_path / "o"), *argv]).asr == want


def test_an_asr_directory_without_whisper_files_is_refused_before_any_work(tmp_path):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "config.json").write_text("{}")
    with pytest.raises(ExportError, match=r"--asr .*/w: the directory lacks generation_config.json, "):
        export_model(request_from_argv(["--demo-tiny", "--output", str(tmp_path / "o"), "--asr", str(tmp_path / "w")]))
    assert not (tmp_path / "o").exists()


def test_a_voice_without_transcript_and_no_transcriber_is_refused_before_any_work(tmp_path):
    with pytest.raises(ExportError, match=r"voice\(s\) quiet come without a transcript .* add one with --asr"):
        export_model(
            request_from_argv(["--demo-tiny", "--output", str(tmp_path / "o"), "--voice", f"quiet={REFERENCE_WAV}"])
        )
    assert not (tmp_path / "o").exists()


def test_an_uncached_transcriber_offline_says_what_to_do_without_the_network(tmp_path):
    with NetworkRecorder() as proxy:
        proc = subprocess.run(
            [sys.executable, "-m", "export", "--demo-tiny", "--asr", "--output", str(tmp_path / "o")],
            env=hub_env(tmp_path / "hf", HF_HUB_OFFLINE="1", HTTPS_PROXY=proxy.url),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert proc.returncode == 2, proc.stderr
    assert f"hf://{WHISPER_REPO}/config.json is not in the Hugging Face cache" in proc.stderr
    assert "--asr DIR" in proc.stderr and "--no-asr" in proc.stderr
    assert proxy.lines == [] and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_export_takes_the_transcriber_from_the_hub_cache_and_transcribes_a_voice(tmp_path, ref_wav):
    """--asr with the release's name, offline, from a hub-shaped cache; a voice given without its transcript
    gets the transcriber's text for its preprocessed audio, recorded in the manifest and the voice."""
    snapshot = add_whisper_to_cache(tmp_path / "hf")
    with NetworkRecorder() as proxy:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "export",
                "--demo-tiny",
                "--asr",
                "--voice",
                f"heard={REFERENCE_WAV}",
                "--output",
                str(tmp_path / "repo"),
            ],
            env=hub_env(tmp_path / "hf", HF_HUB_OFFLINE="1", HTTPS_PROXY=proxy.url),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proxy.lines == []
    manifest = json.loads((tmp_path / "repo" / contract.MANIFEST_FILE).read_text())
    whisper = tmp_path / "repo" / contract.TRANSCRIBER_MODEL / contract.MODEL_VERSION / contract.WHISPER_DIR
    assert manifest["transcriber"]["source"] == f"hf://{WHISPER_REPO}"
    assert sorted(manifest["transcriber"]["files"]) == sorted(p.name for p in snapshot.iterdir())
    assert all(
        (whisper / name).read_bytes() == (snapshot / name).read_bytes() for name in manifest["transcriber"]["files"]
    )
    want = normalize_reference_text(_heard(Transcriber(snapshot), *ref_wav, as_reference=True)).strip()
    voice = manifest["models"]["f5_tts"]["voices"]["heard"]
    assert voice["transcribed"] is True and voice["text"] == want
    config = (tmp_path / "repo" / contract.TTS_MODEL / contract.MODEL_CONFIG_FILE).read_text()
    assert re.search(r'key: "transcriber_model"\s+value \{\s+string_value: "transcriber"', config)
