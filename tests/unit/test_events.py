import dataclasses
import json

import pytest

from x0node.proto.events import NeighbourUp, RouteRefused


def test_events_are_frozen_and_json_ready():
    ev = NeighbourUp(1.5, "m0", "ab" * 16, "fe80::1")
    d = ev.as_dict()
    assert d["kind"] == "NeighbourUp" and d["at_s"] == 1.5
    json.dumps(d)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.ifname = "x"  # type: ignore[misc]
    assert RouteRefused(0.0, "add", "fd00::/64", "m0", "enetunreach").as_dict()["reason"] == "enetunreach"
