"""Client IP resolution behind proxies and whitelist matching (docs/contract.md §4 rule 2)."""

from __future__ import annotations

import ipaddress

import pytest

from common.network import (
    Whitelist,
    WhitelistRule,
    network_text,
    normalise_network,
    parse_ip,
    resolve_client_ip,
)

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("10.0.0.5", "10.0.0.5"),
        (" 10.0.0.5 ", "10.0.0.5"),
        ("10.0.0.5/24", "10.0.0.0/24"),
        ("10.0.0.5/32", "10.0.0.5"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
        ("2001:db8::1/32", "2001:db8::/32"),
        ("2001:DB8::1", "2001:db8::1"),
    ],
)
def test_it_normalises_whitelist_entries(raw, stored):
    assert network_text(normalise_network(raw)) == stored


@pytest.mark.parametrize("raw", ["", "10.0.0", "10.0.0.1/33", "example.com", "10.0.0.1/x", "2001:db8::/129"])
def test_it_refuses_what_is_not_an_address(raw):
    with pytest.raises(ValueError):
        normalise_network(raw)


def test_the_peer_is_the_client_when_it_is_not_a_trusted_proxy():
    assert resolve_client_ip("203.0.113.9", "10.1.1.1", TRUSTED) == parse_ip("203.0.113.9")


def test_a_trusted_proxy_hands_over_the_rightmost_untrusted_hop():
    chain = "198.51.100.1, 203.0.113.7, 10.0.0.2"
    assert resolve_client_ip("10.0.0.1", chain, TRUSTED) == parse_ip("203.0.113.7")


def test_a_chain_of_only_trusted_hops_gives_the_leftmost():
    assert resolve_client_ip("10.0.0.1", "10.9.9.9, 10.0.0.3", TRUSTED) == parse_ip("10.9.9.9")


def test_garbage_in_forwarded_for_is_not_believed():
    assert resolve_client_ip("10.0.0.1", "not-an-ip, 10.0.0.3", TRUSTED) == parse_ip("10.0.0.3")


def test_mapped_ipv6_peers_count_as_ipv4():
    assert resolve_client_ip("::ffff:192.0.2.1", None, ()) == ipaddress.ip_address("192.0.2.1")


def test_the_most_specific_whitelist_entry_wins():
    whitelist = Whitelist(
        [
            WhitelistRule(1, normalise_network("10.0.0.0/8"), 5),
            WhitelistRule(2, normalise_network("10.1.0.0/16"), 4),
            WhitelistRule(3, normalise_network("10.1.2.3"), 0),
            WhitelistRule(4, normalise_network("2001:db8::/32"), 2),
        ]
    )
    assert whitelist.match(parse_ip("10.1.2.3")).id == 3
    assert whitelist.match(parse_ip("10.1.9.9")).id == 2
    assert whitelist.match(parse_ip("10.200.0.1")).id == 1
    assert whitelist.match(parse_ip("::ffff:10.1.2.3")).id == 3
    assert whitelist.match(parse_ip("2001:db8:1::5")).id == 4
    assert whitelist.match(parse_ip("192.168.1.1")) is None
    assert whitelist.match(None) is None
