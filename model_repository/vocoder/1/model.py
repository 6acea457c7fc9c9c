"""Triton Python-backend adapter for the ONNX Vocos vocoder: mel [100, frames] -> waveform."""

import json
import traceback
from pathlib import Path

import triton_python_backend_utils as pb_utils

import contract
from contract.errors import SEE_SERVER_LOG
from contract.parameters import VocoderParameters
from pipeline.lifeline import exit_when_orphaned
from pipeline.logs import forward_logs
from pipeline.parameters import instance_device
from pipeline.requests import RequestError
from pipeline.vocoder import OnnxVocoder, check_mel


class TritonPythonModel:
    def initialize(self, args):
        exit_when_orphaned()
        forward_logs(pb_utils.Logger.log_info, pb_utils.Logger.log_warn, pb_utils.Logger.log_error)
        params = VocoderParameters.from_triton(json.loads(args["model_config"]).get("parameters", {}))
        model_dir = Path(args["model_repository"]) / args["model_version"]
        self.vocoder = OnnxVocoder(model_dir / params.onnx_file, device=instance_device(args))

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                mel = check_mel(pb_utils.get_input_tensor_by_name(request, contract.MEL).as_numpy())
                wave = self.vocoder.decode_batch(mel)
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(contract.WAVEFORM, wave)]))
            except RequestError as e:
                responses.append(_error(str(e), pb_utils.TritonError.INVALID_ARG))
            except Exception:
                pb_utils.Logger.log_error(f"vocoder failed:\n{traceback.format_exc()}")
                responses.append(
                    _error(f"internal error in the vocoder; {SEE_SERVER_LOG}", pb_utils.TritonError.INTERNAL)
                )
        return responses

    def finalize(self):
        self.vocoder = None


def _error(message, code):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))
