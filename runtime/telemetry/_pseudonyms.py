"""Pseudonyms (keyed HMACs of users, sessions and record keys) and the install secret."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from _hashlib import HASH

__all__ = ["ENV_INSTALL_SECRET", "hash_key", "load_install_secret", "pseudonymize"]

log = logging.getLogger("brickrun.telemetry.privacy")

ENV_INSTALL_SECRET: Final = "BRICKRUN_INSTALL_SECRET"
MIN_SECRET_BYTES: Final = 16
_SECRET_BYTES = 32

# --- pseudonyms and the install secret --------------------------------------------------------

_PSEUDONYM = re.compile(r"[uks]_[0-9a-f]{32}\Z")


def _keyed(value: str, secret: bytes, domain: bytes, prefix: str) -> str:
    if len(value) == 34 and value[0] == prefix[0] and _PSEUDONYM.match(value):
        return value  # already pseudonymous: keeps filter_event idempotent (strict mode)
    inner, outer = _hmac_pads(secret, domain)
    keyed = inner.copy()
    keyed.update(value.encode("utf-8", "surrogatepass"))
    final = outer.copy()
    final.update(keyed.digest())
    return prefix + final.hexdigest()[:32]


_IPAD: Final = bytes(b ^ 0x36 for b in range(256))
_OPAD: Final = bytes(b ^ 0x5C for b in range(256))
_SHA256_BLOCK: Final = 64


@lru_cache(maxsize=16)
def _hmac_pads(secret: bytes, domain: bytes) -> tuple[HASH, HASH]:
    """HMAC-SHA256 (RFC 2104) keyed with ``secret``, as its two SHA-256 states: the inner one
    already past the key pad and the domain prefix, the outer one past the key pad. Copying
    them per value gives ``hmac.new(secret, domain + b"\\x00" + value, "sha256")`` for half the
    cost of copying an ``hmac.HMAC`` (a test pins the equality)."""
    key = secret if len(secret) <= _SHA256_BLOCK else hashlib.sha256(secret).digest()
    key = key.ljust(_SHA256_BLOCK, b"\x00")
    inner = hashlib.sha256(key.translate(_IPAD))
    inner.update(domain + b"\x00")
    return inner, hashlib.sha256(key.translate(_OPAD))


def pseudonymize(user: str | None, secret: bytes) -> str | None:
    """``"u_"`` + 32 hex characters of HMAC-SHA256(secret, user); ``None`` stays ``None``.

    Stable for one secret, unrelated across secrets, and not reproducible by hashing the raw
    value without the secret. Emails are compared case-insensitively (``Alice@X.com`` and
    ``alice@x.com`` are one user). An existing pseudonym is returned unchanged.
    """
    if user is None:
        return None
    return _user_pseudonym(str(user), secret)


def _user_pseudonym(user: str, secret: bytes) -> str:
    text = user.strip()
    if "@" in text:
        text = text.lower()
    return _keyed(text, secret, b"brickrun:user", "u_")


def hash_key(key: str, secret: bytes) -> str:
    """``"k_"`` + 32 hex characters of HMAC-SHA256(secret, key): how a record key leaves.

    Stable for one secret so a collector can deduplicate; an existing key hash is returned
    unchanged.
    """
    return _keyed(str(key), secret, b"brickrun:key", "k_")


def _session_pseudonym(session_id: str, secret: bytes) -> str:
    return _keyed(session_id, secret, b"brickrun:session", "s_")


def _default_secret_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("brickrun")) / "install-secret"


def _parse_secret(text: str, origin: str) -> bytes:
    try:
        secret = bytes.fromhex(text.strip())
    except ValueError:
        secret = b""
    if len(secret) < MIN_SECRET_BYTES:
        # The value itself is never part of a message.
        raise ValueError(
            f"{origin} is not a valid install secret: expected at least {MIN_SECRET_BYTES} "
            f"bytes written as hex (64 hex characters for a generated one)"
        )
    return secret


def load_install_secret(path: str | os.PathLike[str] | None = None) -> bytes:
    """The install's HMAC key for pseudonyms and key hashes.

    ``BRICKRUN_INSTALL_SECRET`` (hex) overrides everything. Otherwise the secret is read from
    ``path`` (default ``platformdirs.user_data_dir("brickrun")/install-secret``), which is
    created once with 32 random bytes as hex, mode 0600, atomically (a concurrent first run
    reads the winner's secret). A malformed secret raises :class:`ValueError` rather than
    being replaced, which would silently change every pseudonym. The secret is never logged.
    """
    from_env = os.environ.get(ENV_INSTALL_SECRET, "")
    if from_env.strip():
        return _parse_secret(from_env, ENV_INSTALL_SECRET)
    target = Path(path) if path is not None else _default_secret_path()
    if not target.exists():
        _create_secret(target)
    return _parse_secret(target.read_text(encoding="ascii", errors="replace"), str(target))


def _create_secret(target: Path) -> None:
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_bytes(_SECRET_BYTES).hex() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, target)  # atomic and never overwrites: the first writer wins
            log.info("created the install secret at %s", target)
        except FileExistsError:
            pass
    finally:
        temporary.unlink(missing_ok=True)
