"""Client-IP resolution behind trusted proxies, and whitelist matching."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# ASCII hex digits, dots and colons only: ``int()`` and ``ipaddress`` accept
# other scripts' digits (``٨`` is 8), which must never reach them.
_ADDRESS_TEXT = re.compile(r"[0-9A-Fa-f:.]+")
_PREFIX_TEXT = re.compile(r"[0-9]{1,3}")


def parse_ip(value: str | None, *, allow_zone: bool = False) -> IPAddress | None:
    """Parse an address written in ASCII (IPv6 brackets and ``::ffff:`` mapping handled).

    A zone id (``fe80::1%eth0``) is refused unless ``allow_zone``: only a
    socket's own peer address may carry one, and it is dropped then.
    """
    if not value:
        return None
    text = value.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    if "%" in text:
        if not allow_zone:
            return None
        text = text.split("%", 1)[0]
    if not _ADDRESS_TEXT.fullmatch(text):
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def normalise_network(value: str) -> IPNetwork:
    """Parse an IP or CIDR for the whitelist; host bits of a CIDR are cleared.

    Raises ``ValueError`` with a message fit for a form field.
    """
    text = (value or "").strip()
    if not text:
        raise ValueError("Enter an IP address or CIDR.")
    address_part, slash, prefix = text.partition("/")
    address = parse_ip(address_part)
    if address is None:
        raise ValueError(f"{value!r} is not a valid IPv4 or IPv6 address.")
    if not slash:
        return ipaddress.ip_network(address)
    mapped = address_part.strip().lower().startswith("::ffff:") and address.version == 4
    if not _PREFIX_TEXT.fullmatch(prefix.strip()):
        raise ValueError(f"{prefix!r} is not a valid prefix length.")
    bits = int(prefix)
    if mapped:
        bits -= 96  # ::ffff:10.0.0.0/104 is 10.0.0.0/8
    try:
        return ipaddress.ip_network(f"{address}/{bits}", strict=False)
    except ValueError:
        raise ValueError(f"/{prefix} is not a valid prefix length for this address.") from None


def network_text(network: IPNetwork) -> str:
    """How a whitelist entry is stored and shown: a bare IP for single hosts."""
    if network.num_addresses == 1:
        return str(network.network_address)
    return str(network)


def resolve_client_ip(
    peer: str | None, forwarded_for: str | None, trusted: Sequence[IPNetwork]
) -> IPAddress | None:
    """The client's address: the socket peer, or behind trusted proxies the
    rightmost ``X-Forwarded-For`` hop that is not itself a trusted proxy."""
    address = parse_ip(peer, allow_zone=True)
    if address is None or not forwarded_for or not in_any(address, trusted):
        return address
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        hop_address = parse_ip(hop)
        if hop_address is None:
            # Garbage in the chain: stop believing it at the last good hop.
            return address
        address = hop_address
        if not in_any(hop_address, trusted):
            return hop_address
    return address


def in_any(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    """Whether ``address`` lies in one of ``networks``."""
    return any(address.version == net.version and address in net for net in networks)


@dataclass(frozen=True)
class WhitelistRule:
    """One whitelist entry as the matcher needs it."""

    id: int
    network: IPNetwork
    priority: int


class Whitelist:
    """Matches addresses against entries; the most specific entry wins."""

    def __init__(self, rules: Iterable[WhitelistRule]) -> None:
        self._rules = sorted(rules, key=lambda r: -r.network.prefixlen)
        self._exact = {r.network.network_address: r for r in self._rules if r.network.num_addresses == 1}

    def match(self, address: IPAddress | None) -> WhitelistRule | None:
        """The entry that admits ``address``, or ``None``."""
        if address is None:
            return None
        rule = self._exact.get(address)
        if rule is not None:
            return rule
        for rule in self._rules:
            if rule.network.version == address.version and address in rule.network:
                return rule
        return None

    def __len__(self) -> int:
        return len(self._rules)

    def __iter__(self) -> Iterator[WhitelistRule]:
        return iter(self._rules)
