"""How a failed request is told apart: the kinds of error a client acts on, and the words that carry them.

Triton's gRPC stream (decoupled models, what the gateway uses) delivers an error's message but no
status code, so for a streamed request the message itself must say which kind of failure it is.
The phrases below are that part of the contract: the models put them in their messages, and the
clients (the gateway, the RunPod worker) recognise them. Change one here and both sides follow.

Dependency-free, as the rest of `contract`.
"""

from __future__ import annotations

# --- the kinds: what the client does about the failure --------------------------------------------
INVALID_ARGUMENT = "invalid_argument"  # the request's fault; the message says what to change
NOT_NOW = "not_now"  # the server (or the model) cannot serve at the moment; retry, or another server
TIMEOUT = "timeout"  # no answer in the time the client allowed
SERVER_FAULT = "server_fault"  # the server failed; its log says why
KINDS = (INVALID_ARGUMENT, NOT_NOW, TIMEOUT, SERVER_FAULT)

# --- status codes, as tritonclient reports them (str() of grpc.StatusCode, or the HTTP code) -----
GRPC_UNAVAILABLE = "StatusCode.UNAVAILABLE"  # nothing answered: the request never started
GRPC_DEADLINE_EXCEEDED = "StatusCode.DEADLINE_EXCEEDED"
GRPC_FAULT_STATUSES = ("StatusCode.INTERNAL", "StatusCode.UNKNOWN")
INVALID_ARGUMENT_STATUSES = ("StatusCode.INVALID_ARGUMENT", "400")

# --- phrases our models write (model_repository/*/1/model.py) -------------------------------------
# Ends the message of an internal error: the cause (a traceback) is in the server's log, not sent.
SEE_SERVER_LOG = "see the server log"
# Begins f5_tts_stream's message when it stops a stream because the model is being unloaded.
SHUTTING_DOWN = "the server is shutting down"
# f5_tts's start-up log line, "f5_tts (<model, dtype, engine, vocoder>) loaded on <device> in <s> s":
# the RunPod worker quotes it in its ready line.
LOADED_ON = "loaded on"

# --- phrases of Triton's own (tritonserver's core; not ours to change) ----------------------------
# A model that is loading, unloading or absent, or a server that is starting or stopping.
TRITON_NOT_NOW = ("server not ready", "is not ready", "unknown model", "is not found", "shutting down")

NOT_NOW_PHRASES = (*TRITON_NOT_NOW, SHUTTING_DOWN)
SERVER_FAULT_PHRASES = (SEE_SERVER_LOG,)


def error_kind(status: str | None, message: str) -> str:
    """The kind of a failed request, from its status (None when a stream carried none) and message."""
    lower = message.lower()
    if status == GRPC_UNAVAILABLE or any(p in lower for p in NOT_NOW_PHRASES):
        return NOT_NOW
    if status == GRPC_DEADLINE_EXCEEDED:
        return TIMEOUT
    if any(p in lower for p in SERVER_FAULT_PHRASES) or status in GRPC_FAULT_STATUSES:
        return SERVER_FAULT
    return INVALID_ARGUMENT
