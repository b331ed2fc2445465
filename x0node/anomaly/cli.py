"""`x0node model ...`: check the shipped anomaly model on a device; evaluate it on a development machine.

- `x0node model check`: verifies the bundle and runs the fallback chain's self-test; prints the live
  layer and exits 1 when the GNN is not live. Works on a router.
- `x0node model eval`: scores the held-out scenarios with every detector. It needs the scenario
  generator, which lives in the development package x0lab (x0lab.anomaly.evaluation); routers do not
  install it, and the command says so instead of failing with a traceback.
- `x0node model eval --real [--data DIR]`: judges every detector and baseline on the real-fault
  dataset (x0lab.anomaly.realeval; folds by topology, 95 % CIs), including the "as deployed" rows.
- `x0node model collect --seed N --out DIR` (root): regenerates that dataset on namespace testbeds
  (x0lab.anomaly.realdata); `x0node model fit-real [--data DIR] [--model-dir DIR] [--fa-budget B]
  [--recipe held-loss|held-loss-links|held-loss-mesh|trees]` exports the shipped tree-layer models (x0lab.anomaly.realtrain: the
  held-loss rule by default, or the trees trained on the chaos runs) with the operating point chosen on
  validation (with --fa-budget: for hard-fault recall within 2 ticks under B false alarms per node-hour).
"""

from __future__ import annotations

import argparse
import json
import os


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("model", help="evaluate and check the anomaly detection models")
    sub = p.add_subparsers(dest="model_command", metavar="ACTION")
    e = sub.add_parser("eval", help="precision/recall/F1/FPR/AUC of every detector on held-out scenarios "
                       "(development machines: needs x0lab)")
    e.add_argument("--model-dir", default=None, help="directory with anomaly_model.json (default: auto)")
    e.add_argument("--real", action="store_true", help="judge on the real-fault dataset from the fault lab instead")
    e.add_argument("--data", default=None, help="real-fault dataset directory (default: models/realfaults)")
    e.add_argument("--leave-one-kind-out", action="store_true",
                   help="with --real: also the shipped recipe's recall on each fault kind when no model saw it")
    e.add_argument("--cache", default=None, metavar="DIR",
                   help="with --real: keep each fold's scores here and reuse those whose rows and detector are "
                   "unchanged (adding a fault-free recording then refits only its fold)")
    e.set_defaults(func=cmd_eval)
    col = sub.add_parser("collect", help="regenerate the real-fault dataset: seeded chaos on namespace testbeds "
                         "of x0node daemons (root; about 11 minutes per topology)")
    col.add_argument("--seed", type=int, required=True, metavar="N")
    col.add_argument("--out", required=True, help="dataset directory (one sub-directory per run)")
    col.add_argument("--duration", type=float, default=600.0, metavar="S", help="chaos seconds per topology (default %(default)s)")
    col.add_argument("--runs", default=None, help="comma-separated run indexes (default: all)")
    col.add_argument("--transit-pps", type=float, default=0.0, metavar="P",
                     help="chaos runs: every node pings the node farthest from it at P packets/s (at most 50), "
                     "so partial black holes meet transit traffic (default: none)")
    col.add_argument("--fault-free", type=int, default=0, metavar="NODES",
                     help="instead: one fault-free recording of NODES daemons on a seeded random topology "
                     "for --duration seconds (the false-alarm data)")
    col.add_argument("--cpu-cores", type=float, default=float(os.cpu_count() or 1), metavar="C",
                     help="with --fault-free: cap the whole recording (every daemon) at C cores, weighted like "
                     "NODES nice-10 processes; 0 = neither cap nor weight (default: every online CPU, i.e. "
                     "the weight alone: a tighter cap throttles the daemons for seconds at a time)")
    col.set_defaults(func=cmd_collect)
    fit = sub.add_parser("fit-real", help="train the tree detectors on the real-fault dataset and export them "
                         "into the model bundle (updates anomaly_model.json and SHA256SUMS)")
    fit.add_argument("--data", default=None, help="real-fault dataset directory (default: models/realfaults)")
    fit.add_argument("--model-dir", default=None, help="bundle directory (default: the source tree's models/)")
    fit.add_argument("--fa-budget", type=float, default=None, metavar="B",
                     help="choose the operating point (threshold, alarm policy) on validation for hard-fault recall "
                     "within 2 ticks under B false alarms per node-hour, instead of the best event F1")
    fit.add_argument("--recipe", choices=("held-loss", "held-loss-links", "held-loss-mesh", "trees"), default="held-loss",
                     help="held-loss: alarm on a neighbour whose held loss is still down, on the tick's control-packet "
                     "loss or on a low forwarding ratio (nothing trained; the shipped detector); held-loss-links: "
                     "neighbours down alone; held-loss-mesh: the same with one neighbour more needed while every "
                     "neighbour's hello RTT is high (a host stall); trees: the gradient-boosted trees trained on the "
                     "chaos runs (default %(default)s)")
    fit.set_defaults(func=cmd_fit_real)
    c = sub.add_parser("check", help="verify the model bundle and self-test; print the live layer")
    c.add_argument("--model-dir", default=None, help="directory with anomaly_model.json (default: auto)")
    c.set_defaults(func=cmd_check)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def cmd_eval(args: argparse.Namespace) -> int:
    from x0node.cli import import_dev_module

    if args.real:
        real = import_dev_module("x0lab.anomaly.realeval", "model eval --real")
        return 2 if real is None else int(real.cmd_eval_real(args))
    evaluation = import_dev_module("x0lab.anomaly.evaluation", "model eval")
    if evaluation is None:
        return 2
    return int(evaluation.cmd_eval(args))


def cmd_collect(args: argparse.Namespace) -> int:
    import pathlib

    from x0node.cli import import_dev_module

    realdata = import_dev_module("x0lab.anomaly.realdata", "model collect")
    if realdata is None:
        return 2
    if args.fault_free:
        dest = realdata.collect_fault_free(pathlib.Path(args.out), args.seed, args.fault_free, args.duration,
                                           args.cpu_cores or None, echo=lambda line: print(line, flush=True))
        print(f"fault-free recording in {dest}")
        return 0
    runs = [int(r) for r in args.runs.split(",")] if args.runs else None
    done = realdata.collect(pathlib.Path(args.out), args.seed, args.duration, runs,
                            echo=lambda line: print(line, flush=True), transit_pps=args.transit_pps)
    print(f"{len(done)} runs recorded in {args.out}")
    return 0


def cmd_fit_real(args: argparse.Namespace) -> int:
    from x0node.cli import import_dev_module

    realtrain = import_dev_module("x0lab.anomaly.realtrain", "model fit-real")
    return 2 if realtrain is None else int(realtrain.cmd_fit_real(args))


def cmd_check(args: argparse.Namespace) -> int:
    from x0node.anomaly.chain import load_chain

    chain, bundle = load_chain(args.model_dir)
    st = chain.status()
    print(json.dumps({"model_dir": None if bundle is None else str(bundle.directory), **st}, indent=1))
    return 0 if st["live_layer"] in ("gbt", "gnn") else 1
