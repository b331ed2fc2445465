"""A TCP server on 127.0.0.1 for tests: one accept loop, each connection handled in its own thread.

Rules: the port is picked by the kernel (bind port 0); accept polls every ACCEPT_POLL_S so leaving
the `with` block stops the loop within that time; the listening socket is closed on the way out
even when the body raises; handler threads are daemons and own (and must close) their connection.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

ACCEPT_POLL_S = 0.2
LOOP_JOIN_S = 2.0


@contextlib.contextmanager
def serving(handle: Callable[[socket.socket], None], backlog: int = 8) -> Iterator[int]:
    """Listen on a free loopback port, run `handle(conn)` per connection; yield the port."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(backlog)
    lsock.settimeout(ACCEPT_POLL_S)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                c, _ = lsock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=handle, args=(c,), daemon=True).start()

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield lsock.getsockname()[1]
    finally:
        stop.set()
        t.join(LOOP_JOIN_S)
        lsock.close()
