"""Registered voices: references prepared once at export, chosen by name in requests.

On disk, in the f5_tts version directory:
  voices/voices.json    {name: {"text", "rms", "seconds", "clipped"}}  (sources: manifest.json)
  voices/<name>.wav     the prepared reference: mono, 24 kHz, float32 (bit-exact)
The audio is what `prepare_reference` returns (f5-tts's preprocessing done), so a voice
sounds exactly like sending the same file as reference audio.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

import contract
from contract.request_options import OptionError, check_voice_name
from pipeline.reference import Reference, f5_preprocess_audio, prepare_reference
from pipeline.requests import RequestError
from pipeline.transcriber import Clip

VOICES_DIR = "voices"
INDEX_FILE = "voices.json"


class VoiceError(ValueError):
    pass


def check_name(name: str) -> str:
    try:
        return check_voice_name(name)
    except OptionError as e:
        raise VoiceError(str(e)) from None


def parse_voice_spec(spec: str) -> tuple[str, Path, str]:
    """NAME=path/to/audio.wav:reference transcript -> (name, path, transcript); without the
    transcript (NAME=path/to/audio.wav) the transcript is "": the export's transcriber writes it."""
    name, sep, rest = spec.partition("=")
    path, _, text = rest.partition(":")
    if not sep or not path:
        raise VoiceError(
            f'--voice {spec!r} must be NAME=path/to/audio.wav:"transcript of the audio", or '
            "NAME=path/to/audio.wav to have it transcribed (with --asr)"
        )
    return check_name(name.strip()), Path(path), text.strip()


def check_transcripts(voices, has_transcriber: bool) -> None:
    """Voices without a transcript need a transcriber in the export."""
    untold = [name for name, _, text in voices if not text]
    if untold and not has_transcriber:
        raise VoiceError(
            f"voice(s) {', '.join(untold)} come without a transcript and this export has no transcriber: "
            'give it (--voice NAME=AUDIO:"TRANSCRIPT") or add one with --asr'
        )


def prepare_voice(path: Path, text: str, limits: contract.Limits = contract.LIMITS, transcriber=None) -> Reference:
    """Read an audio file and prepare it as f5-tts prepares a reference. Without `text`, `transcriber`
    (a pipeline.transcriber.Transcriber) transcribes it after f5-tts's preprocessing, as f5-tts does."""
    if not path.is_file():
        raise VoiceError(f"voice audio {path} does not exist")
    try:
        audio, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:
        raise VoiceError(f"voice audio {path} is not a readable audio file ({e}); use WAV, FLAC or OGG") from None
    seconds = len(audio) / sample_rate
    if not limits.min_reference_seconds <= seconds <= limits.max_reference_seconds:
        raise VoiceError(
            f"voice audio {path} is {seconds:.2f} s long; {limits.min_reference_seconds} to "
            f"{limits.max_reference_seconds} s are allowed (it is clipped to "
            f"{limits.reference_clip_seconds} s at a pause, as f5-tts does)"
        )
    audio = np.ascontiguousarray(audio.T)
    if not text:
        # f5-tts transcribes the reference as preprocessed (clipped at a pause, trimmed), so the text
        # matches the audio the model is conditioned on.
        clipped, clipped_rate, _ = f5_preprocess_audio(audio, sample_rate)
        text = transcriber.transcribe([Clip(clipped, clipped_rate)])[0].text
        if not text:
            raise VoiceError(
                f"voice audio {path} was transcribed to nothing (no speech heard); give its transcript: "
                'NAME=AUDIO:"TRANSCRIPT"'
            )
    try:
        return prepare_reference(audio, sample_rate, text)
    except RequestError as e:
        raise VoiceError(f"voice audio {path}: {e}") from None


def save_voices(directory: Path, voices: dict[str, Reference]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    index = {}
    for name, ref in sorted(voices.items()):
        sf.write(str(directory / f"{name}.wav"), ref.audio[0].numpy(), contract.SAMPLE_RATE, subtype="FLOAT")
        index[name] = {"text": ref.text, "rms": ref.rms, "seconds": ref.seconds, "clipped": ref.clipped}
    (directory / INDEX_FILE).write_text(json.dumps(index, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def load_voices(directory: Path) -> dict[str, Reference]:
    index_file = directory / INDEX_FILE
    if not index_file.is_file():
        raise FileNotFoundError(f"{index_file} is missing; re-run `python -m export` with the --voice options")
    voices = {}
    for name, meta in json.loads(index_file.read_text(encoding="utf-8")).items():
        audio, rate = sf.read(str(directory / f"{check_name(name)}.wav"), dtype="float32")
        if rate != contract.SAMPLE_RATE or audio.ndim != 1:
            raise ValueError(f"{directory / name}.wav must be mono {contract.SAMPLE_RATE} Hz, as export writes it")
        voices[name] = Reference(
            audio=torch.from_numpy(audio)[None],
            rms=float(meta["rms"]),
            seconds=float(meta["seconds"]),
            text=meta["text"],
            clipped=bool(meta["clipped"]),
        )
    return voices
