"""Exceptions shared by every stage.

Every error caused by user input names the file, sample key or config field it is
about, so a user can fix it without reading a traceback.
"""

from __future__ import annotations


class HarmbenchError(Exception):
    """Base class of harmbench's own errors."""


class UserError(HarmbenchError):
    """Bad input from the user: a file, a sample key or a config field.

    The CLI prints it without a traceback and exits with status 2.
    """


class ConfigError(UserError):
    """A config (TOML) field is missing or invalid; ``field`` names it."""

    def __init__(self, field: str, message: str, *, path: str | None = None):
        self.field = field
        self.path = path
        where = f"{path}: " if path else ""
        super().__init__(f"{where}field '{field}': {message}")


class InputError(UserError):
    """One input (image, mask, annotation) cannot be used; ``path`` names it.

    Pipelines that process many inputs catch it, record ``(path, reason)`` as a
    skip and go on with the rest.
    """

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")
