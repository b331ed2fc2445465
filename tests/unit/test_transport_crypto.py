"""Key derivation known answers: OpenSSL EVP_BytesToKey, RFC 5869 HKDF-SHA1, SIP022 BLAKE3."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from x0node.transport.crypto import (
    METHODS,
    blake3_subkey,
    evp_bytes_to_key,
    get_method,
    hkdf_sha1_subkey,
    master_key,
)


def test_evp_bytes_to_key_matches_openssl():
    # `openssl enc -aes-256-cbc -k foobar -md md5 -nosalt -P`
    assert evp_bytes_to_key(b"foobar", 32).hex().upper() == "3858F62230AC3C915F300C664312C63F568378529614D22DDB49237D2F60BFDF"
    assert evp_bytes_to_key(b"foobar", 16) == evp_bytes_to_key(b"foobar", 32)[:16]


def test_hkdf_sha1_rfc5869_case4():
    okm = HKDF(hashes.SHA1(), 42, bytes(range(13)), bytes(range(0xF0, 0xFA))).derive(b"\x0b" * 11)
    assert okm.hex() == "085a01ea1b10f36933068b56efa5ad81a4f14b822f5b091568a9cdd4f155fda2c22e422478d305f3f896"


def test_hkdf_subkey_uses_ss_subkey_info():
    key, salt = b"k" * 32, b"s" * 32
    want = HKDF(hashes.SHA1(), 32, salt, b"ss-subkey").derive(key)
    assert hkdf_sha1_subkey(key, salt) == want


def test_blake3_session_subkey_known_answer():
    # independent implementation's known answer for SIP022 session subkeys
    key = base64.b64decode("Lc3tTx0BY6ZJ/fCwOx3JvF0I/anhwJBO5p2+FA5Vce4=")
    salt = base64.b64decode("3oFO0VyLyGI4nFN0M9P+62vPND/L6v8IingaPJWTbJA=")
    assert base64.b64encode(blake3_subkey(key, salt)).decode() == "EdNE+4U8dVnHT0+poAFDK2bdlwfrHT61sUNr9WYPh+E="


def test_2022_psk_validation():
    m = get_method("2022-blake3-aes-256-gcm")
    with pytest.raises(ValueError, match="base64"):
        master_key(m, "not base64!")
    with pytest.raises(ValueError, match="32-byte"):
        master_key(m, base64.b64encode(b"short").decode())
    assert master_key(m, base64.b64encode(bytes(32)).decode()) == bytes(32)


def test_unknown_method_names_the_choices():
    with pytest.raises(ValueError, match="chacha20-ietf-poly1305"):
        get_method("rc4-md5")
    assert {"chacha20-ietf-poly1305", "aes-256-gcm", "2022-blake3-chacha20-poly1305", "2022-blake3-aes-256-gcm"} <= set(METHODS)
