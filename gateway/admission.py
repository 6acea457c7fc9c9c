"""How many speech requests are in flight: up to --max-concurrency, and one more is answered 429 at once
(OpenAI's rate-limit error, which its SDK retries) rather than queued behind the others on Triton."""

from __future__ import annotations

from gateway.errors import APIError


class Admission:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    def admit(self) -> None:
        """Count one more request in, or raise the 429. Each admitted request is released exactly once."""
        if self.in_flight >= self.limit:
            raise APIError(
                429,
                f"{self.in_flight} speech requests are in flight, this gateway's limit "
                "(--max-concurrency); retry shortly",
                type="rate_limit_error",
                code="rate_limit_exceeded",
                headers={"Retry-After": "1"},
            )
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
