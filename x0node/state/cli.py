"""`x0node state`: look at (and write to) the mesh state of a node.

  show [--json]           every object, 1-hop record, setting (with where it came from) and counter
  get NS KEY              one object's merged value
  directory [--json]      every node's directory entry: name, roles, version, health, age
  diff DIR_A DIR_B        objects that differ between two nodes (data directories)
  put NS KEY JSON         write an LWW value (kv, lww.*), or --incr N (g.*, pn.*), --add/--remove (set.*)
  set KEY JSON            change a config setting here (reaches every node if it is a mesh setting)
  publish-crl FILE        put a revocation list signed by the trust anchor into the state (mesh-wide)

A running daemon is asked through <data-dir>/state.sock (root only); without one, show/get/diff read the
persisted store (state.bin) and say so. Exit status: 0 ok, 1 refused/failed, 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any

DEFAULT_DATA_DIR = "/data/x0node"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("state", help="mesh-wide state: show, get, directory, diff, put, publish-crl")
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help=f"the node's data directory (default {DEFAULT_DATA_DIR})")
    sub = p.add_subparsers(dest="state_command", metavar="ACTION")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])
    s = sub.add_parser("show", help="every object, 1-hop record, setting and counter")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=_show)
    g = sub.add_parser("get", help="one object's merged value")
    g.add_argument("ns")
    g.add_argument("key")
    g.set_defaults(func=_get)
    n = sub.add_parser("directory", help="the node directory: every node's name, roles, version and health")
    n.add_argument("--json", action="store_true", help="print JSON")
    n.set_defaults(func=_directory)
    d = sub.add_parser("diff", help="objects that differ between two nodes' data directories")
    d.add_argument("a")
    d.add_argument("b")
    d.set_defaults(func=_diff)
    u = sub.add_parser("put", help="write a value (kv, lww.*), an increment (g.*, pn.*) or a set add/remove")
    u.add_argument("ns")
    u.add_argument("key")
    u.add_argument("value", nargs="?", help="JSON value for LWW namespaces")
    u.add_argument("--incr", type=int, help="counter increment")
    u.add_argument("--add", action="store_true", help="add KEY to the set NS")
    u.add_argument("--remove", action="store_true", help="remove KEY from the set NS")
    u.add_argument("--delete", action="store_true", help="delete an LWW value")
    u.set_defaults(func=_put)
    t = sub.add_parser("set", help="change a config setting on this node (mesh-wide if listed in "
                       "state.mesh_settings)")
    t.add_argument("key", help="dotted config key, e.g. node.log_level")
    t.add_argument("value", help="JSON value (a bare word is taken as a string)")
    t.set_defaults(func=_set)
    c = sub.add_parser("publish-crl", help="put a signed revocation list into the mesh state")
    c.add_argument("file", help="revocation list from `x0node keys revoke`")
    c.set_defaults(func=_publish_crl)


def _ask(data_dir: str, req: dict[str, Any]) -> dict[str, Any] | None:
    from x0node.state import control

    try:
        return control.request(pathlib.Path(data_dir) / control.SOCKET_NAME, req)
    except OSError:
        return None


def _offline(data_dir: str) -> dict[str, Any]:
    """The persisted store, folded without a trust check (read-only inspection)."""
    from x0node.proto.wire import DecodeError
    from x0node.state import persist
    from x0node.state.store import Store, decode_snapshot

    path = pathlib.Path(data_dir) / persist.STORE_NAME
    data = persist.read(path)
    if data is None:
        raise SystemExit(f"no running daemon at {data_dir}/state.sock and no store at {path}")
    try:
        _, origins = decode_snapshot(data)
    except DecodeError as exc:
        raise SystemExit(f"{path} is damaged: {exc}") from None
    store = Store()
    for cred, recs in origins:
        for r in recs:
            store.put(r, cred)
    return {"ok": True, "offline": True, "digest": store.digest().hex(), "objects": store.objects(), "_store": store}


def _state(data_dir: str) -> dict[str, Any]:
    return _ask(data_dir, {"op": "show"}) or _offline(data_dir)


def _show(args: argparse.Namespace) -> int:
    st = _state(args.data_dir)
    st.pop("_store", None)
    if args.json:
        print(json.dumps(st, indent=1, sort_keys=True))
        return 0
    print(f"node {st.get('node_id', '?')}  digest {st['digest']}" + ("  (offline: read from state.bin)" if st.get("offline") else ""))
    for ns, objs in st["objects"].items():
        for key, v in objs.items():
            extra = f"  from {v['origin'][:8]}" if "origin" in v else ""
            print(f"  {ns:<12} {key:<32} {v['type']:<10} {json.dumps(v['value'])}{extra}")
    for h in st.get("hop", []):
        print(f"  (1-hop) {h['ns']}/{h['key']} from {h['origin'][:8]} = {json.dumps(h['value'])} ({h['expires_in_s']} s left)")
    for key, s in st.get("settings", {}).items():
        print(f"  setting {key} = {json.dumps(s['value'])} from {s['origin'][:8]}" + ("" if s["mesh_wide_here"] else " (not mesh-wide here)"))
    crl = st.get("crl")
    if crl and crl.get("serial") is not None:
        print(f"  revocation list serial {crl['serial']}: {len(crl['revoked'])} nodes revoked")
    stats = st.get("stats")
    if stats:
        c = stats["counters"]
        print(f"  gossip tx {c['tx_bytes']} B rx {c['rx_bytes']} B, applied {c['records_applied']}, "
              f"refused {sum(stats['refused'].values())}, lag {stats['lag_s']} s")
    return 0


def _get(args: argparse.Namespace) -> int:
    answer = _ask(args.data_dir, {"op": "get", "ns": args.ns, "key": args.key})
    if answer is None:
        st = _offline(args.data_dir)
        answer = {"ok": True, "offline": True, "entry": st["_store"].entry(args.ns, args.key)}
    if not answer.get("ok"):
        print(answer.get("error"), file=sys.stderr)
        return 1
    print(json.dumps(answer.get("entry"), sort_keys=True))
    return 0 if answer.get("entry") is not None else 1


def _directory(args: argparse.Namespace) -> int:
    answer = _ask(args.data_dir, {"op": "directory"})
    if answer is None:
        import time

        from x0node.state import directory

        st = _offline(args.data_dir)
        answer = {"ok": True, "offline": True, "nodes": directory.listing(st["_store"], time.time())}
    if not answer.get("ok"):
        print(answer.get("error"), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(answer, indent=1, sort_keys=True))
        return 0
    me = answer.get("node_id")
    print(f"{'node id':<32}  {'name':<20} {'roles':<8} {'version':<10} {'health':<9} nbrs  uptime    age"
          + ("  (offline: read from state.bin)" if answer.get("offline") else ""))
    for e in answer["nodes"]:
        mark = " *" if e["node_id"] == me else ""
        print(f"{e['node_id']:<32}  {e['name']:<20} {','.join(e['roles']) or '-':<8} {e['version']:<10} "
              f"{e['health']:<9} {e['neighbours_up']:>4} {e['uptime_s']:>7}s {e['age_s'] or 0:>6}s{mark}")
        if e.get("health_reason"):
            print(f"{'':<34}{e['health_reason']}")
    print(f"{len(answer['nodes'])} nodes")
    return 0


def _diff(args: argparse.Namespace) -> int:
    a, b = _state(args.a), _state(args.b)
    flat = [{(ns, k): v.get("value") for ns, objs in s["objects"].items() for k, v in objs.items()} for s in (a, b)]
    keys = sorted(set(flat[0]) | set(flat[1]))
    n = 0
    for k in keys:
        va, vb = flat[0].get(k), flat[1].get(k)
        if va != vb:
            n += 1
            print(f"{k[0]}/{k[1]}: {json.dumps(va)} != {json.dumps(vb)}")
    print(f"{n} differing objects; digests {a['digest'][:12]} {b['digest'][:12]}")
    return 1 if n else 0


def _put(args: argparse.Namespace) -> int:
    req: dict[str, Any] = {"op": "put", "ns": args.ns, "key": args.key}
    if args.incr is not None:
        req["incr"] = args.incr
    elif args.add or args.remove:
        req["add"] = bool(args.add)
    elif args.delete:
        req["delete"] = True
    elif args.value is not None:
        try:
            req["value"] = json.loads(args.value)
        except ValueError:
            req["value"] = args.value
    else:
        print("put needs a VALUE, --incr, --add, --remove or --delete", file=sys.stderr)
        return 2
    return _answer(_ask(args.data_dir, req), args.data_dir)


def _set(args: argparse.Namespace) -> int:
    try:
        value = json.loads(args.value)
    except ValueError:
        value = args.value
    return _answer(_ask(args.data_dir, {"op": "set_config", "key": args.key, "value": value}), args.data_dir)


def _publish_crl(args: argparse.Namespace) -> int:
    data = pathlib.Path(args.file).read_bytes()
    return _answer(_ask(args.data_dir, {"op": "publish_crl", "crl_hex": data.hex()}), args.data_dir)


def _answer(answer: dict[str, Any] | None, data_dir: str) -> int:
    if answer is None:
        print(f"no running daemon at {data_dir}/state.sock", file=sys.stderr)
        return 1
    print(json.dumps(answer, sort_keys=True))
    return 0 if answer.get("ok") else 1
