"""Who is asking: the classification rules of docs/contract.md §4, in one pure function.

Callers resolve nothing themselves: they pass the raw header values, the
resolved client IP and lookup callables (backed by a cache in the gateway).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from common.network import IPAddress, Whitelist
from common.policies import Policy
from common.security import API_KEY_PREFIX, hash_secret, looks_like_api_key


class RequestSource(StrEnum):
    """The three kinds of client, in the header ``X-Seadragon-Source``."""

    DIRECT_API = "direct_api"
    CUSTOM_APP = "custom_app"
    WEB_CHAT = "web_chat"


class ClassificationError(Exception):
    """The request is refused before it is queued; ``status`` says how."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Credentials:
    """What the request presented: an API key, a user access token, or neither."""

    api_key: str | None = None
    user_token: str | None = None


@dataclass(frozen=True)
class KeyInfo:
    """An active API key as the classifier sees it."""

    id: int
    priority: int
    name: str = ""
    end_user_header: str | None = None  # names the person behind a shared key (README "End users")
    owner_id: int | None = None  # a personal key's user (docs/contract.md §14); None: an admin's key


@dataclass(frozen=True)
class UserInfo:
    """An active user as the classifier sees it."""

    id: int
    username: str
    is_admin: bool


@dataclass(frozen=True)
class Identity:
    """The outcome: source, base priority and who it is."""

    source: RequestSource
    priority: int
    api_key_id: int | None = None
    whitelist_entry_id: int | None = None
    user_id: int | None = None
    is_admin: bool = False
    label: str = ""
    policy: Policy = Policy()  # docs/contract.md §7; attached from the gateway's identity cache
    end_user_header: str | None = None  # the key's header naming the person behind it
    end_user: str | None = None  # that header's value on this request (None: the key itself)
    # A personal key's own policy (docs/contract.md §14): checked besides its owner's ``policy``.
    key_policy: Policy = Policy()

    @property
    def holder(self) -> str:
        """Who holds the policy and its counters: ``key:3`` (not per end user), ``ip:7``, ``user:12``.

        A personal key's holder is its owner: the user's limits and fair share count the user's
        chat and all the user's keys together (docs/contract.md §14).
        """
        subjects = subjects_of(self.api_key_id, self.whitelist_entry_id, self.user_id)
        return subjects[0] if subjects else ""

    @property
    def limit_subjects(self) -> tuple[tuple[str, Policy], ...]:
        """Every policy that bounds this identity's requests, with whose counters it uses (all must allow).

        The :attr:`holder`'s (a personal key's owner, docs/contract.md §14), then a personal key's own.
        """
        subjects = [(self.holder, self.policy)] if self.holder else []
        if self.key_holder is not None:
            subjects.append((self.key_holder, self.key_policy))
        return tuple(subjects)

    @property
    def key_holder(self) -> str | None:
        """``key:<id>`` of a personal key, whose own policy applies too; ``None`` for anything else."""
        subjects = subjects_of(self.api_key_id, self.whitelist_entry_id, self.user_id)
        return subjects[1] if len(subjects) > 1 else None

    @property
    def who(self) -> str:
        """Who shares fair share (docs/contract.md §8, §13): the :attr:`holder`, or
        ``key:3/end-user:alice`` for a person named through the key's ``end_user_header``."""
        holder = self.holder
        return (
            holder
            if self.end_user is None or self.api_key_id is None
            else f"{holder}/end-user:{self.end_user}"
        )


def who_of(
    api_key_id: int | None = None, whitelist_entry_id: int | None = None, user_id: int | None = None
) -> str | None:
    """``key:<id>``, ``ip:<whitelist entry id>`` or ``user:<id>`` (an identity or a request-log row)."""
    if api_key_id is not None:
        return f"key:{api_key_id}"
    if whitelist_entry_id is not None:
        return f"ip:{whitelist_entry_id}"
    if user_id is not None:
        return f"user:{user_id}"
    return None


def subjects_of(
    api_key_id: int | None = None, whitelist_entry_id: int | None = None, user_id: int | None = None
) -> list[str]:
    """Whose limits a request counts against: the identity first, then a personal key's own.

    A row (or identity) with both a key and a user is a personal key's (docs/contract.md §14):
    ``["user:12", "key:3"]``. Anything else has one subject, :func:`who_of`'s, or none.
    """
    if api_key_id is not None and user_id is not None:
        return [f"user:{user_id}", f"key:{api_key_id}"]
    who = who_of(api_key_id, whitelist_entry_id, user_id)
    return [] if who is None else [who]


