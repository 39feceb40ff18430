"""Which addresses a webhook may reach: checked on resolved addresses."""

from __future__ import annotations

import pytest

from tests.support.clock import FakeClock
from tidings.notify.addresses import (
    AddressPolicy,
    RefusedAddress,
    RefusedResolution,
    getaddrinfo,
    literal_addresses,
)

DEFAULT = AddressPolicy()


@pytest.mark.parametrize("address", [
    "169.254.169.254", "fd00:ec2::254", "127.0.0.1", "127.1.2.3", "::1", "10.0.0.1",
    "172.16.5.4", "192.168.1.1", "100.64.0.1", "0.0.0.0", "::", "fe80::1", "224.0.0.1",
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:7f00:1::",
    # cloud metadata and platform services
    "168.63.129.16", "100.100.100.200", "192.0.0.192", "::ffff:168.63.129.16",
])
def test_internal_addresses_are_refused_by_default(address):
    assert DEFAULT.refusal(address) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address):
    assert DEFAULT.refusal(address) is None


def test_allow_list_opens_a_range_and_deny_list_wins():
    policy = AddressPolicy(allow=["127.0.0.1/32", "10.0.0.0/8"], deny=["10.9.0.0/16"])
    assert policy.refusal("127.0.0.1") is None
    assert policy.refusal("::ffff:127.0.0.1") is None  # the same host
    assert policy.refusal("127.0.0.2") is not None
    assert policy.refusal("10.1.1.1") is None
    assert "denied" in policy.refusal("10.9.1.1")
    assert AddressPolicy(deny=["8.8.8.0/24"]).refusal("8.8.8.8") is not None


def test_bad_network_in_settings():
    with pytest.raises(ValueError):
        AddressPolicy(allow=["not-a-network"])


async def test_names_are_checked_after_resolution():
    with pytest.raises(RefusedAddress, match="localhost resolves to"):
        await DEFAULT.resolve("localhost", 80)
    allowed = AddressPolicy(allow=["127.0.0.0/8", "::1/128"])
    assert "127.0.0.1" in await allowed.resolve("localhost", 80)
    with pytest.raises(RefusedAddress):
        await DEFAULT.resolve("169.254.169.254", 80)
    with pytest.raises(RefusedAddress):
        await DEFAULT.resolve("[fd00:ec2::254]", 80)


def test_metadata_services_are_named_in_the_refusal():
    # Even where an operator allows the wider range around them.
    policy = AddressPolicy(allow=["100.64.0.0/10"])
    assert "100.100.100.200/32" in policy.refusal("100.100.100.200")
    assert policy.refusal("100.64.0.1") is None
    assert "168.63.129.16/32" in DEFAULT.refusal("168.63.129.16")
    # Naming the address itself opens it.
    assert AddressPolicy(allow=["169.254.169.254/32"]).refusal("169.254.169.254") is None


@pytest.mark.parametrize("host,addresses", [
    ("127.0.0.1", ["127.0.0.1"]), ("[::1]", ["::1"]), ("127.1", ["127.0.0.1"]),
    ("2130706433", ["127.0.0.1"]), ("0x7f.0.0.1", ["127.0.0.1"]),
    ("0251.0376.0251.0376", ["169.254.169.254"]),
    ("localhost", ["127.0.0.1", "::1"]), ("LOCALHOST.", ["127.0.0.1", "::1"]),
    ("api.localhost", ["127.0.0.1", "::1"]),
    ("example.com", []), ("fake", []), ("trigger.me", []), ("1.de", []), ("10.in-addr", []),
])
def test_literal_addresses_need_no_dns(host, addresses):
    assert literal_addresses(host) == addresses


def test_literal_refusal_judges_only_what_the_host_spells():
    assert "169.254" in DEFAULT.literal_refusal("169.254.169.254")
    assert DEFAULT.literal_refusal("2130706433") is not None
    assert DEFAULT.literal_refusal("localhost") is not None
    assert DEFAULT.literal_refusal("8.8.8.8") is None
    assert DEFAULT.literal_refusal("fake") is None  # a name: judged at send time
    # localhost passes when loopback (either family) is allowed.
    assert AddressPolicy(allow=["127.0.0.1/32"]).literal_refusal("localhost") is None


async def test_a_name_resolving_to_refused_addresses_is_worth_a_retry():
    # A name's DNS may change; an address never will.
    with pytest.raises(RefusedResolution):
        await DEFAULT.resolve("localhost", 80)
    with pytest.raises(RefusedAddress) as info:
        await DEFAULT.resolve("127.0.0.1", 80)
    assert not isinstance(info.value, RefusedResolution)


async def test_unresolvable_name_is_an_oserror_worth_a_retry():
    with pytest.raises(OSError):
        await DEFAULT.resolve("no-such-host.invalid", 80)


class CountingResolver:
    """The real resolver, counting its lookups."""

    def __init__(self) -> None:
        self.lookups = 0

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups += 1
        return await getaddrinfo(host, port)


async def test_a_name_is_looked_up_again_only_after_the_cache_time():
    clock, resolver = FakeClock(), CountingResolver()
    policy = AddressPolicy(allow=["127.0.0.0/8", "::1/128"], cache_seconds=5,
                           clock=clock, resolver=resolver)
    first = await policy.resolve("localhost", 80)
    clock.advance(4.9)
    assert await policy.resolve("localhost", 80) == first
    assert resolver.lookups == 1
    clock.advance(0.2)
    await policy.resolve("localhost", 80)
    assert resolver.lookups == 2


async def test_cached_addresses_are_still_checked_at_every_send():
    # Allowed or not, the verdict follows the policy's lists, cache or no.
    clock, resolver = FakeClock(), CountingResolver()
    policy = AddressPolicy(cache_seconds=5, clock=clock, resolver=resolver)
    for _ in range(3):
        with pytest.raises(RefusedAddress, match="localhost resolves to"):
            await policy.resolve("localhost", 80)
    assert resolver.lookups == 1


async def test_a_failed_lookup_is_not_cached():
    resolver = CountingResolver()
    policy = AddressPolicy(resolver=resolver, clock=FakeClock())
    for _ in range(2):
        with pytest.raises(OSError):
            await policy.resolve("no-such-host.invalid", 80)
    assert resolver.lookups == 2


async def test_literals_need_no_lookup():
    resolver = CountingResolver()
    policy = AddressPolicy(allow=["127.0.0.1/32"], resolver=resolver)
    assert await policy.resolve("127.0.0.1", 80) == ["127.0.0.1"]
    assert len(await policy.resolve("[::ffff:127.0.0.1]", 80)) == 1  # the same host
    with pytest.raises(RefusedAddress):
        await policy.resolve("[::1]", 80)
    assert resolver.lookups == 0
