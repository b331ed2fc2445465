from tests import sans_io_contract as contract


def test_the_tree_keeps_the_contract():
    assert [v for p in contract.modules() for v in contract.violations(p)] == []
    names = {p.name for p in contract.modules()}
    assert {"router.py", "hello.py", "flooding.py", "routes.py", "views.py"} <= names
    assert "keyfile.py" not in names  # the core's file adapter


def test_what_breaks_it_is_named():
    path = contract.CORE / "example.py"
    src = ("import random\nimport asyncio\nfrom time import monotonic\nfrom x0node.io import udp\n"
           "from x0node.proto import spf\nfrom random import choice\nx = random.random()\n"
           "r = random.Random(1)\n")
    found = contract.violations(path, src)
    assert [v.split(":")[1] for v in found] == ["2", "3", "4", "6", "7"]
    assert all(v.startswith("x0node/proto/example.py:") for v in found)
