"""The revocation list file (`trust.revocations`, default `<data_dir>/revoked.crl`) at run time.

Rules:
- The file is looked at every REVOCATION_POLL_S (+-25 %): when its size, modification time or inode
  changed, it is read (bounded, keyfile.py) and handed to the routing core, which applies a newer
  list signed by a trust anchor at once (`Router.apply_revocations`: the revoked nodes' adjacencies
  and routes are gone in that same call).
- A list that is malformed, not signed by a trust anchor, or not newer than the one in force is
  refused: logged at ERROR naming the file and the reason, and counted (`refused` by reason here, the
  core's `revocations_refused` counter for /metrics). The list in force stays; the same bad file is
  reported once, not at every poll.
- A removed file revokes nothing back: the list in force stays until a newer one is applied.
- At start a bad list is not a warning but a refusal to start (daemon/node.py `load_trust`).
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Callable

from x0node.proto.keyfile import KeyFileError, load_revocations
from x0node.proto.trust import RevocationList

log = logging.getLogger("x0node.daemon.revocations")

REVOCATION_POLL_S = 1.0


class RevocationFile:
    def __init__(self, path: pathlib.Path, apply: Callable[[RevocationList], str | None],
                 refused_early: Callable[[], None] | None = None) -> None:
        """`apply` hands a decoded list to the core (None = applied, else the reason it refused it);
        `refused_early` counts a file that did not even decode."""
        self.path = pathlib.Path(path)
        self._apply = apply
        self._refused_early = refused_early
        self._seen: tuple[int, int, int] | None = None
        self.refused: dict[str, int] = {}
        self.applied = 0

    def mark_seen(self) -> None:
        """The file as it is now was already applied (at start)."""
        self._seen = self._stamp()

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns, st.st_ino)

    def poll(self) -> bool:
        """Apply the file if it changed since the last look. True if a new list was applied."""
        stamp = self._stamp()
        if stamp is None or stamp == self._seen:
            return False
        self._seen = stamp
        try:
            crl = load_revocations(self.path)
        except KeyFileError as exc:
            self._refuse("malformed", str(exc))
            if self._refused_early is not None:
                self._refused_early()
            return False
        reason = self._apply(crl)
        if reason is not None:
            self._refuse(reason, f"serial {crl.serial}")
            return False
        self.applied += 1
        log.info("%s: revocation list serial %d applied (%d nodes revoked)", self.path, crl.serial,
                 len(crl.revoked))
        return True

    def _refuse(self, reason: str, detail: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        log.error("%s: revocation list refused (%s): %s; the list in force stays", self.path, reason, detail)

