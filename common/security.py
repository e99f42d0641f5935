"""Secrets: API keys, tokens, passwords — generation, hashing and checks.

High-entropy secrets (API keys, registration and access tokens) carry 256
random bits, so a single SHA-256 is enough to store them and lets the gateway
find a key with one indexed lookup. Passwords are low-entropy and get argon2id
at OWASP's recommended strength.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

API_KEY_PREFIX = "sdk_"
REGISTRATION_TOKEN_PREFIX = "sdr_"
ACCESS_TOKEN_PREFIX = "sda_"
DISPLAY_PREFIX_LEN = 12  # "sdk_" + 8 characters: enough to tell keys apart, useless to an attacker

# OWASP: argon2id, m=19 MiB, t=2, p=1. The product hashes with nothing else.
PRODUCT_PASSWORD_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
_hasher = PRODUCT_PASSWORD_HASHER
_KEY_RE = re.compile(r"sdk_[A-Za-z0-9_-]{43,}")
# A real hash of a throwaway password, verified when the user does not exist
# so that a login for an unknown name takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@contextmanager
def password_hasher_for_tests(hasher: PasswordHasher) -> Iterator[None]:
    """TEST-ONLY hook: hash and verify passwords with ``hasher`` inside the block.

    The test suite swaps in cheap argon2 parameters with it (tests/conftest.py) so that hundreds of
    sign-ups and logins do not each cost 19 MiB and two passes. No product code calls it (a test
    proves it), and nothing in the environment or settings can reach it.
    """
    global _hasher, _DUMMY_HASH
    saved = _hasher, _DUMMY_HASH
    _hasher, _DUMMY_HASH = hasher, hasher.hash(secrets.token_urlsafe(16))
    try:
        yield
    finally:
        _hasher, _DUMMY_HASH = saved


def new_secret(prefix: str) -> str:
    """A fresh ``prefix`` + 32 random bytes, URL-safe."""
    return prefix + secrets.token_urlsafe(32)


def new_api_key() -> str:
    """A new API key: ``sdk_`` + 32 random bytes, URL-safe."""
    return new_secret(API_KEY_PREFIX)


def looks_like_api_key(value: str) -> bool:
    """True if ``value`` has the exact shape of an API key."""
    return bool(_KEY_RE.fullmatch(value))


def hash_secret(value: str) -> str:
    """SHA-256 hex digest of a high-entropy secret, for storage and lookup."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def display_prefix(value: str) -> str:
    """The part of a secret shown in lists so people can tell them apart."""
    return value[:DISPLAY_PREFIX_LEN]


def presented_key_prefix(value: str) -> str:
    """What a log may keep of a key that was refused: the display prefix, at most a third of it.

    A well-formed key shows its :data:`DISPLAY_PREFIX_LEN` characters as the key list does;
    a short or malformed value (a password pasted by mistake) shows no more than a third of itself.
    """
    return value[: min(DISPLAY_PREFIX_LEN, len(value) // 3)]


def constant_time_equals(a: str, b: str) -> bool:
    """Compare two strings without leaking where they differ."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def hash_password(password: str) -> str:
    """argon2id hash of a password."""
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Check a password against its hash; unknown users cost the same time."""
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's."""
    return _hasher.check_needs_rehash(stored_hash)
