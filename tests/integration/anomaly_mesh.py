"""A line of real daemons with the anomaly service recording every tick: the testbed, each node's
recorded ticks (`<data_dir>/anomaly/ticks.jsonl`, a torn line skipped) and a bounded wait. Used by
the anomaly integration tests.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import time
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def anomaly_bed(tmp_path: pathlib.Path, sections: dict[str, Any], topology: str = "line:3") -> Iterator[Any]:
    """A testbed of x0node daemons with these config sections, taken down afterwards."""
    from x0lab.testbed import bed as tb

    b = tb.Testbed.create(tmp_path / "bed", topology, daemon="x0node", sections=sections)
    try:
        yield b
    finally:
        b.down()


def ticks(bed: Any, k: int) -> list[dict[str, Any]]:
    """Node k's recorded ticks so far."""
    path = pathlib.Path(bed.node(k).data_dir) / "anomaly" / "ticks.jsonl"
    out = []
    for line in path.read_text().splitlines() if path.exists() else ():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def wait(pred: Callable[[], Any], timeout_s: float, poll_s: float = 0.5) -> Any:
    """`pred()` once it is truthy, polling up to `timeout_s`; its last value otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(poll_s)
    return pred()
