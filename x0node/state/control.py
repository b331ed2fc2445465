"""The state service's local control socket: one JSON request per connection, one JSON answer.

Rules:
- The socket is `<data_dir>/state.sock`, mode 0600 inside the 0700 data directory; a connecting process
  must also run as root or as the daemon's user (SO_PEERCRED), so only the device's administrator can
  write through it. Network namespaces do not apply to it (a path, not an address).
- A request is one line of JSON of at most MAX_REQUEST_BYTES; anything else gets {"ok": false, "error"}.
  A connection is closed after REQUEST_TIMEOUT_S.
- `request` is the client (the `x0node state` command and the benchmarks use it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

SOCKET_NAME = "state.sock"
MAX_REQUEST_BYTES = 64 * 1024
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
REQUEST_TIMEOUT_S = 5.0

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def _peer_allowed(sock: socket.socket) -> bool:
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return False
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid in (0, os.getuid())


async def serve(path: pathlib.Path, handler: Handler) -> asyncio.AbstractServer:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = writer.get_extra_info("socket")
            if sock is None or not _peer_allowed(sock):
                answer: dict[str, Any] = {"ok": False, "error": "not allowed"}
            else:
                try:
                    line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT_S)
                    if len(line) > MAX_REQUEST_BYTES or not line.endswith(b"\n"):
                        raise ValueError(f"request must be one JSON line of at most {MAX_REQUEST_BYTES} bytes")
                    req = json.loads(line)
                    if not isinstance(req, dict):
                        raise ValueError("request must be a JSON object")
                    answer = await handler(req)
                except (ValueError, TimeoutError, asyncio.LimitOverrunError) as exc:
                    answer = {"ok": False, "error": str(exc) or type(exc).__name__}
            writer.write(json.dumps(answer, separators=(",", ":")).encode() + b"\n")
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT_S)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()

    old = os.umask(0o177)
    try:
        server = await asyncio.start_unix_server(on_client, path=str(path), limit=MAX_REQUEST_BYTES + 1)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return server


def request(path: pathlib.Path | str, req: dict[str, Any], timeout_s: float = REQUEST_TIMEOUT_S) -> dict[str, Any]:
    """Send one request to a running daemon's control socket; OSError if none listens there."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        s.connect(str(path))
        s.sendall(json.dumps(req, separators=(",", ":")).encode() + b"\n")
        chunks = []
        total = 0
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > MAX_RESPONSE_BYTES:
                raise OSError("response too large")
    data = b"".join(chunks)
    if not data:
        raise OSError("no answer")
    out = json.loads(data)
    if not isinstance(out, dict):
        raise OSError("bad answer")
    return out
