"""`x0node keys`: node keys, the mesh trust anchor, node certificates and revocation lists (offline).

Rules: this is an adapter (files, wall clock); it calls keyfile.py and trust.py and prints JSON for
`show`. Errors name the file and exit with status 2, never with a traceback.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

from x0node.proto import keyfile
from x0node.proto.identity import Identity, mesh_address_of, node_id_of
from x0node.proto.trust import Role, TrustAnchor, TrustStore


def _err(msg: str) -> int:
    print(f"x0node keys: {msg}", file=sys.stderr)
    return 2


def _refuse_overwrite(path: pathlib.Path, force: bool) -> None:
    if path.exists() and not force:
        raise keyfile.KeyFileError(f"{path}: exists (use --force to overwrite)")


def cmd_generate(args: argparse.Namespace) -> int:
    _refuse_overwrite(args.out, args.force)
    ident = Identity.generate()
    keyfile.save_node_key(args.out, ident)
    print(
        json.dumps({"node_id": ident.node_id_hex, "mesh_address": ident.mesh_address, "key": str(args.out)})
    )
    return 0


def cmd_anchor(args: argparse.Namespace) -> int:
    _refuse_overwrite(args.out, args.force)
    import nacl.signing

    anchor = TrustAnchor(nacl.signing.SigningKey.generate())
    keyfile.save_anchor_key(args.out, anchor)
    pub = args.pub or args.out.with_suffix(".pub")
    keyfile.save_anchor_public(pub, anchor.public_key)
    print(
        json.dumps({"anchor_public_key": anchor.public_key.hex(), "key": str(args.out), "public": str(pub)})
    )
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    anchor = keyfile.load_anchor_key(args.anchor)
    if args.node_key:
        pk = keyfile.load_node_key(args.node_key).public_key
    else:
        try:
            pk = bytes.fromhex(args.public_key)
        except ValueError:
            return _err("--public-key must be hex")
        if len(pk) != 32:
            return _err("--public-key must be 32 bytes")
    not_after = 0 if args.days == 0 else int(time.time() + args.days * 86400)
    try:
        cert = anchor.certify(pk, Role[args.role.upper()], not_after, tuple(args.prefix))
    except ValueError as exc:
        return _err(f"--prefix: {exc}")
    keyfile.save_certificate(args.out, cert)
    print(
        json.dumps(
            {
                "node_id": node_id_of(pk).hex(),
                "role": args.role,
                "not_after": not_after,
                "prefixes": list(cert.prefixes),
                "cert": str(args.out),
            }
        )
    )
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    anchor = keyfile.load_anchor_key(args.anchor)
    ids = []
    for h in args.node_id:
        try:
            nid = bytes.fromhex(h)
        except ValueError:
            return _err(f"node id {h!r} is not hex")
        if len(nid) != 16:
            return _err(f"node id {h!r} must be 16 bytes (32 hex digits)")
        ids.append(nid)
    crl = anchor.revoke(ids, args.serial, int(time.time()))
    keyfile.save_revocations(args.out, crl)
    print(json.dumps({"serial": args.serial, "revoked": len(ids), "crl": str(args.out)}))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    out: dict = {}
    if args.key:
        ident = keyfile.load_node_key(args.key)
        out.update(
            public_key=ident.public_key.hex(), node_id=ident.node_id_hex, mesh_address=ident.mesh_address
        )
    if args.cert:
        cert = keyfile.load_certificate(args.cert)
        out["certificate"] = {
            "public_key": cert.public_key.hex(),
            "node_id": cert.node_id.hex(),
            "mesh_address": mesh_address_of(cert.node_id),
            "role": Role(cert.role).name.lower(),
            "not_after": cert.not_after,
            "prefixes": list(cert.prefixes),
        }
        if args.anchor_pub:
            store = TrustStore([keyfile.load_anchor_public(args.anchor_pub)])
            out["certificate"]["valid"] = store.certificate_valid(cert)
        if args.key:
            out["certificate"]["matches_key"] = cert.public_key.hex() == out["public_key"]
    if args.crl:
        crl = keyfile.load_revocations(args.crl)
        out["revocations"] = {
            "serial": crl.serial,
            "issued_at": crl.issued_at,
            "node_ids": [n.hex() for n in crl.revoked],
        }
    if not out:
        return _err("give --key, --cert and/or --crl")
    print(json.dumps(out, indent=2))
    return 0


def _guard(func):  # type: ignore[no-untyped-def]
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except keyfile.KeyFileError as exc:
            return _err(str(exc))

    return run


def register(subparsers: argparse._SubParsersAction) -> None:  # noqa: SLF001
    p = subparsers.add_parser("keys", help="node keys, trust anchor, certificates, revocation lists")
    sub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    P = pathlib.Path

    g = sub.add_parser("generate", help="create a node key (Ed25519, file mode 0600)")
    g.add_argument("--out", type=P, required=True, help="node key file to write")
    g.add_argument("--force", action="store_true", help="overwrite an existing file")
    g.set_defaults(func=_guard(cmd_generate))

    a = sub.add_parser("anchor", help="create the mesh trust anchor key (and its .pub file)")
    a.add_argument("--out", type=P, required=True, help="anchor key file to write (keep offline)")
    a.add_argument("--pub", type=P, help="public key file (default: OUT with suffix .pub)")
    a.add_argument("--force", action="store_true", help="overwrite an existing file")
    a.set_defaults(func=_guard(cmd_anchor))

    s = sub.add_parser("sign", help="sign a node certificate with the trust anchor")
    s.add_argument("--anchor", type=P, required=True, help="trust anchor key file")
    who = s.add_mutually_exclusive_group(required=True)
    who.add_argument("--node-key", type=P, help="node key file whose public key to certify")
    who.add_argument("--public-key", help="node public key (64 hex digits)")
    s.add_argument("--role", choices=[r.name.lower() for r in Role], default="node",
                   help="gateway: may also announce the default route ::/0 (default: node)")
    s.add_argument("--prefix", action="append", default=[], metavar="PREFIX",
                   help="IPv6 prefix the node may announce (it and its more-specifics); repeat, at most 8")
    s.add_argument("--days", type=float, default=365.0, help="validity in days (0 = no expiry)")
    s.add_argument("--out", type=P, required=True, help="certificate file to write")
    s.set_defaults(func=_guard(cmd_sign))

    r = sub.add_parser("revoke", help="sign a revocation list (replaces lists with a lower serial)")
    r.add_argument("--anchor", type=P, required=True, help="trust anchor key file")
    r.add_argument("--serial", type=int, required=True, help="serial number (must grow)")
    r.add_argument("--out", type=P, required=True, help="revocation list file to write")
    r.add_argument("node_id", nargs="*", help="node ids to revoke (32 hex digits)")
    r.set_defaults(func=_guard(cmd_revoke))

    w = sub.add_parser("show", help="show node id, mesh address, certificate and revocation list contents")
    w.add_argument("--key", type=P, help="node key file")
    w.add_argument("--cert", type=P, help="certificate file")
    w.add_argument("--anchor-pub", type=P, help="anchor public key file to check the certificate against")
    w.add_argument("--crl", type=P, help="revocation list file")
    w.set_defaults(func=_guard(cmd_show))