CREDENTIAL_HEADERS = ("X-API-Key", "Authorization")


def single_credential(values: Sequence[str] | None, header: str) -> str | None:
    """The one value of a credential header; given twice it is ambiguous → 400.

    Servers and proxies disagree on which of two values counts (the first,
    the last, both joined with commas, as WSGI does): refusing leaves nothing
    to disagree about. Keys and bearer tokens never contain a comma.
    """
    if not values:
        return None
    if len(values) > 1 or "," in values[0]:
        raise ClassificationError(400, f"the {header} header is given more than once")
    return values[0]


def parse_credentials(x_api_key: str | None, authorization: str | None) -> Credentials:
    """Read ``X-API-Key`` and ``Authorization: Bearer``; conflicting values → 400."""
    header_key = (x_api_key or "").strip() or None
    bearer = None
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            bearer = value.strip()
    if bearer is not None and bearer.startswith(API_KEY_PREFIX):
        if header_key is not None and header_key != bearer:
            raise ClassificationError(400, "X-API-Key and Authorization carry different keys")
        return Credentials(api_key=bearer)
    if header_key is not None:
        # A user token in Authorization beside a key in X-API-Key is two
        # identities at once: refuse rather than guess which one is meant.
        if bearer is not None:
            raise ClassificationError(400, "X-API-Key and Authorization carry different credentials")
        return Credentials(api_key=header_key)
    return Credentials(user_token=bearer)


def classify(
    credentials: Credentials,
    client_ip: IPAddress | None,
    origin: str | None,
    *,
    find_key: Callable[[str], KeyInfo | None],
    whitelist: Whitelist,
    find_token_user: Callable[[str], UserInfo | None],
    session_user: UserInfo | None,
    allowed_origins: Collection[str],
    direct_priority: int,
    webchat_priority: int,
) -> Identity:
    """Apply docs/contract.md §4's rules in order; raise :class:`ClassificationError` to refuse.

    ``find_key`` and ``find_token_user`` take the SHA-256 of the secret.
    """
    if credentials.api_key is not None:
        key = find_key(hash_secret(credentials.api_key)) if looks_like_api_key(credentials.api_key) else None
        if key is None:
            raise ClassificationError(401, "invalid or revoked API key")
        return Identity(
            RequestSource.CUSTOM_APP,
            key.priority,
            api_key_id=key.id,
            user_id=key.owner_id,  # a personal key's identity is its owner (docs/contract.md §14)
            label=key.name,
            end_user_header=key.end_user_header,
        )

    if origin and origin.lower().rstrip("/") not in allowed_origins:
        raise ClassificationError(403, "origin not allowed")

    rule = whitelist.match(client_ip)
    if rule is not None:
        priority = rule.priority if rule.priority is not None else direct_priority
        return Identity(RequestSource.DIRECT_API, priority, whitelist_entry_id=rule.id, label=str(client_ip))

    user = None
    if credentials.user_token is not None:
        user = find_token_user(hash_secret(credentials.user_token))
        if user is None:
            raise ClassificationError(401, "invalid or expired access token")
    else:
        user = session_user
    if user is not None:
        return Identity(
            RequestSource.WEB_CHAT,
            webchat_priority,
            user_id=user.id,
            is_admin=user.is_admin,
            label=user.username,
        )
    raise ClassificationError(401, "authentication required: an API key, a whitelisted IP or a login")


def with_end_user(identity: Identity, header_value: Callable[[str], str | None], max_length: int) -> Identity:
    """The identity with the person its key's ``end_user_header`` names (README "End users").

    A key without the option ignores the header; absent or blank → the key itself; a value
    longer than ``max_length`` or not printable → 400.
    """
    header = identity.end_user_header
    if header is None:
        return identity
    value = (header_value(header) or "").strip()
    if not value:
        return identity
    if len(value) > max_length or not value.isprintable():
        raise ClassificationError(
            400, f"the {header} header must be printable text of at most {max_length} characters"
        )
    return replace(identity, end_user=value)
