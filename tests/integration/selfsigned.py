"""A self-signed TLS certificate for a loopback test server.

Rules: the certificate names one host (CN and the only SAN), is valid from a day ago to a day
ahead, and is written as PEM into the given folder next to its unencrypted PKCS#8 key; nothing
is fetched or cached, each call makes a fresh P-256 key.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALIDITY_MARGIN_DAYS = 1


def write_self_signed(folder: Path, host: str, *, serial: int, ca: bool = False) -> tuple[Path, Path]:
    """Write c.pem and k.pem for `host` into `folder`; return (certificate path, key path).

    `ca` adds a critical BasicConstraints(CA:TRUE) so clients that want the trust anchor to be a
    CA accept the certificate as their cafile."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    margin = datetime.timedelta(days=VALIDITY_MARGIN_DAYS)
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(serial).not_valid_before(now - margin).not_valid_after(now + margin)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    cert = builder.sign(key, hashes.SHA256())
    cert_path, key_path = folder / "c.pem", folder / "k.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path
