"""Typed errors of the transport codecs.

Rules: every fault caused by remote input raises a subclass of `RemoteError` carrying a short,
stable `reason` (used as a drop counter label); local misuse raises `ValueError`/`TypeError`.
Adapters catch `RemoteError` only, and react to all of them the same way on the wire.
"""

from __future__ import annotations


class RemoteError(Exception):
    """Bad input from the network. `reason` is a stable label for counters."""

    reason = "remote"

    def __init__(self, message: str = "", reason: str | None = None) -> None:
        super().__init__(message or self.reason)
        if reason is not None:
            self.reason = reason


class DecodeError(RemoteError):
    """Malformed or unauthenticated bytes (AEAD tag failure, bad length, bad address...)."""

    reason = "decode"


class ReplayError(RemoteError):
    """A salt, session or timestamp that was seen before or is outside the accepted window."""

    reason = "replay"
