from __future__ import annotations

import pytest

from x0lab.testbed.topology import MAX_NODES, TopologyError, parse


def test_ring_line_grid_ladder():
    ring = parse("ring:6")
    assert ring.nodes == 6 and len(ring.links) == 6 and ring.neighbours(1) == [2, 6]
    assert ring.hops(1)[4] == 3
    line = parse("line:4")
    assert line.links == ((1, 2), (2, 3), (3, 4))
    grid = parse("grid:2x3")
    assert grid.nodes == 6 and len(grid.links) == 7
    ladder = parse("ladder:3")
    assert ladder.nodes == 6 and ladder.links == grid.links and ladder.spec == "ladder:3"
    star = parse("star:4")
    assert star.links == ((1, 2), (1, 3), (1, 4)) and star.hops(2)[4] == 2
    with pytest.raises(TopologyError):
        parse("star:18")  # node 1 would have more than MAX_DEGREE links


def test_random_is_seeded_connected_and_bounded():
    a, b = parse("random:50:7"), parse("random:50:7")
    assert a == b and a.is_connected() and a.nodes == 50
    assert parse("random:50:8").links != a.links
    assert len(a.links) == 75
    assert all(len(a.neighbours(n)) <= 16 for n in range(1, 51))


def test_file_formats(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("# a triangle\n1 2\n2 3\n3 1\n")
    assert parse(f"file:{p}").links == ((1, 2), (1, 3), (2, 3))
    j = tmp_path / "t.json"
    j.write_text('{"nodes": 3, "links": [[1, 2], [2, 3]]}')
    assert parse(f"file:{j}").nodes == 3


@pytest.mark.parametrize(
    "spec",
    ["ring:2", "ring:x", "line:1", f"ring:{MAX_NODES + 1}", "grid:3", "grid:0x5", "random", "random:5:x",
     "random:5:1:99", "hypercube:4", "file:/nonexistent/t"],
)
def test_bad_specs(spec):
    with pytest.raises(TopologyError):
        parse(spec)


@pytest.mark.parametrize(
    "text",
    ["1 1\n", "1 2\n3 4\n", "1\n", '{"links": [[1, "2"]]}', '{"nodes": 2, "links": [[1, 3]]}', "{bad json"],
)
def test_bad_files(tmp_path, text):
    p = tmp_path / "t"
    p.write_text(text)
    with pytest.raises(TopologyError):
        parse(f"file:{p}")
