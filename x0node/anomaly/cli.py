"""`x0node model ...`: check the shipped anomaly model on a device; evaluate it on a development machine.

- `x0node model check`: verifies the bundle and runs the fallback chain's self-test; prints the live
  layer and exits 1 when the GNN is not live. Works on a router.
- `x0node model eval`: scores the held-out scenarios with every detector. It needs the scenario
  generator, which lives in the development package x0lab (x0lab.anomaly.evaluation); routers do not
  install it, and the command says so instead of failing with a traceback.
"""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("model", help="evaluate and check the anomaly detection models")
    sub = p.add_subparsers(dest="model_command", metavar="ACTION")
    e = sub.add_parser("eval", help="precision/recall/F1/FPR/AUC of every detector on held-out scenarios "
                       "(development machines: needs x0lab)")
    e.add_argument("--model-dir", default=None, help="directory with anomaly_model.json (default: auto)")
    e.set_defaults(func=cmd_eval)
    c = sub.add_parser("check", help="verify the model bundle and self-test; print the live layer")
    c.add_argument("--model-dir", default=None, help="directory with anomaly_model.json (default: auto)")
    c.set_defaults(func=cmd_check)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def cmd_eval(args: argparse.Namespace) -> int:
    from x0node.cli import import_dev_module

    evaluation = import_dev_module("x0lab.anomaly.evaluation", "model eval")
    if evaluation is None:
        return 2
    return int(evaluation.cmd_eval(args))


def cmd_check(args: argparse.Namespace) -> int:
    from x0node.anomaly.chain import load_chain

    chain, bundle = load_chain(args.model_dir)
    st = chain.status()
    print(json.dumps({"model_dir": None if bundle is None else str(bundle.directory), **st}, indent=1))
    return 0 if st["live_layer"] == "gnn" else 1
