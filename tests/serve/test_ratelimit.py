import ipaddress

import pytest

from cors_handler.serve.ratelimit import (
    MALFORMED_CLIENT,
    ClientIdentifier,
    ClientKey,
    RateLimiter,
    describe_client,
    retry_after_seconds,
)

from ..conftest import FakeClock as Clock


def hit(limiter: RateLimiter, client: ClientKey) -> float:
    """One request of ``client``, as the pipeline takes it: locate, then hit."""
    return limiter.hit_located(*limiter.locate(client))


def client_key(ids: ClientIdentifier, peer: str | None, forwarded: bytes | None) -> ClientKey | None:
    """The bucket key the pipeline uses: X-Forwarded-For's item when it decides, else the peer."""
    decided, client = ids.forwarded_key(forwarded)
    return client if decided else ids.peer_key(peer)


def test_burst_then_refill_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(average=60, period=60, burst=5, max_clients=10, clock=clock)
    assert [hit(limiter, "a") for _ in range(5)] == [0.0] * 5
    wait = hit(limiter, "a")
    assert wait == pytest.approx(1.0)  # one token per second
    assert retry_after_seconds(wait) == 1
    clock.now += 0.5
    assert hit(limiter, "a") == pytest.approx(0.5)
    clock.now += 0.5
    assert hit(limiter, "a") == 0.0  # exactly one token came back
    assert hit(limiter, "a") > 0
    clock.now += 60
    assert [hit(limiter, "a") for _ in range(5)] == [0.0] * 5  # full again, never more than burst
    assert hit(limiter, "a") > 0


def test_seed_production_values() -> None:
    clock = Clock()
    limiter = RateLimiter(average=1200, period=60, burst=300, max_clients=10, clock=clock)
    assert sum(hit(limiter, "c") == 0.0 for _ in range(400)) == 300
    clock.now += 1.0  # 20 tokens per second
    assert sum(hit(limiter, "c") == 0.0 for _ in range(100)) == 20


def test_retry_after_rounds_up_to_whole_seconds() -> None:
    clock = Clock()
    limiter = RateLimiter(average=1, period=90, burst=1, max_clients=10, clock=clock)
    assert hit(limiter, "a") == 0.0
    wait = hit(limiter, "a")
    assert wait == pytest.approx(90)
    clock.now += 89.2
    assert retry_after_seconds(hit(limiter, "a")) == 1
    assert retry_after_seconds(0.0001) == 1
    assert retry_after_seconds(2.01) == 3


def test_clients_are_independent() -> None:
    limiter = RateLimiter(average=60, period=60, burst=2, max_clients=10, clock=Clock())
    assert hit(limiter, "a") == 0.0 and hit(limiter, "a") == 0.0 and hit(limiter, "a") > 0
    assert hit(limiter, "b") == 0.0


