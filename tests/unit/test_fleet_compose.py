"""The compose file of a local fleet: its schema subset, references, and the configs it mounts checked
by their own tools (promtool, the daemon's config loader)."""

from __future__ import annotations

import copy
import shutil
import subprocess
import tempfile

import pytest
import yaml

from x0node.daemon import config as daemon_config
from x0node.fleet import checks, compose

HERE = compose.COMPOSE_FILE.parent


def test_compose_file_is_valid_and_consistent() -> None:
    doc = compose.load()
    assert compose.schema_problems(doc) == []
    assert compose.reference_problems(doc) == []
    assert {"prometheus", "alertmanager", "node-1", "node-2", "node-3", "provision"} == set(doc["services"])
    assert doc["services"]["node-2"]["cap_add"] == ["NET_ADMIN", "NET_RAW"]  # merged from x-node


def test_checks_find_mistakes() -> None:
    doc = compose.load()
    bad = copy.deepcopy(doc)
    bad["services"]["node-1"]["cap_add"] = ["SYS_ADMIN"]
    bad["services"]["node-2"]["netwrks"] = ["mesh"]
    bad["services"]["node-3"]["depends_on"] = {"provision": {"condition": "started"}}
    problems = " | ".join(compose.schema_problems(bad))
    assert "SYS_ADMIN" in problems and "netwrks" in problems and "node-3/depends_on" in problems
    bad = copy.deepcopy(doc)
    bad["services"]["node-1"]["volumes"].append("nodes-9-data:/x")
    bad["services"]["prometheus"]["volumes"].append("./missing.yml:/etc/x.yml:ro")
    bad["services"]["node-2"]["networks"] = ["lan"]
    assert len(compose.reference_problems(bad)) == 3


def test_mounted_configs_pass_their_own_tools(tmp_path) -> None:
    with tempfile.TemporaryDirectory() as data:
        cfg = daemon_config.load(HERE / "node.toml", data_dir=data)
    assert cfg.section("web")["metrics_allow"][-1] == compose.load()["networks"]["mesh"]["ipam"]["config"][0]["subnet"]
    if shutil.which("promtool") is None:
        pytest.skip("promtool missing: make deps (mk/fleet.mk)")
    prom = yaml.safe_load((HERE / "prometheus.yml").read_text())
    prom["rule_files"] = [str(checks.RULES_FILE)]  # where the compose file mounts them from
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(prom))
    out = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "12 rules found" in out.stdout, out.stdout + out.stderr
