"""Client addresses: what an address budget is keyed on, and networks as the configuration reads them."""

from __future__ import annotations

import ipaddress

import pytest

from appfactory import config
from appfactory.web.addresses import budget_key, parse, within


@pytest.mark.parametrize(
    ("remote_addr", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),  # IPv4 as it is
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),  # the same /64: the same client
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),  # the next /64: another one
        ("::1", "::/64"),
        ("::ffff:198.51.100.9", "198.51.100.9"),  # IPv4-mapped: the IPv4 client
        ("fe80::1%eth0", "fe80::/64"),
        (None, "unknown"),
        ("", "unknown"),
    ],
)
def test_an_ipv6_client_is_its_64_and_ipv4_is_unchanged(remote_addr, key):
    assert budget_key(remote_addr) == key


def test_a_mapped_address_is_in_the_ipv4_networks():
    loopback = [ipaddress.ip_network("127.0.0.0/8")]
    assert parse("::ffff:127.0.0.1") == ipaddress.ip_address("127.0.0.1")
    assert within(parse("::ffff:127.0.0.1"), loopback)
    assert not within(parse("::1"), loopback)
    assert not within(parse("not an address"), loopback)


def _load(**environ: str) -> dict:
    return config.load(environ)


def test_trusted_proxies_is_a_hop_count_or_a_list_of_networks():
    assert _load()["TRUSTED_PROXIES"] == 0
    assert _load(TRUSTED_PROXIES="2")["TRUSTED_PROXIES"] == 2
    networks = _load(TRUSTED_PROXIES="10.0.0.0/8, 192.168.1.5,fd00::/8")["TRUSTED_PROXIES"]
    assert networks == tuple(map(ipaddress.ip_network, ["10.0.0.0/8", "192.168.1.5/32", "fd00::/8"]))


@pytest.mark.parametrize("value", ["11", "-1", "10.0.0.0/33", "proxy.example.com", "10.0.0.1,"])
def test_a_bad_trusted_proxies_names_both_forms(value):
    with pytest.raises(config.ConfigError) as excinfo:
        _load(TRUSTED_PROXIES=value)
    [problem] = excinfo.value.problems
    assert problem.startswith("TRUSTED_PROXIES must be")
    if not value.lstrip("-").isdigit():
        assert "hop count" in problem and "CIDR" in problem


def test_operator_networks_default_to_loopback_and_the_private_ranges():
    default = _load()["OPS_ALLOW_NETWORKS"]
    for address in ("127.0.0.1", "::1", "10.1.2.3", "172.20.0.5", "192.168.0.9", "fd12::1"):
        assert within(parse(address), default), address
    for address in ("203.0.113.7", "2001:db8::1", "172.32.0.1"):
        assert not within(parse(address), default), address
    assert _load(OPS_ALLOW_NETWORKS="198.51.100.0/24")["OPS_ALLOW_NETWORKS"] == (
        ipaddress.ip_network("198.51.100.0/24"),
    )
    with pytest.raises(config.ConfigError, match="OPS_ALLOW_NETWORKS must be"):
        _load(OPS_ALLOW_NETWORKS="everyone")