def test_table_is_bounded_and_evicts_least_recently_seen() -> None:
    clock = Clock()
    limiter = RateLimiter(average=60, period=60, burst=1, max_clients=1000, clock=clock)
    hit(limiter, "hot")
    for i in range(200_000):
        hit(limiter, f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
        if i % 400 == 0:
            assert hit(limiter, "hot") > 0  # still tracked, still limited: seen within a generation survives
        assert len(limiter) <= 1000
    assert 500 <= len(limiter) <= 1000  # two generations of at most 500
    hit(limiter, "cold")
    for i in range(1000):  # two full generations of new clients later, "cold" is forgotten
        hit(limiter, f"11.0.{i >> 8 & 255}.{i & 255}")
    assert hit(limiter, "cold") == 0.0


@pytest.mark.parametrize(
    ("depth", "forwarded", "expected"),
    [
        (0, b"1.1.1.1", "127.0.0.1"),  # depth 0: the TCP peer, header ignored
        (1, b"1.1.1.1, 2.2.2.2", "2.2.2.2"),  # rightmost, as Traefik's depth=1
        (2, b"1.1.1.1, 2.2.2.2", "1.1.1.1"),
        (3, b"1.1.1.1, 2.2.2.2", "127.0.0.1"),  # shorter than depth: the peer
        (1, None, "127.0.0.1"),
        (1, b"2001:DB8::1", "2001:db8::1"),  # IPv6, normalized
        (1, b"[2001:db8::1]:443", "2001:db8::1"),
        (1, b"203.0.113.9:5555", "203.0.113.9"),
        (1, b"not-an-ip", MALFORMED_CLIENT),
        (1, b"x" * 10_000, MALFORMED_CLIENT),
        (1, b"1.1.1.1," + b"," * 5000, MALFORMED_CLIENT),
    ],
    ids=[
        "depth-0-tcp-peer",
        "depth-1-rightmost",
        "depth-2-second-from-right",
        "shorter-than-depth-tcp-peer",
        "no-header-tcp-peer",
        "ipv6-normalized",
        "ipv6-bracketed-with-port",
        "ipv4-with-port",
        "not-an-ip",
        "oversized-value",
        "thousands-of-empty-items",
    ],
)
def test_client_identity(depth: int, forwarded: bytes | None, expected: str) -> None:
    key = client_key(ClientIdentifier(depth, ()), "127.0.0.1", forwarded)
    assert key is not None and describe_client(key) == expected


def test_keys_are_compact_ints_and_the_two_families_never_share_a_bucket() -> None:
    ids = ClientIdentifier(1, ())
    v4, v6 = client_key(ids, "127.0.0.1", b"1.2.3.4"), client_key(ids, "127.0.0.1", b"::102:304")  # same 32 low bits
    assert isinstance(v4, int) and isinstance(v6, int) and v4 != v6
    assert (describe_client(v4), describe_client(v6)) == ("1.2.3.4", "::102:304")


def test_excluded_cidrs_are_never_limited() -> None:
    ids = ClientIdentifier(1, (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")))
    assert client_key(ids, "127.0.0.1", b"10.2.3.4") is None
    assert client_key(ids, "127.0.0.1", b"2001:db8::7") is None
    assert client_key(ids, "127.0.0.1", b"11.0.0.1") == int(ipaddress.ip_address("11.0.0.1"))
    assert client_key(ClientIdentifier(0, (ipaddress.ip_network("127.0.0.1/32"),)), "127.0.0.1", None) is None


def test_classification_cache_is_bounded() -> None:
    ids = ClientIdentifier(1, (), cache_size=64)
    for i in range(10_000):
        client_key(ids, "127.0.0.1", f"10.0.{i >> 8 & 255}.{i & 255}".encode())
    assert ids._classify.cache_info().currsize == 64


def test_table_memory_is_fixed_whatever_the_flood() -> None:
    # a flood of new IPv4, IPv6 and malformed-client keys: the arrays never grow, the count stays bounded
    limiter = RateLimiter(average=60, period=60, burst=2, max_clients=1000, clock=Clock())
    size = limiter.table_bytes()
    assert size == 32 * 1001
    for i in range(50_000):
        hit(limiter, i * 7919 % (1 << 32))
        hit(limiter, (1 << 128) + i * 104729)
        hit(limiter, f"key-{i}")
        assert len(limiter) <= 1000
    assert limiter.table_bytes() == size
    assert {len(limiter._young_keys), len(limiter._old_keys)} == {1001}


def test_a_new_generation_reuses_the_dropped_arrays_cleared() -> None:
    """The four arrays are allocated once: the generation dropped becomes the new young one, all zero."""
    limiter = RateLimiter(average=60, period=60, burst=1, max_clients=10, clock=Clock())
    arrays = {id(a) for a in (limiter._young_keys, limiter._young_tats, limiter._old_keys, limiter._old_tats)}
    for client in range(1, 40):  # several generation changes
        assert hit(limiter, client) == 0.0
    now = {id(a) for a in (limiter._young_keys, limiter._young_tats, limiter._old_keys, limiter._old_tats)}
    assert now == arrays
    young = len(limiter) - limiter._old_count
    assert sum(1 for key in limiter._young_keys if key) == young  # nothing left over from a dropped generation
    assert sum(1 for tat in limiter._young_tats if tat) == young
    assert hit(limiter, 1) == 0.0  # a client of a dropped generation starts afresh (burst 1: it was limited)
    assert hit(limiter, 39) > 0  # one of the young generation is still limited


def test_ipv6_and_string_keys_get_their_own_buckets() -> None:
    # addresses equal modulo 2**61 - 1 (what Python's int hash folds) and an IPv6 address
    # whose low 32 bits are an IPv4 key still have buckets of their own
    limiter = RateLimiter(average=60, period=60, burst=1, max_clients=100, clock=Clock())
    v6 = (1 << 128) + (1 << 100)
    for key in (v6, v6 + (1 << 61) - 1, (1 << 128) + 5, 5, "a", "b"):
        assert hit(limiter, key) == 0.0, key
        assert hit(limiter, key) > 0, key


def test_a_limited_client_stays_limited_across_a_generation_change() -> None:
    limiter = RateLimiter(average=60, period=60, burst=1, max_clients=10, clock=Clock())
    hit(limiter, 1)
    for other in range(100, 104):  # fills the young generation: client 1 moves to the old one
        hit(limiter, other)
    assert hit(limiter, 1) > 0  # found in the old generation, moved back to the young one
    assert len(limiter) == 5
    for other in range(200, 205):
        hit(limiter, other)
    assert hit(limiter, 1) > 0
