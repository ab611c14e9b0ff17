"""The response cache and the head memo, driven through the pipeline's own miss path (``Runtime.answer``)."""

import pytest

from cors_handler.cors.limits import MAX_CACHED_KEY_BYTES, SEEN_BITS_PER_ENTRY
from cors_handler.cors.model import Policy
from cors_handler.serve.cache import HeadMemo, ResponseCache
from cors_handler.serve.pipeline import Runtime
from cors_handler.serve.responses import Response

from ..conftest import make_policy


def unlimited(**overrides: object) -> Policy:
    return make_policy(rate_limit={"enabled": False}, **overrides)


def ask(runtime: Runtime, origin: bytes, method: bytes = b"GET", request_headers: bytes = b"") -> Response:
    """One preflight through the runtime's steps (classify, cache, decide on a miss)."""
    headers = [(b"origin", origin), (b"access-control-request-method", method)]
    if request_headers:
        headers.append((b"access-control-request-headers", request_headers))
    return runtime.answer("/", headers, None)[1]


def cached(runtime: Runtime, origin: bytes, method: bytes = b"GET") -> bool:
    return (runtime.policy.default, origin, method, b"", False) in runtime.cache


def test_cache_is_bounded_lru_under_adversarial_keys() -> None:
    runtime = Runtime(unlimited(allow_origins=["https://a.com"], cache_size=100))
    for i in range(5000):
        ask(runtime, f"https://evil{i}.com".encode(), b"GET", b"x-%d" % i)
        assert runtime.cache.stats()[2] <= 100
    assert runtime.cache.stats() == (0, 5000, 100)
    # a full cache stores a key on its second miss (or its first, on one of the admission filter's rare false
    # positives, which depend on the hash seed); it then survives a flood of one-off keys
    ask(runtime, b"https://a.com")
    for i in range(99):
        ask(runtime, b"https://a.com")
        ask(runtime, f"https://flood{i}.com".encode())
    assert runtime.cache.stats()[0] in (98, 99)


def test_oversized_keys_are_answered_but_not_cached() -> None:
    runtime = Runtime(unlimited(allow_origins=["https://a.com"], allow_headers=["*"], environment="development"))
    big = b",".join(b"x-long-header-name-%d" % i for i in range(90))  # under the 100-name cap
    assert len(big) > MAX_CACHED_KEY_BYTES
    assert ask(runtime, b"https://a.com", b"GET", big).status == 204
    assert runtime.cache.stats() == (0, 1, 0)


def test_cached_response_identical_to_fresh() -> None:
    runtime = Runtime(unlimited(allow_origins=["https://a.com"]))
    first = ask(runtime, b"https://a.com", b"PUT", b"content-type")
    second = ask(runtime, b"https://a.com", b"PUT", b"content-type")
    assert first is second
    assert runtime.cache.stats() == (1, 1, 1)


@pytest.mark.parametrize(
    "flood_origin",
    [pytest.param("https://r{n}.attacker.test", id="refused-origins"),
     pytest.param("https://r{n}.a.com", id="allowed-wildcard-subdomains")],
)  # fmt: skip
def test_flood_of_one_off_keys_does_not_evict_recurring_traffic(flood_origin: str) -> None:
    # 200 recurring keys, each reused only after 50 x 200 = 10,000 one-off keys: ten times
    # the cache's size, so a plain LRU would have evicted every one of them (0 % hits).
    runtime = Runtime(unlimited(allow_origins=["https://a.com", "https://*.a.com"], cache_size=1000))
    cache = runtime.cache
    steady = [f"https://s{i}.a.com".encode() for i in range(200)]
    flood = steady_requests = steady_hits = 0
    for round_ in range(10):
        for origin in steady:
            hits_before = cache.stats()[0]
            ask(runtime, origin, b"PUT")
            if round_ >= 2:  # a key is stored at the latest on its second miss
                steady_requests += 1
                steady_hits += cache.stats()[0] - hits_before
            for _ in range(50):
                ask(runtime, flood_origin.format(n=flood).encode(), b"PUT")
                flood += 1
            assert cache.stats()[2] <= 1000
    assert steady_hits / steady_requests >= 0.99
    assert cache.stats()[2] == 1000


def test_a_full_cache_stores_a_key_on_its_second_miss() -> None:
    runtime = Runtime(unlimited(allow_origins=["https://*.a.com"], cache_size=50))
    for i in range(50):  # room: stored on the first miss
        ask(runtime, f"https://k{i}.a.com".encode())
    assert runtime.cache.stats() == (0, 50, 50)
    ask(runtime, b"https://new.a.com")
    assert not cached(runtime, b"https://new.a.com")
    assert cached(runtime, b"https://k0.a.com")
    ask(runtime, b"https://new.a.com")
    assert cached(runtime, b"https://new.a.com")
    assert not cached(runtime, b"https://k0.a.com")  # the least recently used one went
    assert runtime.cache.stats()[2] == 50


def test_admission_filter_memory_is_bounded_by_the_cache_size() -> None:
    # the "seen once" generations are fixed-size bit arrays: 20,000 one-off keys change nothing
    runtime = Runtime(unlimited(allow_origins=["https://a.com"], cache_size=10))
    admission = runtime.cache._admission
    sizes = {len(admission._seen), len(admission._seen_before)}
    for i in range(20_000):
        ask(runtime, b"https://r%d.test" % i)
        assert runtime.cache.stats()[2] <= 10
    assert {len(admission._seen), len(admission._seen_before)} == sizes == {SEEN_BITS_PER_ENTRY * 10 // 8}


def test_a_store_offered_past_the_bound_needs_a_second_sighting() -> None:
    cache = ResponseCache(1)
    route = make_policy().default
    response = Response(204, ())
    cache.store((route, b"a", b"GET", b"", False), response)
    cache.store((route, b"b", b"GET", b"", False), response)  # full: first sighting of b
    assert (route, b"b", b"GET", b"", False) not in cache
    cache.store((route, b"b", b"GET", b"", False), response)
    assert (route, b"b", b"GET", b"", False) in cache and len(cache) == 1


def test_the_head_memo_stores_a_head_only_at_its_second_sighting_even_with_room() -> None:
    memo: HeadMemo[str] = HeadMemo(10)
    memo.offer(b"head", "prepared")
    assert memo.get(b"head") is None
    memo.offer(b"head", "prepared")
    assert memo.get(b"head") == "prepared"
    for i in range(50):
        memo.offer(b"h%d" % i, "x")
        memo.offer(b"h%d" % i, "x")
    assert len(memo) == 10


def test_stored_keys_share_one_bytes_object_per_common_method() -> None:
    """A key read from the wire holds its own method bytes; the stored key holds the one shared object instead."""
    cache = ResponseCache(10)
    route = make_policy().default
    response = Response(204, ())
    read = [b"put".upper(), b"put".upper(), b"propfind".upper()]  # as the head reader hands them: new objects
    assert read[0] is not read[1]
    for i, method in enumerate(read):
        cache.store((route, b"https://o%d.test" % i, method, b"", False), response)
    put, other_put, propfind = (key[2] for key in cache._entries)
    assert put == other_put == b"PUT" and put is other_put
    assert propfind is read[2]  # an uncommon method keeps its own bytes
    assert cache.get((route, b"https://o0.test", b"put".upper(), b"", False)) is response
