"""`x0node ota`: make, sign and check update bundles; install, watch and roll back on a node.

Build host:
  keys init DIR [--holders M] [--threshold N]   release CA, signing certificate, M manifest keys
  build SLOT_IMAGE --board B --version V --serial S --keys DIR --out FILE.raucb [--sign KEYFILE ...]
  sign MANIFEST --key KEYFILE                   add one release key holder's signature
  verify BUNDLE [--manifest F] --release-keys F [--keyring PEM] [--board B]
Node (asks the daemon through <data-dir>/ota.sock, root only):
  install [BUNDLE [--manifest F] [--force]]     verify, stage and install a bundle (or the staged one); reboots
  status [--json]                               this node's phase, slots, and every node's progress
  rollback                                      make the other slot primary and reboot
  rollout start [--threshold X] [--spread-s S] [--wave-timeout-s S] | rollout stop
  migrate                                       run pending config migrations (at boot, before x0node)
  factory-reset --yes                           erase user config (/data/etc/x0node, config.local.toml, web
                                                credentials); node key and certificate stay; reboot
  failsafe                                      next boot only: ignore user config (GRUB FAILSAFE=1)
Exit status: 0 ok, 1 refused or failed (the reason is printed), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any

DEFAULT_DATA_DIR = "/data/x0node"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("ota", help="update bundles: build, sign, verify, install, status, rollback, rollout")
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help=f"the node's data directory (default {DEFAULT_DATA_DIR})")
    sub = p.add_subparsers(dest="ota_command", metavar="ACTION")
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])
    k = sub.add_parser("keys", help="release keys")
    ks = k.add_subparsers(dest="keys_command", metavar="ACTION")
    k.set_defaults(func=lambda a: (k.print_help(), 2)[1])
    ki = ks.add_parser("init", help="make a release key directory")
    ki.add_argument("dir")
    ki.add_argument("--holders", type=int, default=3, help="manifest release keys to make (M, default 3)")
    ki.add_argument("--threshold", type=int, default=2, help="signatures a manifest needs (N, default 2)")
    ki.set_defaults(func=_keys_init)
    b = sub.add_parser("build", help="make a signed RAUC bundle and its manifest from a root slot image")
    b.add_argument("slot_image")
    b.add_argument("--board", required=True)
    b.add_argument("--version", required=True)
    b.add_argument("--serial", type=int, required=True, help="release order: larger is newer")
    b.add_argument("--keys", required=True, help="release key directory (signing certificate)")
    b.add_argument("--out", required=True, help="bundle file to write (.raucb); the manifest goes beside it")
    b.add_argument("--sign", action="append", default=[], help="release key file to sign the manifest with")
    b.set_defaults(func=_build)
    s = sub.add_parser("sign", help="add a release key's signature to a manifest")
    s.add_argument("manifest")
    s.add_argument("--key", required=True)
    s.set_defaults(func=_sign)
    v = sub.add_parser("verify", help="check a bundle against its manifest, the release keys and RAUC's keyring")
    v.add_argument("bundle")
    v.add_argument("--manifest")
    v.add_argument("--release-keys", required=True, help="release-keys.json")
    v.add_argument("--keyring", help="CA certificate (RAUC keyring); without it RAUC's check is skipped")
    v.add_argument("--board")
    v.set_defaults(func=_verify)
    i = sub.add_parser("install", help="verify, stage and install a bundle on this node (it reboots); without "
                       "BUNDLE, install the bundle already staged and verified")
    i.add_argument("bundle", nargs="?")
    i.add_argument("--manifest")
    i.add_argument("--force", action="store_true", help="allow a downgrade or a re-install")
    i.add_argument("--no-install", action="store_true", help="only verify and stage (e.g. to start a rollout)")
    i.set_defaults(func=_install)
    st = sub.add_parser("status", help="phase, slots, rollout and every node's progress")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=_status)
    r = sub.add_parser("rollback", help="make the other slot primary and reboot")
    r.set_defaults(func=lambda a: _simple(a, {"op": "rollback"}))
    ro = sub.add_parser("rollout", help="start or stop a mesh-wide rollout of the staged bundle")
    ro.add_argument("action", choices=["start", "stop"])
    ro.add_argument("--threshold", type=float, default=0.2, help="halt when more than this share of a wave fails")
    ro.add_argument("--spread-s", type=float, default=0.0, help="Gluon-style random start within a wave")
    ro.add_argument("--wave-timeout-s", type=float, default=1800.0)
    ro.set_defaults(func=_rollout)
    m = sub.add_parser("migrate", help="run pending config migrations")
    m.set_defaults(func=_migrate)
    fr = sub.add_parser("factory-reset", help="erase user config and run-time settings (node key and "
                        "certificate stay), then reboot")
    fr.add_argument("--yes", action="store_true", help="do it (without: say what would be removed)")
    fr.add_argument("--no-reboot", action="store_true")
    fr.set_defaults(func=_factory_reset)
    fs = sub.add_parser("failsafe", help="boot once with user config ignored (GRUB FAILSAFE=1), then reboot")
    fs.add_argument("--no-reboot", action="store_true")
    fs.set_defaults(func=_failsafe)


def _ask(args: argparse.Namespace, req: dict[str, Any], timeout_s: float = 60.0) -> dict[str, Any] | None:
    from x0node.ota.service import SOCKET_NAME
    from x0node.state import control

    try:
        return control.request(pathlib.Path(args.data_dir) / SOCKET_NAME, req, timeout_s)
    except OSError as exc:
        print(f"x0node ota: no daemon with OTA answers at {args.data_dir}/{SOCKET_NAME}: {exc}", file=sys.stderr)
        return None


def _answer(out: dict[str, Any] | None) -> int:
    if out is None:
        return 1
    if not out.get("ok"):
        print(f"refused: {out.get('error')}", file=sys.stderr)
        return 1
    print(out.get("message") or json.dumps({k: v for k, v in out.items() if k != "ok"}, indent=1))
    return 0


def _simple(args: argparse.Namespace, req: dict[str, Any]) -> int:
    return _answer(_ask(args, req))


def _keys_init(args: argparse.Namespace) -> int:
    from x0node.ota import keys

    try:
        rk = keys.init(pathlib.Path(args.dir), args.holders, args.threshold)
    except (FileExistsError, ValueError) as exc:
        print(f"x0node ota keys: {exc}", file=sys.stderr)
        return 1
    print(f"release keys in {args.dir}: CA and signing certificate, {len(rk.keys)} manifest keys, "
          f"{rk.threshold} needed")
    return 0


def _build(args: argparse.Namespace) -> int:
    from x0node.ota import bundle, keys
    from x0node.ota import manifest as mf

    out = pathlib.Path(args.out)
    try:
        m = bundle.build(pathlib.Path(args.slot_image), args.board, args.version, args.serial,
                         pathlib.Path(args.keys), out)
    except bundle.BundleError as exc:
        print(f"x0node ota build: {exc}", file=sys.stderr)
        return 1
    signed = mf.sign(m, [keys.load_release_key(pathlib.Path(k)) for k in args.sign])
    bundle.write_manifest(bundle.manifest_path(out), signed)
    print(f"{out} ({m.bundle_bytes} bytes, {len(m.chunks)} chunks), manifest {bundle.manifest_path(out)} "
          f"with {len(signed.signatures)} signature(s)")
    return 0


def _sign(args: argparse.Namespace) -> int:
    from x0node.ota import bundle, keys
    from x0node.ota import manifest as mf

    path = pathlib.Path(args.manifest)
    try:
        signed = mf.parse(path.read_bytes())
    except mf.ManifestError as exc:
        print(f"x0node ota sign: {exc}", file=sys.stderr)
        return 1
    signed = mf.sign(signed.manifest, [keys.load_release_key(pathlib.Path(args.key))], signed.signatures)
    bundle.write_manifest(path, signed)
    print(f"{path}: {len(signed.signatures)} signature(s)")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from x0node.ota import bundle
    from x0node.ota import manifest as mf

    b = pathlib.Path(args.bundle)
    mpath = pathlib.Path(args.manifest) if args.manifest else bundle.manifest_path(b)
    try:
        keys = mf.ReleaseKeys.from_json(json.loads(pathlib.Path(args.release_keys).read_text()))
        m = bundle.verify_bundle(b, mpath.read_bytes(), keys, pathlib.Path(args.keyring) if args.keyring else None,
                                 args.board)
    except (bundle.BundleError, mf.ManifestError) as exc:
        print(f"refused: {exc.reason}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"x0node ota verify: {exc}", file=sys.stderr)
        return 1
    print(f"ok: {m.board} {m.version} (serial {m.serial}), {m.bundle_bytes} bytes, {len(m.chunks)} chunks")
    return 0


def _install(args: argparse.Namespace) -> int:
    from x0node.ota import bundle

    if args.bundle is None:
        return _answer(_ask(args, {"op": "install"}, timeout_s=1800.0))
    b = pathlib.Path(args.bundle).resolve()
    mpath = pathlib.Path(args.manifest).resolve() if args.manifest else bundle.manifest_path(b)
    return _answer(_ask(args, {"op": "stage", "bundle": str(b), "manifest": str(mpath), "force": args.force,
                               "install": not args.no_install}, timeout_s=1800.0))


def _status(args: argparse.Namespace) -> int:
    out = _ask(args, {"op": "status"})
    if out is None:
        return 1
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    run = out.get("running", {})
    print(f"running  {run.get('version')} (serial {run.get('serial')}, board {run.get('board')}), "
          f"booted slot {out.get('booted') or '-'}")
    print(f"phase    {out.get('phase')}{': ' + out['why'] if out.get('why') else ''}")
    t = out.get("target")
    if t:
        print(f"bundle   {t['version']} (serial {t['serial']}), {t['have']}/{t['chunks']} chunks")
    for name, s in sorted((out.get("slots") or {}).items()):
        print(f"slot {name}   {s.get('state', ''):8} {s.get('boot_status', ''):6} {s.get('version', '')}")
    ro = out.get("rollout")
    if ro:
        print(f"rollout  {ro.get('id')} {ro.get('v')}: {ro.get('state')} wave {int(ro.get('wave', 0)) + 1}/"
              f"{len(ro.get('waves', []))} {ro.get('why', '')}")
    for n in out.get("nodes", []):
        print(f"  {n['node_id'][:16]}{'*' if n['self'] else ' '} {str(n['phase']):12} {str(n['percent']):>3}% "
              f"running {n['running']} {n['why']}")
    return 0


def _rollout(args: argparse.Namespace) -> int:
    if args.action == "stop":
        return _simple(args, {"op": "rollout_stop"})
    return _simple(args, {"op": "rollout_start", "threshold": args.threshold, "spread_s": args.spread_s,
                          "wave_timeout_s": args.wave_timeout_s})


def _migrate(args: argparse.Namespace) -> int:
    from x0node.ota.migrate import run_pending

    res = run_pending(pathlib.Path(args.data_dir))
    for name, ok, msg in res:
        print(f"{name}: {'ok' if ok else 'FAILED'} {msg}")
    return 0 if all(ok for _n, ok, _m in res) else 1


GRUBENV = "/boot/efi/EFI/BOOT/grubenv"


def factory_paths(data_dir: pathlib.Path) -> list[pathlib.Path]:
    """What a factory reset removes: the user's config and run-time settings, not the node's identity."""
    return [data_dir.parent / "etc" / "x0node", data_dir / "config.local.toml", data_dir / "web"]


def _reboot(args: argparse.Namespace) -> int:
    import subprocess  # systemctl, grub-editenv with a fixed argv # nosec B404

    if getattr(args, "no_reboot", False):
        return 0
    return subprocess.run(["systemctl", "reboot"], check=False).returncode  # fixed argv # nosec B603 B607


def _factory_reset(args: argparse.Namespace) -> int:
    import shutil

    paths = [p for p in factory_paths(pathlib.Path(args.data_dir)) if p.exists()]
    if not args.yes:
        print("would remove: " + (", ".join(map(str, paths)) or "nothing") + " (add --yes)")
        return 0
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
    from x0node.io.atomicfile import fsync_dir

    for d in {p.parent for p in paths}:
        fsync_dir(d)
    print("user config removed; the node keeps its key and certificate")
    return _reboot(args)


def _failsafe(args: argparse.Namespace) -> int:
    import subprocess  # systemctl, grub-editenv with a fixed argv # nosec B404

    r = subprocess.run(["grub-editenv", GRUBENV, "set", "FAILSAFE=1"], check=False)  # fixed argv # nosec B603 B607
    if r.returncode != 0:
        print(f"x0node ota failsafe: cannot write {GRUBENV}", file=sys.stderr)
        return 1
    print("the next boot ignores user config (once)")
    return _reboot(args)
