"""Service functions for people: login with lockout, sign-up with tokens, access tokens, users.

A little over 300 lines: the lockout's atomic claim, the sign-up's single-use token and the access
tokens share the session-version rules, which read best side by side.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from admin_app.extensions import db
from admin_app.services import ServiceError, audit, check_text
from common.models import AccessToken, LoginFailure, RegistrationToken, User, utcnow
from common.security import (
    ACCESS_TOKEN_PREFIX,
    hash_password,
    hash_secret,
    new_secret,
    password_needs_rehash,
    verify_password,
)
from common.usernames import normalise_username, username_key, username_problem

LOCKOUT_LIMIT = 5  # failures per account or per IP ...
LOCKOUT_WINDOW = timedelta(minutes=15)  # ... within this window lock both out
SUCCESS_HOLD = timedelta(seconds=5)  # how long a success inside a burst still counts
PASSWORD_MIN, PASSWORD_MAX = 8, 1024
GENERIC_LOGIN_ERROR = "Invalid username or password."


class LoginFailed(ServiceError):
    """Wrong credentials (deliberately vague) or a disabled account."""

    status = 401


class LockedOut(ServiceError):
    """Too many failures for this account or address; retry after ``retry_after`` seconds."""

    status = 429

    def __init__(self, retry_after: int) -> None:
        minutes = max(1, math.ceil(retry_after / 60))
        super().__init__(f"Too many failed logins. Try again in about {minutes} minute(s).")
        self.retry_after = retry_after


def check_username(value: object) -> str:
    """A username, NFKC-normalised: 1–100 characters, no spaces, invisible or control characters."""
    name = normalise_username(check_text(value, "username", required=True))
    problem = username_problem(name)
    if problem is not None:
        raise ServiceError(f"username {problem}", "username")
    return name


def check_password(value: object, field: str = "password") -> str:
    """A new password: 8 to 1024 characters."""
    if not isinstance(value, str):
        raise ServiceError(f"{field} must be a string", field)
    if not PASSWORD_MIN <= len(value) <= PASSWORD_MAX:
        raise ServiceError(f"{field} must be {PASSWORD_MIN} to {PASSWORD_MAX} characters long", field)
    return value


def find_user(username: str) -> User | None:
    """The user with this name, compared by :func:`common.usernames.username_key`."""
    return db.session.scalar(sa.select(User).where(User.username_key == username_key(username)))


# -- login and lockout -------------------------------------------------------


# Any fixed number: PostgreSQL's advisory lock that serialises lockout decisions.
LOGIN_LOCK_KEY = 0x5EAD_0001


def _account_key(username: str) -> str:
    """What a failure is counted under: a hash, since people type passwords into the name field."""
    return hash_secret(username_key(username))


def lockout_seconds(
    username: str, ip: str, now: datetime | None = None, *, limit: int = LOCKOUT_LIMIT
) -> int:
    """Seconds until this account and address may try again (0 when under ``limit`` failures)."""
    now = now or utcnow()
    since = now - LOCKOUT_WINDOW
    waits = [0]
    for column, value in ((LoginFailure.username, _account_key(username)), (LoginFailure.ip, ip)):
        times = db.session.scalars(
            sa.select(LoginFailure.at)
            .where(column == value, LoginFailure.at > since)
            .order_by(LoginFailure.at)
        ).all()
        if len(times) >= limit:
            # The lock lifts when fewer than ``limit`` failures remain in the window.
            unlock = times[len(times) - limit] + LOCKOUT_WINDOW
            waits.append(max(1, math.ceil((unlock - now).total_seconds())))
    return max(waits)


def claim_attempt(username: str, ip: str) -> int:
    """Count this attempt as a failure *before* checking the password; its row id.

    Counting and deciding happen in one transaction that holds the database's
    write lock (SQLite) or an advisory lock (PostgreSQL), so concurrent
    attempts are decided one after another: past the limit they get
    :class:`LockedOut`, however many arrive at once. A successful login
    deletes its row again (:func:`forgive_attempt`).
    """
    db.session.rollback()
    now = utcnow()
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOGIN_LOCK_KEY})
    # The first write takes SQLite's write lock until the commit below.
    db.session.execute(sa.delete(LoginFailure).where(LoginFailure.at <= now - LOCKOUT_WINDOW))
    attempt = LoginFailure(username=_account_key(username), ip=ip[:64], at=now)
    db.session.add(attempt)
    db.session.flush()
    # This attempt is among the rows counted: locked when LOCKOUT_LIMIT others precede it.
    wait = lockout_seconds(username, ip, now, limit=LOCKOUT_LIMIT + 1)
    if wait:
        db.session.rollback()
        raise LockedOut(wait)
    attempt_id = attempt.id
    db.session.commit()
    return attempt_id


def forgive_attempt(attempt_id: int) -> None:
    """The attempt was not a failure: it stops counting (the caller commits).

    A success alone is forgotten at once, so signing in again and again never locks anyone out.
    A success inside a burst (other attempts on the same account or address in the last
    ``SUCCESS_HOLD``) still counts until the hold passes: the attempts racing with it must see
    it, or a right password among the first ones would let one more guess through.
    """
    attempt = db.session.get(LoginFailure, attempt_id)
    if attempt is None:
        return
    now = utcnow()
    racing = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(LoginFailure)
        .where(
            LoginFailure.id != attempt_id,
            LoginFailure.at > now - SUCCESS_HOLD,
            sa.or_(LoginFailure.username == attempt.username, LoginFailure.ip == attempt.ip),
        )
    )
    if not racing:
        db.session.delete(attempt)
        return
    attempt.at = now - LOCKOUT_WINDOW + SUCCESS_HOLD


def authenticate(username: object, password: object, ip: str) -> User:
    """The user these credentials belong to; raises :class:`LockedOut` or :class:`LoginFailed`."""
    username = username if isinstance(username, str) else ""
    password = password if isinstance(password, str) else ""
    attempt_id = claim_attempt(username, ip)
    user = find_user(username) if username.strip() else None
    # verify_password spends the same time on an unknown user as on a wrong password.
    if not verify_password(user.password_hash if user else None, password[:PASSWORD_MAX]):
        raise LoginFailed(GENERIC_LOGIN_ERROR)  # its attempt stays counted
    forgive_attempt(attempt_id)
    if not user.is_active:
        db.session.commit()
        raise LoginFailed("This account is disabled. Ask an administrator to enable it.")
    if password_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = utcnow()
    db.session.commit()
    return user


def end_sessions(user: User) -> None:
    """Invalidate every session and access token of ``user`` (the caller commits)."""
    user.session_version = (user.session_version or 0) + 1


# -- access tokens -----------------------------------------------------------


def issue_access_token(user: User, ttl_seconds: int) -> str:
    """A bearer token for ``user``, stored hashed, tied to its session version."""
    secret = new_secret(ACCESS_TOKEN_PREFIX)
    now = utcnow()
    db.session.execute(sa.delete(AccessToken).where(AccessToken.expires_at <= now))  # keep the table small
    db.session.add(
        AccessToken(
            token_hash=hash_secret(secret),
            user_id=user.id,
            session_version=user.session_version,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_seconds),
        )
    )
    db.session.commit()
    return secret


def user_for_access_token(secret: str) -> User | None:
    """The active user a bearer token belongs to, if it is unexpired and still current."""
    token = db.session.scalar(
        sa.select(AccessToken).where(
            AccessToken.token_hash == hash_secret(secret), AccessToken.expires_at > utcnow()
        )
    )
    if token is None or not token.user.is_active or token.session_version != token.user.session_version:
        return None
    return token.user


# -- registration ------------------------------------------------------------

TOKEN_PROBLEMS = {
    "used": "This registration token has already been used.",
    "revoked": "This registration token has been revoked.",
    "expired": "This registration token has expired. Ask an administrator for a new one.",
}


def _find_token(token_hash: str) -> RegistrationToken | None:
    return db.session.scalar(sa.select(RegistrationToken).where(RegistrationToken.token_hash == token_hash))


def _token_problem(token_hash: str) -> str:
    token = _find_token(token_hash)
    if token is None:
        return "This registration token is not valid."
    return TOKEN_PROBLEMS.get(token.status(), "This registration token cannot be used.")


def invitation_problem(secret: str) -> str | None:
    """Why a sign-up link is spent (used, expired, revoked); ``None`` for a live or unknown one.

    An unknown token keeps the form (a mistyped link can be corrected there); submitting says why.
    """
    token = _find_token(hash_secret(secret.strip()))
    if token is None or token.status() == "active":
        return None
    return TOKEN_PROBLEMS.get(token.status())


def register(token: object, username: object, password: object) -> User:
    """Create an account with a single-use token: one account per token, even under a race."""
    if not isinstance(token, str) or not token.strip():
        raise ServiceError("token is required", "token")
    token_hash = hash_secret(token.strip())
    name = check_username(username)
    password_hash = hash_password(check_password(password))  # slow: before any lock is taken
    db.session.rollback()
    if find_user(name) is not None:
        db.session.rollback()
        raise ServiceError("username: this name is taken", "username")
    db.session.rollback()
    now = utcnow()
    # Claiming the token is the transaction's first statement: it takes the write lock
    # (SQLite) or the row lock (PostgreSQL), so exactly one concurrent sign-up matches.
    claimed = db.session.execute(
        sa.update(RegistrationToken)
        .where(
            RegistrationToken.token_hash == token_hash,
            RegistrationToken.used_at.is_(None),
            RegistrationToken.revoked_at.is_(None),
            RegistrationToken.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        db.session.rollback()
        raise ServiceError(_token_problem(token_hash), "token")
    # The new account is signed in straight away.
    user = User(username=name, password_hash=password_hash, created_at=now, last_login_at=now)
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()  # the token claim goes with it: not burned
        raise ServiceError("username: this name is taken", "username") from None
    db.session.execute(
        sa.update(RegistrationToken)
        .where(RegistrationToken.token_hash == token_hash)
        .values(used_by_id=user.id)
        .execution_options(synchronize_session=False)
    )
    # In the sign-up's own transaction (docs/contract.md §7): the new user is the actor.
    audit.record(user, "user.register", f"user:{user.id}", {"username": user.username})
    db.session.commit()
    return user


def change_password(user: User, current: object, new: object) -> User:
    """Change one's own password; every other session and access token ends."""
    if not isinstance(current, str) or not verify_password(user.password_hash, current[:PASSWORD_MAX]):
        raise ServiceError("current_password: this is not your current password", "current_password")
    user.password_hash = hash_password(check_password(new, "new_password"))
    end_sessions(user)
    # docs/contract.md §16: password changes are audited (never the password or its hash).
    audit.record(user, "user.password_change", f"user:{user.id}", {"sessions_ended": True})
    db.session.commit()
    return user


def create_or_reset_admin(username: object, password: object) -> tuple[User, bool]:
    """Create an administrator, or make an existing user one with a new password."""
    name = check_username(username)
    password_hash = hash_password(check_password(password))
    user = find_user(name)
    created = user is None
    if created:
        user = User(username=name, password_hash=password_hash, is_admin=True, created_at=utcnow())
        db.session.add(user)
        db.session.flush()  # its id, for the audit row
        audit.record(
            None, "user.create", f"user:{user.id}", {"username": name, "is_admin": True, "via": "cli"}
        )
    else:
        changes = audit.diff(user, {"is_admin": True, "is_active": True})
        user.password_hash = password_hash
        user.is_admin = True
        user.is_active = True
        end_sessions(user)
        audit.record(None, "user.password_change", f"user:{user.id}", {**changes, "via": "cli"})
    db.session.commit()
    return user, created
