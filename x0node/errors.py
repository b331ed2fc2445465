"""The error types shared by every part of x0node.

Rules:
- Bytes from outside (the network, a file, a bundle) that do not form a valid message raise
  `DecodeError`, a `RemoteError`: a remote fault, dropped and counted under its `reason`, never a crash.
  Local misuse (a bad value of our own) raises ValueError/TypeError instead.
- A configuration value that is missing, unknown or invalid raises `ConfigError`, whose `key` is the
  dotted path of the offending setting (`node.interfaces[1]`, `web.port`), whether it came from the
  config file at start or from the web API at run time.
- This module imports nothing: every layer (the sans-I/O core included) may use it.
"""

from __future__ import annotations


class RemoteError(Exception):
    """Bad input from outside. `reason` is a short, stable label for drop counters."""

    reason = "remote"

    def __init__(self, message: str = "", reason: str | None = None) -> None:
        super().__init__(message or self.reason)
        if reason is not None:
            self.reason = reason


class DecodeError(RemoteError):
    """Bytes from outside do not form a valid message (bad length, unknown tag, trailing bytes, ...)."""

    reason = "decode"


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid. `key` is the dotted path of the key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.message = message
