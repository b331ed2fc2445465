"""`x0node keys` (x0node/proto/cli.py)."""

import json
import stat

from x0node.cli import main


def test_keys_workflow(tmp_path, capsys):
    k, a, c, r = (tmp_path / n for n in ("n.key", "a.key", "n.cert", "r.crl"))
    assert main(["keys", "generate", "--out", str(k)]) == 0
    node = json.loads(capsys.readouterr().out)
    assert stat.S_IMODE(k.stat().st_mode) == 0o600
    assert main(["keys", "generate", "--out", str(k)]) == 2  # refuses to overwrite
    capsys.readouterr()
    assert main(["keys", "anchor", "--out", str(a)]) == 0
    capsys.readouterr()
    assert (
        main(["keys", "sign", "--anchor", str(a), "--node-key", str(k), "--role", "gateway", "--out", str(c),
              "--prefix", "2001:db8:0:1::/64", "--prefix", "2001:DB8:7::/48"])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["prefixes"] == ["2001:db8:0:1::/64", "2001:db8:7::/48"]
    for bad in ("10.0.0.0/8", "fe80::/64", "2001:db8::1/64"):
        assert main(["keys", "sign", "--anchor", str(a), "--node-key", str(k), "--out", str(tmp_path / "x.cert"),
                     "--prefix", bad]) == 2
        assert "--prefix" in capsys.readouterr().err and not (tmp_path / "x.cert").exists()
    assert (
        main(["keys", "revoke", "--anchor", str(a), "--serial", "2", "--out", str(r), node["node_id"]]) == 0
    )
    capsys.readouterr()
    assert (
        main(
            [
                "keys",
                "show",
                "--key",
                str(k),
                "--cert",
                str(c),
                "--anchor-pub",
                str(a.with_suffix(".pub")),
                "--crl",
                str(r),
            ]
        )
        == 0
    )
    shown = json.loads(capsys.readouterr().out)
    assert shown["node_id"] == node["node_id"] and shown["mesh_address"] == node["mesh_address"]
    assert shown["certificate"]["valid"] and shown["certificate"]["matches_key"]
    assert shown["certificate"]["role"] == "gateway"
    assert shown["certificate"]["prefixes"] == ["2001:db8:0:1::/64", "2001:db8:7::/48"]
    assert shown["revocations"]["node_ids"] == [node["node_id"]]


def test_keys_errors_are_clean(tmp_path, capsys):
    assert main(["keys", "show", "--key", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
    assert (
        main(
            [
                "keys",
                "revoke",
                "--anchor",
                str(tmp_path / "missing"),
                "--serial",
                "1",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
