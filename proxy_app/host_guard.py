"""A keyless request from a whitelisted address must name this server in ``Host`` (docs/contract.md §16).

DNS rebinding: a page on ``evil.example`` whose name is made to resolve to
the gateway can have a browser on a whitelisted machine send it requests,
which the whitelist would serve with no credential at all. The browser still
says ``Host: evil.example``, so, as Ollama guards itself (``allowedHost`` and
``allowedHostsMiddleware`` in ollama ``server/routes.go``), such a request
must name this server: a name from ``PUBLIC_URL``, the listen address
``HOST``, ``localhost`` (and ``*.localhost``), the machine's host name, a
``.local`` or ``.internal`` name, or an IP literal (a page cannot rebind an
address; Ollama accepts the private ones), with any port. Key holders and
users are unaffected: a rebinding page holds neither credential.
"""

from __future__ import annotations

import ipaddress
import socket
from functools import cache
from urllib.parse import urlsplit

from common.settings import Settings
from common.sources import Identity
from proxy_app.classify import Principal
from proxy_app.errors import Forbidden

LOCAL_SUFFIXES = (".localhost", ".local", ".internal")  # as Ollama's allowedHost


def host_name(header: str) -> str:
    """The name in a ``Host`` header: no port, no IPv6 brackets, lower case, no trailing dot."""
    host = header.strip()
    if host.startswith("["):
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return host.lower().rstrip(".")


@cache
def own_names(public_url: str | None, listen_host: str) -> frozenset[str]:
    """The names this server answers to: its ``PUBLIC_URL`` host, ``HOST``, localhost and its host name."""
    names = {"localhost", host_name(listen_host), host_name(socket.gethostname())}
    if public_url:
        names.add(host_name(urlsplit(public_url).netloc.rpartition("@")[2]))
    return frozenset(names - {""})


def names_this_server(header: str | None, settings: Settings) -> bool:
    """Whether a ``Host`` header names this server (an absent one does, as in Ollama)."""
    host = host_name(header or "")
    if not host or host in own_names(settings.public_url, settings.host) or host.endswith(LOCAL_SUFFIXES):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_host(identity: Identity, principal: Principal, header: str | None, settings: Settings) -> None:
    """403 for a keyless whitelisted request whose ``Host`` names another server."""
    keyless = principal.credentials.user_token is None and principal.session_reference is None
    if identity.whitelist_entry_id is None or not keyless or names_this_server(header, settings):
        return
    shown = (header or "")[:100]
    raise Forbidden(
        f"Host '{shown}' does not name this server: a request from a whitelisted address without a key"
        " must use this server's name or address (docs/contract.md §16)"
    )
