"""Release keys: the X.509 chain RAUC verifies and the Ed25519 keys that sign manifests (adapter).

A key directory (`x0node ota keys init DIR`, mode 0700) holds:
- `ca.key.pem`, `ca.cert.pem`: the release CA (EC P-256, self-signed, 20 years). The CA certificate is
  RAUC's keyring on the device (/etc/rauc/keyring.pem). Keep the CA key offline.
- `signing.key.pem`, `signing.cert.pem`: the bundle-signing certificate issued by the CA (5 years);
  `rauc bundle` signs the bundle's CMS signature with it.
- `release-<i>.key` (i = 1..M): Ed25519 seeds (pynacl) of the manifest release keys, one per holder;
  `release-keys.json` = {"keys": [public hex...], "threshold": N}, baked into the image.
All certificates and keys are made with `cryptography` and pynacl; files are written 0600 with the
project's durable write (temp + fsync + rename + directory fsync). Nothing here is hand-made crypto.
"""

from __future__ import annotations

import datetime
import json
import pathlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from nacl.signing import SigningKey

from x0node.io.atomicfile import write_atomic
from x0node.ota.manifest import ReleaseKeys

CA_DAYS = 365 * 20
SIGNING_DAYS = 365 * 5
RELEASE_KEYS_FILE = "release-keys.json"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "x0tta6bl4"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: pathlib.Path, data: bytes, mode: int = 0o600) -> None:
    write_atomic(path, data, mode=mode)


def init(directory: pathlib.Path, holders: int = 3, threshold: int = 2, name: str = "x0tta6bl4 release") -> ReleaseKeys:
    """Make a new key directory (refuses to overwrite one)."""
    if (directory / "ca.key.pem").exists():
        raise FileExistsError(f"{directory} already holds release keys")
    if not 1 <= threshold <= holders <= 16:
        raise ValueError("expected 1 <= threshold <= holders <= 16")
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name(f"{name} CA")).issuer_name(_name(f"{name} CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=CA_DAYS))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    sk = ec.generate_private_key(ec.SECP256R1())
    signing = (x509.CertificateBuilder().subject_name(_name(f"{name} bundle signing")).issuer_name(ca.subject)
               .public_key(sk.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=SIGNING_DAYS))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
               .sign(ca_key, hashes.SHA256()))
    _write(directory / "ca.key.pem", _pem_key(ca_key))
    _write(directory / "ca.cert.pem", ca.public_bytes(serialization.Encoding.PEM), 0o644)
    _write(directory / "signing.key.pem", _pem_key(sk))
    _write(directory / "signing.cert.pem", signing.public_bytes(serialization.Encoding.PEM), 0o644)
    pubs = []
    for i in range(1, holders + 1):
        k = SigningKey.generate()
        _write(directory / f"release-{i}.key", k.encode().hex().encode() + b"\n")
        pubs.append(k.verify_key.encode().hex())
    rk = ReleaseKeys(frozenset(pubs), threshold)
    _write(directory / RELEASE_KEYS_FILE, json.dumps(rk.to_json(), indent=1).encode() + b"\n", 0o644)
    return rk


def ensure(directory: pathlib.Path) -> ReleaseKeys:
    """The directory's release keys, made first if it has none (development builds)."""
    if not (directory / "ca.key.pem").exists():
        return init(directory)
    return release_keys(directory)


def release_keys(directory: pathlib.Path) -> ReleaseKeys:
    return ReleaseKeys.from_json(json.loads((directory / RELEASE_KEYS_FILE).read_text()))


def load_release_key(path: pathlib.Path) -> SigningKey:
    return SigningKey(bytes.fromhex(path.read_text().strip()))


def holder_keys(directory: pathlib.Path) -> list[SigningKey]:
    return [load_release_key(p) for p in sorted(directory.glob("release-*.key"))]
