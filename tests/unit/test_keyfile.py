import os
import stat

import pytest

from x0node.proto import keyfile
from x0node.proto.identity import Identity
from x0node.proto.trust import TrustAnchor


def test_node_key_created_0600_and_reloaded(tmp_path):
    path = tmp_path / "sub" / "node.key"
    ident = keyfile.load_or_create_node_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keyfile.load_or_create_node_key(path).node_id == ident.node_id


def test_too_open_permissions_refused(tmp_path):
    path = tmp_path / "node.key"
    keyfile.save_node_key(path, Identity.from_seed(b"\x01" * 32))
    os.chmod(path, 0o644)
    with pytest.raises(keyfile.KeyFileError, match="too open"):
        keyfile.load_node_key(path)


def test_malformed_files_raise_key_file_error(tmp_path):
    p = tmp_path / "x"
    for text in ("", "x0node-node-key v1\nzz\n", "wrong header\n00\n", "x0node-node-key v1\n0011\n"):
        p.write_text(text)
        os.chmod(p, 0o600)
        with pytest.raises(keyfile.KeyFileError):
            keyfile.load_node_key(p)
    with pytest.raises(keyfile.KeyFileError, match="not found"):
        keyfile.load_node_key(tmp_path / "missing")
    p.write_text("x0node-cert v1\n0011\n")
    with pytest.raises(keyfile.KeyFileError, match="malformed"):
        keyfile.load_certificate(p)


def test_anchor_cert_crl_round_trip(tmp_path):
    anchor = TrustAnchor.from_seed(b"\x07" * 32)
    keyfile.save_anchor_key(tmp_path / "a.key", anchor)
    keyfile.save_anchor_public(tmp_path / "a.pub", anchor.public_key)
    assert keyfile.load_anchor_key(tmp_path / "a.key").public_key == anchor.public_key
    assert keyfile.load_anchor_public(tmp_path / "a.pub") == anchor.public_key
    cert = anchor.certify(Identity.from_seed(b"\x01" * 32).public_key)
    keyfile.save_certificate(tmp_path / "n.cert", cert)
    assert keyfile.load_certificate(tmp_path / "n.cert") == cert
    crl = anchor.revoke([b"\x01" * 16], 3, 5)
    keyfile.save_revocations(tmp_path / "r.crl", crl)
    assert keyfile.load_revocations(tmp_path / "r.crl") == crl


def test_certificate_of_the_format_before_prefix_grants_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "old.cert"
    path.write_text("x0node-cert v1\n" + "01" * 105 + "\n")
    with pytest.raises(keyfile.KeyFileError, match="sign the node key again"):
        keyfile.load_certificate(path)
