"""The pipeline logs through stdlib `logging`; inside Triton its records must reach the server log.

The Python stub prints nothing that the stdlib logger writes (no handler is configured in the
model process), so a model's initialize() calls `forward_logs` with Triton's logger functions
(pb_utils.Logger.log_info, ...). Outside Triton the pipeline's records go wherever the
application's logging configuration sends them.
"""

from __future__ import annotations

import logging
from typing import Callable

Log = Callable[[str], None]


class _Forward(logging.Handler):
    def __init__(self, info: Log, warning: Log, error: Log) -> None:
        super().__init__()
        self._info, self._warning, self._error = info, warning, error
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            if record.levelno >= logging.ERROR:
                self._error(message)
            elif record.levelno >= logging.WARNING:
                self._warning(message)
            else:
                self._info(message)
        except Exception:
            self.handleError(record)


def forward_logs(info: Log, warning: Log, error: Log, level: int = logging.INFO) -> None:
    """Send the `pipeline` loggers' records at `level` and above to these functions (idempotent)."""
    logger = logging.getLogger("pipeline")
    for handler in [h for h in logger.handlers if isinstance(h, _Forward)]:
        logger.removeHandler(handler)
    logger.addHandler(_Forward(info, warning, error))
    logger.setLevel(level)
    logger.propagate = False  # not also to Python's last-resort stderr handler
