"""Request bodies read within a size limit, refused in OpenAI's error shape."""

from __future__ import annotations

from fastapi import Request

from gateway.errors import APIError


def limited(request: Request, max_bytes: int, what: str, hint: str, param: str | None) -> Request:
    """The request, its body refused with a 413 in OpenAI's shape once it passes max_bytes: at once when
    Content-Length says so, else while it is being read (chunked uploads)."""

    def too_large(size: str) -> APIError:
        return APIError(
            413,
            f"{what} is {size} bytes, larger than this gateway's limit of {max_bytes} bytes ({hint})",
            param=param,
            code="request_too_large",
        )

    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise too_large(length)
    received = 0

    async def receive():
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > max_bytes:
            raise too_large(f"more than {max_bytes}")
        return message

    return Request(request.scope, receive)
