"""Typed errors of the transport codecs.

Rules: every fault caused by remote input raises a subclass of `RemoteError` carrying a short,
stable `reason` (used as a drop counter label); local misuse raises `ValueError`/`TypeError`.
Adapters catch `RemoteError` only, and react to all of them the same way on the wire.
"""

from __future__ import annotations

from x0node.errors import DecodeError, RemoteError

__all__ = ["DecodeError", "RemoteError", "ReplayError"]


class ReplayError(RemoteError):
    """A salt, session or timestamp that was seen before or is outside the accepted window."""

    reason = "replay"
