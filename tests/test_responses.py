import orjson
import pytest

from cors_handler.pipeline import Runtime
from cors_handler.preflight import Allowed, Violation
from cors_handler.responses import (
    MAX_CACHED_KEY_BYTES,
    SEEN_BITS_PER_ENTRY,
    VARY,
    ResponseCache,
    allowed,
    not_preflight,
    rejected,
)

from .conftest import make_policy


def headers(response) -> dict[str, str]:  # type: ignore[no-untyped-def]
    out: dict[str, str] = {}
    for name, value in response.headers:
        assert name.decode() not in out, f"duplicate header {name!r}"
        out[name.decode()] = value.decode()
    return out


def test_allowed_headers_exactly() -> None:
    policy = make_policy(allow_origins=["https://a.com"], max_age=600)
    h = headers(allowed(policy, policy.default, "https://A.com", Allowed("exact", "PUT", ("content-type",), False)))
    assert h == {
        "access-control-allow-origin": "https://A.com",  # echoed as received
        "access-control-allow-methods": "GET, HEAD, POST, PUT, PATCH, DELETE",
        "access-control-allow-headers": "content-type, authorization",
        "access-control-max-age": "600",
        "vary": VARY,
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "strict-origin-when-cross-origin",
        "cache-control": "public, max-age=600",
        "x-cors-preflight": "enhanced-handler",
    }


def test_allowed_credentials_private_network_and_wildcards() -> None:
    policy = make_policy(
        environment="development", allow_origins=["*"], allow_methods=["*"], allow_headers=["*"],
        allow_private_network=True, security_headers=False,
    )  # fmt: skip
    h = headers(allowed(policy, policy.default, "https://x.com", Allowed("any", "PROPFIND", ("x-a", "x-b"), True)))
    assert h["access-control-allow-origin"] == "*"
    assert h["access-control-allow-methods"] == "PROPFIND"
    assert h["access-control-allow-headers"] == "x-a, x-b"
    assert h["access-control-allow-private-network"] == "true"
    assert h["vary"] == VARY + ", Access-Control-Request-Private-Network"
    assert "access-control-allow-credentials" not in h
    assert "x-frame-options" not in h and "cache-control" not in h

    cred = make_policy(allow_origins=["https://a.com"], allow_credentials=True)
    h = headers(allowed(cred, cred.default, "https://a.com", Allowed("exact", "GET", (), False)))
    assert h["access-control-allow-credentials"] == "true"
    assert h["access-control-allow-origin"] == "https://a.com"


def test_rejected_has_no_allow_headers_and_debug_lists_policy() -> None:
    policy = make_policy(allow_origins=["https://a.com"])
    r = rejected(policy, policy.default, Violation("origin_not_allowed", "Origin is not allowed", None))
    h = headers(r)
    assert r.status == 403 and not any(k.startswith("access-control-allow") for k in h)
    assert h["vary"] == VARY and h["content-type"] == "application/json"
    assert orjson.loads(r.body) == {"error_type": "origin_not_allowed", "message": "Origin is not allowed"}

    debug = make_policy(allow_origins=["https://a.com"], debug=True)
    body = orjson.loads(rejected(debug, debug.default, Violation("origin_not_allowed", "no", None)).body)
    assert body["allowed"] == {
        "origins": ["https://a.com"],
        "methods": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
        "headers": ["content-type", "authorization"],
    }


def test_responses_are_immutable() -> None:
    policy = make_policy(allow_origins=["https://a.com"])
    response = not_preflight(policy, "OPTIONS")
    assert isinstance(response.headers, tuple) and all(isinstance(h, tuple) for h in response.headers)
    with pytest.raises(AttributeError):
        response.headers.append((b"x", b"y"))  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        response.status = 200  # type: ignore[misc]


def test_cache_is_bounded_lru_under_adversarial_keys() -> None:
    policy = make_policy(allow_origins=["https://a.com"], cache_size=100)
    runtime = Runtime(policy)
    route = policy.default
    for i in range(5000):
        runtime.cache.get(route, f"https://evil{i}.com".encode(), b"GET", b"x-%d" % i, i % 2 == 0)
        assert runtime.cache.stats()[2] <= 100
    hits, misses, entries = runtime.cache.stats()
    assert (hits, misses, entries) == (0, 5000, 100)
    # a full cache stores a key on its second miss; it then survives a flood of one-off keys
    runtime.cache.get(route, b"https://a.com", b"GET", b"", False)
    for i in range(99):
        runtime.cache.get(route, b"https://a.com", b"GET", b"", False)
        runtime.cache.get(route, f"https://flood{i}.com".encode(), b"GET", b"", False)
    assert runtime.cache.stats()[0] == 98


