"""Triton Python-backend adapter for Whisper: reference audio in, its transcript (and language) out.

f5_tts asks it (BLS) for references sent without a transcript; clients may call it directly.
The logic is pipeline/transcriber.py, the same call f5-tts makes; a dynamic batch is one pipeline
call per language asked for.
"""

import dataclasses
import json
import time
import traceback
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

import contract
from contract.errors import LOADED_ON, SEE_SERVER_LOG
from contract.parameters import TranscriberParameters
from pipeline.lifeline import exit_when_orphaned
from pipeline.logs import forward_logs
from pipeline.parameters import instance_device
from pipeline.reference import f5_preprocess_audio
from pipeline.requests import RequestError, parse_transcription_request
from pipeline.transcriber import Clip, Transcriber


class TritonPythonModel:
    def initialize(self, args):
        exit_when_orphaned()
        started = time.monotonic()
        forward_logs(pb_utils.Logger.log_info, pb_utils.Logger.log_warn, pb_utils.Logger.log_error)
        self.params = TranscriberParameters.from_triton(json.loads(args["model_config"]).get("parameters", {}))
        self.limits = dataclasses.replace(contract.LIMITS, max_reference_seconds=self.params.max_reference_seconds)
        device = instance_device(args)
        whisper = Path(args["model_repository"]) / args["model_version"] / self.params.whisper_dir
        self.transcriber = Transcriber(whisper, device=device)
        warm = self.transcriber.warm_up()
        pb_utils.Logger.log_info(
            f"{contract.TRANSCRIBER_MODEL} ({self.params.asr_model or whisper}) {LOADED_ON} {device} in "
            f"{time.monotonic() - started:.1f} s (warm-up {warm:.1f} s)"
        )

    def execute(self, requests):
        responses = [None] * len(requests)
        clips, owners, wants_language, wants_text, wants_words = [], [], False, False, False
        for i, request in enumerate(requests):
            try:
                tensors = {}
                for spec in contract.TRANSCRIBER_INPUTS:
                    tensor = pb_utils.get_input_tensor_by_name(request, spec.name)
                    tensors[spec.name] = None if tensor is None else tensor.as_numpy()
                audio, rate, language, as_reference = parse_transcription_request(tensors, self.limits)
                if as_reference:  # the transcript of the audio a voice conditions f5_tts with
                    audio, rate, _ = f5_preprocess_audio(audio, rate)
                clips.append(Clip(audio, rate, self.transcriber.check_language(language)))
                owners.append(i)
                # Detection and word timestamps cost passes of their own: only for callers that read them.
                asked = request.requested_output_names()
                wants_language |= contract.LANGUAGE in asked
                wants_words |= contract.WORDS in asked or not asked
                wants_text |= contract.TRANSCRIPT in asked or not asked
            except RequestError as e:
                responses[i] = _error(str(e), pb_utils.TritonError.INVALID_ARG)
        if clips:
            try:
                transcripts = self.transcriber.transcribe(
                    clips, detect_language=wants_language, text=wants_text, words=wants_words
                )
            except Exception:
                pb_utils.Logger.log_error(f"{contract.TRANSCRIBER_MODEL} failed:\n{traceback.format_exc()}")
                message = f"internal error in the {contract.TRANSCRIBER_MODEL}; {SEE_SERVER_LOG}"
                transcripts = [None] * len(clips)
                for i in owners:
                    responses[i] = _error(message, pb_utils.TritonError.INTERNAL)
            for i, transcript in zip(owners, transcripts):
                if transcript is not None:
                    responses[i] = pb_utils.InferenceResponse(
                        [
                            pb_utils.Tensor(contract.TRANSCRIPT, _bytes(transcript.text)),
                            pb_utils.Tensor(contract.LANGUAGE, _bytes(transcript.language)),
                            pb_utils.Tensor(contract.WORDS, _bytes(json.dumps(transcript.words or []))),
                        ]
                    )
        return responses

    def finalize(self):
        self.transcriber = None


def _bytes(text: str) -> np.ndarray:
    return np.array([[text.encode("utf-8")]], dtype=np.object_)  # [batch 1, 1]


def _error(message, code):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))
