"""OpenAI's error shape, {"error": {"message", "type", "param", "code"}}, for every failure."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("gateway")

INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or (INVALID_REQUEST if status < 500 else SERVER_ERROR)
        self.headers = headers

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def unavailable(message: str) -> APIError:
    # Retry-After: the openai SDK and most HTTP clients retry a 503 after it.
    return APIError(503, message, code="triton_unavailable", headers={"Retry-After": "5"})


def add_handlers(app: FastAPI) -> None:
    """Every failure answered in OpenAI's shape: ours, Starlette's (no route, wrong method), FastAPI's
    validation, and anything unexpected (a 500 whose cause goes to the log, not to the client)."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError):
        if e.status >= 500:
            log.warning("%s %s: %d %s", request.method, request.url.path, e.status, e.message)
        return e.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException):
        message = {
            404: f"no route {request.method} {request.url.path}; see GET /v1/models, POST /v1/audio/speech, "
            "/v1/audio/voices, POST /v1/audio/transcriptions",
            405: f"{request.method} is not allowed on {request.url.path}",
        }.get(e.status_code, str(e.detail))
        return APIError(e.status_code, message).response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, e: RequestValidationError):
        first = e.errors()[0]
        return bad_request(f"{'.'.join(map(str, first['loc']))}: {first['msg']}", str(first["loc"][-1])).response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, e: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        return APIError(500, f"internal error in the gateway ({type(e).__name__}); see its log").response()