def test_oversized_keys_are_answered_but_not_cached() -> None:
    policy = make_policy(allow_origins=["https://a.com"], allow_headers=["*"], environment="development")
    cache = Runtime(policy).cache
    big = b",".join(b"x-long-header-name-%d" % i for i in range(90))  # under the 100-name cap
    assert len(big) > MAX_CACHED_KEY_BYTES
    response = cache.get(policy.default, b"https://a.com", b"GET", big, False)
    assert response.status == 204
    assert cache.stats() == (0, 1, 0)


def test_cached_response_identical_to_fresh() -> None:
    policy = make_policy(allow_origins=["https://a.com"])
    cache = ResponseCache(10, Runtime(policy).compute)
    first = cache.get(policy.default, b"https://a.com", b"PUT", b"content-type", False)
    second = cache.get(policy.default, b"https://a.com", b"PUT", b"content-type", False)
    assert first is second
    assert cache.stats() == (1, 1, 1)


@pytest.mark.parametrize(
    "flood_origin",
    [pytest.param("https://r{n}.attacker.test", id="refused-origins"),
     pytest.param("https://r{n}.a.com", id="allowed-wildcard-subdomains")],
)  # fmt: skip
def test_flood_of_one_off_keys_does_not_evict_recurring_traffic(flood_origin: str) -> None:
    # 200 recurring keys, each reused only after 50 x 200 = 10,000 one-off keys: ten times
    # the cache's size, so a plain LRU would have evicted every one of them (0 % hits).
    policy = make_policy(allow_origins=["https://a.com", "https://*.a.com"], cache_size=1000)
    cache = Runtime(policy).cache
    route = policy.default
    steady = [f"https://s{i}.a.com".encode() for i in range(200)]
    flood = steady_requests = steady_hits = 0
    for round_ in range(10):
        for origin in steady:
            hits_before = cache.stats()[0]
            cache.get(route, origin, b"PUT", b"", False)
            if round_ >= 2:  # a key is stored at the latest on its second miss
                steady_requests += 1
                steady_hits += cache.stats()[0] - hits_before
            for _ in range(50):
                cache.get(route, flood_origin.format(n=flood).encode(), b"PUT", b"", False)
                flood += 1
            assert cache.stats()[2] <= 1000
    assert steady_hits / steady_requests >= 0.99
    assert cache.stats()[2] == 1000


def test_a_full_cache_stores_a_key_on_its_second_miss() -> None:
    policy = make_policy(allow_origins=["https://*.a.com"], cache_size=50)
    cache = Runtime(policy).cache
    for i in range(50):  # room: stored on the first miss
        cache.get(policy.default, f"https://k{i}.a.com".encode(), b"GET", b"", False)
    assert cache.stats() == (0, 50, 50)
    cache.get(policy.default, b"https://new.a.com", b"GET", b"", False)
    assert cache.cached(policy.default, b"https://new.a.com", b"GET", b"", False) is None
    assert cache.cached(policy.default, b"https://k0.a.com", b"GET", b"", False) is not None
    cache.get(policy.default, b"https://new.a.com", b"GET", b"", False)
    assert cache.cached(policy.default, b"https://new.a.com", b"GET", b"", False) is not None
    assert cache.cached(policy.default, b"https://k1.a.com", b"GET", b"", False) is None  # the LRU one went
    assert cache.stats()[2] == 50


def test_admission_filter_memory_is_bounded_by_the_cache_size() -> None:
    # the "seen once" generations are fixed-size bit arrays: a million one-off keys change nothing
    policy = make_policy(allow_origins=["https://a.com"], cache_size=10)
    cache = Runtime(policy).cache
    sizes = {len(cache._admission._seen), len(cache._admission._seen_before)}
    for i in range(20_000):
        cache.get(policy.default, b"https://r%d.test" % i, b"GET", b"", False)
        assert cache.stats()[2] <= 10
    assert {len(cache._admission._seen), len(cache._admission._seen_before)} == sizes == {SEEN_BITS_PER_ENTRY * 10 // 8}
