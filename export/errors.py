"""The errors an export raises: each message names what was wrong and what to do instead."""


class ExportError(RuntimeError):
    """The export cannot be done as asked."""
