"""Config migrations on the first boot of a new version (adapter; `x0node ota migrate`).

Scripts live in the root slot (`/usr/lib/x0tta6bl4/migrations/NNN-name`, executable, numbered); the
ones that ran are listed in `<data_dir>/ota/migrations.json`. Rules and invariants:
- Run before x0node starts (x0-migrate.service, Before=x0node.service), in numeric order, each with
  X0_DATA=<data dir> in its environment and a time limit; a script must be idempotent (it may run
  again after a power cut between its end and the record).
- A script that fails stops the run (later ones may depend on it) and is retried on the next boot; the
  daemon starts anyway and the health gate decides whether the new version stays.
- Only names matching boot.MIGRATION_RE are run; anything else in the directory is ignored.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import subprocess  # rauc, systemctl, grub-editenv and migration scripts with a fixed argv, never a shell # nosec B404

from x0node.io.atomicfile import write_atomic
from x0node.ota.boot import migrations_to_run

MIGRATIONS_DIR = pathlib.Path("/usr/lib/x0tta6bl4/migrations")
DONE_FILE = "migrations.json"
SCRIPT_TIMEOUT_S = 120

log = logging.getLogger("x0node.ota.migrate")


def run_pending(data_dir: pathlib.Path, scripts: pathlib.Path = MIGRATIONS_DIR) -> list[tuple[str, bool, str]]:
    state_dir = data_dir / "ota"
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    done_path = state_dir / DONE_FILE
    try:
        done = set(json.loads(done_path.read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        done = set()
    avail = [p.name for p in scripts.iterdir() if p.is_file() and os.access(p, os.X_OK)] if scripts.is_dir() else []
    out = []
    for name in migrations_to_run(avail, done):
        try:
            r = subprocess.run([str(scripts / name)], capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S,  # a script of the root slot # nosec B603
                               env={**os.environ, "X0_DATA": str(data_dir)}, check=False)
            ok, msg = r.returncode == 0, (r.stdout + r.stderr).strip()[-500:]
        except (OSError, subprocess.TimeoutExpired) as exc:
            ok, msg = False, str(exc)
        out.append((name, ok, msg))
        if not ok:
            log.warning("migration %s failed: %s", name, msg)
            break
        done.add(name)
        write_atomic(done_path, json.dumps(sorted(done)).encode(), mode=0o600)
    return out
