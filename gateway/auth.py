"""The API key: with --api-key (or its variable), every /v1 route wants 'Authorization: Bearer <key>';
health and the playground page stay open."""

from __future__ import annotations

import hmac

from fastapi import Request

from gateway.errors import APIError
from gateway.services import services


def check_bearer(authorization: str, api_key: str | None) -> None:
    """Raises the 401 (OpenAI's invalid_api_key) unless `authorization` carries the key; None: no key needed."""
    if api_key is None:
        return
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise APIError(
            401,
            "missing API key: send the header 'Authorization: Bearer <key>' (this gateway was started with --api-key)",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    # Constant time: how much of a guess matched must not show in the answer's timing.
    if not hmac.compare_digest(given.strip().encode(), api_key.encode()):
        raise APIError(
            401, "incorrect API key provided", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}
        )


def require_key(request: Request) -> None:
    """The dependency of the /v1 router."""
    check_bearer(request.headers.get("authorization", ""), services(request).settings.api_key)
