"""Mesh-wide revocation lists in the state: validated on arrival, the newest one handed to the router.

Rules:
- A CRL lives as an LWW value in namespace `crl`, key `anchor`, written by the node that published it.
  A record whose value is not a revocation list signed by one of our trust anchors is refused by the
  validator ("bad_crl") and never stored; so is one larger than record.VALUE_MAX_BYTES allows
  (CRL_MAX_REVOKED nodes).
- The list in force is the verified one with the highest serial among every origin's record: serials
  decide, not write times, so a stale list republished later never undoes a newer one.
- Verification never touches the live TrustStore (the router installs the list itself, through
  `Router.apply_revocations`, which is what removes adjacencies and routes).
"""

from __future__ import annotations

from x0node.proto.trust import RevocationList, TrustStore
from x0node.proto.wire import DecodeError
from x0node.state.record import VALUE_MAX_BYTES, Kind, Record, decode_payload
from x0node.state.store import Store

CRL_NS = "crl"
CRL_KEY = "anchor"
CRL_MAX_REVOKED = (VALUE_MAX_BYTES - 4 - 8 - 2 - 64) // 16


def verify_crl(trust: TrustStore, data: bytes) -> RevocationList | None:
    """The list if it decodes and one of our anchors signed it, else None."""
    if len(data) > VALUE_MAX_BYTES:
        return None
    try:
        crl = RevocationList.decode(data)
    except DecodeError:
        return None
    scratch = TrustStore(anchors=list(trust.anchors))
    return crl if scratch.install_revocations(crl) is None else None


def validator(trust: TrustStore):  # noqa: ANN201 - returns a gossip Validator
    def check(rec: Record) -> str | None:
        if rec.key != CRL_KEY or rec.kind != Kind.LWW:
            return "bad_crl"
        value = decode_payload(rec.kind, rec.payload)
        if value is None:
            return None  # a delete: harmless, the highest serial still wins
        return None if verify_crl(trust, value) is not None else "bad_crl"

    return check


def best(store: Store, trust: TrustStore) -> RevocationList | None:
    """The verified list with the highest serial held in the store."""
    top: RevocationList | None = None
    for rec in store.records():
        if rec.oid != (CRL_NS, CRL_KEY):
            continue
        value = decode_payload(rec.kind, rec.payload)
        crl = verify_crl(trust, value) if value is not None else None
        if crl is not None and (top is None or crl.serial > top.serial):
            top = crl
    return top
