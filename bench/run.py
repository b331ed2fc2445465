"""Time to the mesh of `make run` from a fresh checkout: what a new user waits for.

    .venv/bin/python bench/run.py              # a clone of HEAD, its own empty stage cache (cold), then cached
    .venv/bin/python bench/run.py --warm-cache # the shared stage cache (Debian bootstrap and wheels kept)
    .venv/bin/python bench/run.py --no-cached  # the fresh run only
    .venv/bin/python bench/run.py --warm-cache --new-commit   # a commit never built here (shared stage cache)

Method: `git clone` of this repository's HEAD into a temporary directory (no .venv, no build/, no out/),
then `make run` there exactly as a user types it (apt step, pip into a new .venv, the image build, the
boot, the neighbours), each output line stamped with the seconds since `make run` started. The run is
stopped with SIGTERM once it printed the fault commands (after "mesh up: all N neighbours route to the
router"), and everything it started must be gone (its QEMU, its namespaces). Then, as the baseline in the
same conditions, a second `make run` in the same clone: the image is reused (same inputs), so it is the
time from an existing checkout. "Cold" gives the build an empty stage cache (X0_IMAGE_CACHE in the
temporary directory), so the Debian root is bootstrapped and the wheels are downloaded as on a new
machine; `--warm-cache` uses the shared cache, as a second checkout on the same machine would.
`--new-commit` adds one commit to the clone that changes a comment in x0node's source (with a nonce),
so the image's inputs differ from anything built before: no finished image can be copied and the build
runs, with whatever the stage cache holds for the steps below it (with `--warm-cache`: the Debian
bootstrap and the wheels) — the case of a developer's new commit, or of a release never built here.

Phases (seconds since `make run` started): deps (apt + pip), build, QEMU start, the daemon's ready line,
"mesh up" (every neighbour routes to the router; the router's UI shows the mesh from then on, within a
few seconds). The goal is "mesh up" within 180 s of a fresh checkout's `make run` on this machine.
Prints per-phase seconds (apt, pip and the BPF objects, build, QEMU start, boot to ready, ready to mesh up), the build's step
seconds, then one JSON line {"bench": "run", ...}; the host's load average is recorded with
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
LOAD_SAMPLE_S = 5.0
# (seconds since `make run` started at which ..., the line that marks it)
PHASES = (
    ("apt_done_s", re.compile(r"-m pip install")),
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

    loads: list[float] = []

    def sample_load() -> None:
        while not done.wait(LOAD_SAMPLE_S):
            loads.append(os.getloadavg()[0])

    threading.Thread(target=read, daemon=True).start()
    threading.Thread(target=sample_load, daemon=True).start()
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
    result["load_max"] = round(max([load_start[0], load_end[0], *loads]), 1)
    result["load_mean"] = round(sum(loads) / len(loads), 1) if loads else result["load_end"]
    result["qemu_left"] = qemu is not None and pathlib.Path(f"/proc/{qemu}").exists()
    # the run's own namespaces (its testbed id, from the mesh line): other jobs on the host may make theirs
    bed = next((m.group(1) for _, ln in lines if (m := re.search(r"in namespaces (\S+)-n1\.\.", ln))), None)
    result["namespaces_left"] = sorted(ns for ns in _namespaces() - before_ns
                                       if ns.startswith(f"{bed}-" if bed else "x0"))
    return result


def phase_seconds(r: dict) -> list[float | None]:
    """Each phase's own seconds (the difference between consecutive marks; None where a mark is missing)."""
    marks = [0.0, *(r[k] for k, _ in PHASES)]
    return [None if a is None or b is None else round(b - a, 1) for a, b in zip(marks, marks[1:], strict=False)]


def new_commit(clone: pathlib.Path) -> None:
    """One commit on top of the clone's HEAD whose image inputs are new: a comment line with a nonce
    appended to x0node/__init__.py (the x0node wheel, the image's inputs digest and its version change)."""
    init = clone / "x0node" / "__init__.py"
    init.write_text(init.read_text() + f"# bench/run.py --new-commit {time.time_ns():x}\n")
    git = ["git", "-C", str(clone), "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run([*git, "commit", "-q", "-am", "bench/run.py: a commit never built on this machine"], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--warm-cache", action="store_true", help="use the shared stage cache (not an empty one)")
    parser.add_argument("--no-cached", action="store_true", help="skip the second (image reused) run")
    parser.add_argument("--new-commit", action="store_true",
                        help="add a commit changing x0node's source to the clone (an image never built here)")
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
        if args.new_commit:
            new_commit(clone)
        env = dict(os.environ)
        env.pop("X0_IMAGE_CACHE", None)
        if not args.warm_cache:
            env["X0_IMAGE_CACHE"] = str(tmp / "stage-cache")
        kind = ("warm" if args.warm_cache else "cold") + ("_new_commit" if args.new_commit else "")
        runs = {f"fresh_{kind}_cache": timed_run(clone, env, tmp / "fresh.log")}
        print((tmp / "fresh.log").read_text(), end="")
        if not args.no_cached:
            runs["cached"] = timed_run(clone, env, tmp / "cached.log")
            print((tmp / "cached.log").read_text(), end="")
    print("\nseconds of each phase of `make run`: apt, pip and the BPF objects, the image build (or copy), QEMU start (lab unit, "
          "neighbours), boot to the daemon's ready line, ready to every neighbour routing to the router (mesh up)")
    print(f"{'run':<26} {'apt':>6} {'pip+bpf':>7} {'build':>7} {'qemu':>6} {'ready':>7} {'mesh':>6} {'total':>7} "
          f"{'load start-end (max)':>21}")
    for name, r in runs.items():
        cells = phase_seconds(r)
        shown = " ".join(f"{c:>{w}.1f}" if c is not None else f"{'-':>{w}}"
                         for c, w in zip(cells, (6, 7, 7, 6, 7, 6), strict=True))
        total = r["mesh_up_s"]
        print(f"{name:<26} {shown} {total if total is not None else '-':>7} "
              f"{r['load_start']:>8.1f}-{r['load_end']:<5.1f} ({r['load_max']:.1f})")
    for name, r in runs.items():
        if r["build_steps_s"]:
            print(f"{name} build steps (s): " + ", ".join(f"{k} {v:.1f}" for k, v in r["build_steps_s"].items()))
    fresh = runs[f"fresh_{kind}_cache"]
    out: dict = {"bench": "run", "commit": head, "cores": os.cpu_count(), "goal_s": GOAL_S, "stage_cache": kind,
                 "fresh_mesh_up_s": fresh["mesh_up_s"],
                 "fresh_phases_s": dict(zip(("apt", "pip_bpf", "build", "qemu_start", "boot_to_ready", "ready_to_mesh"),
                                            phase_seconds(fresh), strict=True)),
                 "fresh_build_steps_s": fresh["build_steps_s"],
                 "fresh_vs_goal": None if fresh["mesh_up_s"] is None else round(fresh["mesh_up_s"] / GOAL_S, 2),
                 "cached_mesh_up_s": runs.get("cached", {}).get("mesh_up_s"), "runs": runs}
    print(json.dumps(out))
    clean = all(not r["qemu_left"] and not r["namespaces_left"] for r in runs.values())
    return 0 if clean and all(r["finished"] for r in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
