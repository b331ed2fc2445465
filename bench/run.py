"""Time to the mesh of `make run` from a fresh checkout: what a new user waits for.

    .venv/bin/python bench/run.py              # a clone of HEAD, its own empty stage cache (cold), then cached
    .venv/bin/python bench/run.py --warm-cache # the shared stage cache (Debian bootstrap and wheels kept)
    .venv/bin/python bench/run.py --no-cached  # the fresh run only

Method: `git clone` of this repository's HEAD into a temporary directory (no .venv, no build/, no out/),
then `make run` there exactly as a user types it (apt step, pip into a new .venv, the image build, the
boot, the neighbours), each output line stamped with the seconds since `make run` started. The run is
stopped with SIGTERM once it printed the fault commands (after "mesh up: all N neighbours route to the
router"), and everything it started must be gone (its QEMU, its namespaces). Then, as the baseline in the
same conditions, a second `make run` in the same clone: the image is reused (same inputs), so it is the
time from an existing checkout. "Cold" gives the build an empty stage cache (X0_IMAGE_CACHE in the
temporary directory), so the Debian root is bootstrapped and the wheels are downloaded as on a new
machine; `--warm-cache` uses the shared cache, as a second checkout on the same machine would.

Phases (seconds since `make run` started): deps (apt + pip), build, QEMU start, the daemon's ready line,
"mesh up" (every neighbour routes to the router; the router's UI shows the mesh from then on, within a
few seconds). The goal is "mesh up" within 180 s of a fresh checkout's `make run` on this machine.
Prints a table, then one JSON line {"bench": "run", ...}; the host's load average is recorded with
each run, since this machine is shared. Not part of `make bench` (one run takes 5-15 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
GOAL_S = 180.0
RUN_TIMEOUT_S = 3600.0
STOP_TIMEOUT_S = 180.0
# (seconds since `make run` started at which ..., the line that marks it)
PHASES = (
    ("deps_done_s", re.compile(r"-m image\.pipeline build")),
    ("build_done_s", re.compile(r"-m image\.run ")),
    ("qemu_start_s", re.compile(r"under TCG \(pid \d+\)")),
    ("ready_s", re.compile(r"x0node ready after")),
    ("mesh_up_s", re.compile(r"mesh up: all \d+ neighbours")),
)
DONE = re.compile(r"Ctrl-C \(or SIGTERM\) stops")
STEP = re.compile(r"^\[[\w-]+\] (\w[\w-]*)\s+([\d.]+) s$")


def _namespaces() -> set[str]:
    return set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())


def timed_run(clone: pathlib.Path, env: dict[str, str], log: pathlib.Path) -> dict:
    """One `make run` in `clone`: {phase: seconds}, the build steps' seconds, load averages, cleanup."""
    before_ns = _namespaces()
    load_start = os.getloadavg()
    start = time.monotonic()
    proc = subprocess.Popen(["nice", "make", "run"], cwd=clone, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[tuple[float, str]] = []
    done = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.monotonic() - start, line.rstrip("\n")))
            if DONE.search(line):
                done.set()
        done.set()

    threading.Thread(target=read, daemon=True).start()
    finished = done.wait(RUN_TIMEOUT_S)
    load_end = os.getloadavg()
    qemu = next((int(m.group(1)) for _, ln in lines if (m := re.search(r"under TCG \(pid (\d+)\)", ln))), None)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)  # make passes it on to the recipe (image.run cleans up)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    time.sleep(1)
    log.write_text("".join(f"{t:8.1f} {ln}\n" for t, ln in lines))
    result: dict = {"finished": finished and any(DONE.search(ln) for _, ln in lines)}
    for name, pattern in PHASES:
        result[name] = next((round(t, 1) for t, ln in lines if pattern.search(ln)), None)
    result["build_steps_s"] = {m.group(1): float(m.group(2)) for _, ln in lines if (m := STEP.match(ln))}
    result["image_reused"] = any("up to date:" in ln for _, ln in lines)
    result["load_start"] = round(load_start[0], 1)
    result["load_end"] = round(load_end[0], 1)
    result["qemu_left"] = qemu is not None and pathlib.Path(f"/proc/{qemu}").exists()
    # the run's own namespaces (its testbed id, from the mesh line): other jobs on the host may make theirs
    bed = next((m.group(1) for _, ln in lines if (m := re.search(r"in namespaces (\S+)-n1\.\.", ln))), None)
    result["namespaces_left"] = sorted(ns for ns in _namespaces() - before_ns
                                       if ns.startswith(f"{bed}-" if bed else "x0"))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--warm-cache", action="store_true", help="use the shared stage cache (not an empty one)")
    parser.add_argument("--no-cached", action="store_true", help="skip the second (image reused) run")
    parser.add_argument("--keep", type=pathlib.Path, help="clone here (kept) instead of a temporary directory")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/run.py needs root (network namespaces), like `make run`'s mesh", file=sys.stderr)
        return 2
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=8", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="x0-bench-run-") as tmpname:
        tmp = pathlib.Path(tmpname)
        clone = args.keep or tmp / "checkout"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        subprocess.run(["git", "-C", str(clone), "checkout", "-q", head], check=True)
        env = dict(os.environ)
        env.pop("X0_IMAGE_CACHE", None)
        if not args.warm_cache:
            env["X0_IMAGE_CACHE"] = str(tmp / "stage-cache")
        kind = "warm" if args.warm_cache else "cold"
        runs = {f"fresh_{kind}_cache": timed_run(clone, env, tmp / "fresh.log")}
        print((tmp / "fresh.log").read_text(), end="")
        if not args.no_cached:
            runs["cached"] = timed_run(clone, env, tmp / "cached.log")
            print((tmp / "cached.log").read_text(), end="")
    print("\nseconds since `make run` started at which: deps are done, the build is done, QEMU starts, the daemon "
          "is ready, every neighbour routes to the router (mesh up)")
    print(f"{'run':<18} {'deps':>7} {'build':>8} {'qemu':>7} {'ready':>8} {'mesh':>7} {'load':>10}")
    for name, r in runs.items():
        cells = [r[k] for k, _ in PHASES]
        shown = " ".join(f"{c:>{w}.1f}" if c is not None else f"{'-':>{w}}" for c, w in zip(cells, (7, 8, 7, 8, 7), strict=True))
        print(f"{name:<18} {shown} {r['load_start']:>4.1f}-{r['load_end']:<5.1f}")
    fresh = runs[f"fresh_{kind}_cache"]
    out: dict = {"bench": "run", "commit": head, "cores": os.cpu_count(), "goal_s": GOAL_S, "stage_cache": kind,
                 "fresh_mesh_up_s": fresh["mesh_up_s"],
                 "fresh_vs_goal": None if fresh["mesh_up_s"] is None else round(fresh["mesh_up_s"] / GOAL_S, 2),
                 "cached_mesh_up_s": runs.get("cached", {}).get("mesh_up_s"), "runs": runs}
    print(json.dumps(out))
    clean = all(not r["qemu_left"] and not r["namespaces_left"] for r in runs.values())
    return 0 if clean and all(r["finished"] for r in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
