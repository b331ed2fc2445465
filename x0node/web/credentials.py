"""The admin password and the one-time setup code, kept in `<data_dir>/web/`.

Rules:
- There is no default password. Until one is set, the only way in is the setup code: a random code
  created at first start, written to `setup-code` (mode 0600) and logged once at WARNING, so it shows on
  the console and in the journal. Setting the password deletes the code; it can never be used twice.
- Passwords are stored only as argon2id hashes (libsodium via pynacl, interactive limits so that a
  small router can verify one in well under a second), in `password` (mode 0600), written atomically
  (`x0node.io.atomicfile`). A write that fails (storage full) raises OSError and changes nothing.
- `stamp()` changes whenever the stored password changes, whoever changed it (the web UI, or
  `x0node web set-password` on the console while the service runs): sessions follow it and all end.
  It costs one stat() per call; the file is re-read only when its inode, size or mtime changed.
- `device_key()` (derived from the stored hash, so it changes with the password) signs the cookie that
  marks a browser which signed in before (see throttle.py).
- If the setup code cannot be stored (storage full at first start), it lives in memory and is logged:
  the first sign-in still works.
- Password policy: `PASSWORD_MIN_CHARS`..`PASSWORD_MAX_CHARS` characters.
- Codes and passwords are compared in constant time (hmac.compare_digest / libsodium verify).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import pathlib
import secrets

import nacl.exceptions
import nacl.pwhash

from x0node.io.atomicfile import write_atomic

log = logging.getLogger(__name__)

PASSWORD_MIN_CHARS = 10
PASSWORD_MAX_CHARS = 256
SETUP_CODE_GROUPS = 3
SETUP_CODE_GROUP_CHARS = 4
# No 0/O/1/I/L: the code is read off a serial console and typed on a phone.
SETUP_CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
ARGON2_OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
ARGON2_MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE


class PasswordPolicyError(ValueError):
    pass


def check_policy(password: str) -> None:
    if not isinstance(password, str):
        raise PasswordPolicyError("password must be a string")
    if len(password) < PASSWORD_MIN_CHARS:
        raise PasswordPolicyError(f"password must have at least {PASSWORD_MIN_CHARS} characters")
    if len(password) > PASSWORD_MAX_CHARS:
        raise PasswordPolicyError(f"password must have at most {PASSWORD_MAX_CHARS} characters")


def hash_password(password: str) -> bytes:
    return nacl.pwhash.argon2id.str(password.encode(), opslimit=ARGON2_OPSLIMIT, memlimit=ARGON2_MEMLIMIT)


def normalise_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


class Credentials:
    def __init__(self, web_dir: pathlib.Path) -> None:
        self.dir = web_dir
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.password_path = self.dir / "password"
        self.setup_code_path = self.dir / "setup-code"
        self._memory_code: str | None = None
        self._seen: tuple[int, int, int, int] | None = None
        self._stored: bytes | None = None

    def _read_stored(self) -> bytes | None:
        """The stored hash, re-read only when the file changed (rename gives it a new inode)."""
        try:
            st = os.stat(self.password_path)
        except FileNotFoundError:
            self._seen, self._stored = None, None
            return None
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if key != self._seen:
            try:
                self._stored = self.password_path.read_bytes().strip()
            except FileNotFoundError:
                self._stored = None
            self._seen = key
        return self._stored

    def stamp(self) -> bytes | None:
        """Changes whenever the stored password changes; None while no password is set."""
        stored = self._read_stored()
        return None if stored is None else hashlib.blake2b(stored, digest_size=16).digest()

    def device_key(self) -> bytes | None:
        stored = self._read_stored()
        return None if stored is None else hmac.new(stored, b"x0node device cookie v1", hashlib.sha256).digest()

    def password_set(self) -> bool:
        return self.password_path.exists()

    def ensure_setup_code(self) -> str | None:
        """At start: if no password is set, make sure a setup code exists and log it. Returns the code."""
        if self.password_set():
            self.setup_code_path.unlink(missing_ok=True)
            return None
        code = self.read_setup_code()
        if code is None:
            raw = "".join(secrets.choice(SETUP_CODE_ALPHABET) for _ in range(SETUP_CODE_GROUPS * SETUP_CODE_GROUP_CHARS))
            code = "-".join(raw[i:i + SETUP_CODE_GROUP_CHARS] for i in range(0, len(raw), SETUP_CODE_GROUP_CHARS))
            try:
                write_atomic(self.setup_code_path, (code + "\n").encode())
            except OSError as exc:
                self._memory_code = code
                log.error("could not store the setup code in %s (%s): it is valid until the service "
                          "restarts", self.setup_code_path, exc.strerror)
        log.warning("web UI has no password yet: open it and enter setup code %s (also in %s)",
                    code, self.setup_code_path)
        return code

    def read_setup_code(self) -> str | None:
        try:
            text = self.setup_code_path.read_text().strip()
        except (FileNotFoundError, UnicodeDecodeError):
            return self._memory_code
        return text or self._memory_code

    def check_setup_code(self, given: str) -> bool:
        code = self.read_setup_code()
        if code is None or self.password_set() or not isinstance(given, str) or len(given) > 64:
            return False
        return hmac.compare_digest(normalise_code(code).encode(), normalise_code(given).encode())

    def set_password(self, password: str) -> None:
        """Hash and store (policy checked first). Consumes the setup code."""
        check_policy(password)
        write_atomic(self.password_path, hash_password(password))
        self._memory_code = None
        self.setup_code_path.unlink(missing_ok=True)

    def verify(self, password: str) -> bool:
        if not isinstance(password, str) or len(password) > PASSWORD_MAX_CHARS:
            return False
        stored = self._read_stored()
        if stored is None:
            return False
        try:
            return bool(nacl.pwhash.verify(stored, password.encode()))
        except (nacl.exceptions.InvalidkeyError, nacl.exceptions.CryptoError, ValueError):
            return False
