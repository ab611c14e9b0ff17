"""Per-client token buckets with a hard bound on the number of clients tracked.

The bucket is kept in its GCRA form (the "theoretical arrival time", one
float per client) which behaves exactly like a token bucket of ``burst``
tokens refilled at ``average`` per ``period`` seconds, but needs no refill
bookkeeping: a request at time t is allowed when TAT - t <= (burst - 1) *
interval, and then TAT advances by one interval. A client whose TAT is in
the past has a full bucket, so dropping its entry changes nothing.

The table is bounded by ``max_clients`` and compact: clients are keyed by
their address as an int (IPv6 offset by 2**128, so the families never share a
bucket) in two plain dicts, a young and an old generation of at most
``max_clients / 2`` entries each. A client is looked up in both and always
written to the young one; when the young one is full it becomes the old one
and the previous old one is dropped whole. So a client seen within the last
generation is never evicted, a flood of new addresses evicts the least
recently seen, and eviction costs nothing per request (an OrderedDict LRU
needs 60 more bytes per client; a plain dict evicted one key at a time costs
microseconds per eviction under churn). About 76 bytes per tracked client (the
benchmark's `table costs` line, python -m loadtests.bench).
"""

from __future__ import annotations

import functools
import ipaddress
import math
import time
from collections.abc import Callable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# The last request of a full burst must not be refused because of float
# rounding in the repeated additions of ``interval``.
_EPSILON = 1e-9


ClientKey = int | str


class RateLimiter:
    """GCRA limiter keyed by client; ``hit`` is the only hot-path call."""

    def __init__(
        self,
        average: int,
        period: float,
        burst: int,
        max_clients: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = period / average
        self.tolerance = self.interval * (burst - 1)
        self.max_clients = max_clients
        self._generation = max(1, max_clients // 2)
        self._clock = clock
        self._young: dict[ClientKey, float] = {}
        self._old: dict[ClientKey, float] = {}

    def __len__(self) -> int:
        return len(self._young) + len(self._old)

    def hit(self, client: ClientKey) -> float:
        """Take one token for ``client``: 0.0 when allowed, else seconds until one is available."""
        now = self._clock()
        young = self._young
        tat = young.get(client)
        if tat is None:
            tat = self._old.pop(client, now)
        if tat < now:
            tat = now
        wait = tat - now - self.tolerance
        allowed = wait <= _EPSILON
        young[client] = tat + self.interval if allowed else tat
        if len(young) >= self._generation:
            self._old, self._young = young, {}
        return 0.0 if allowed else wait


def retry_after_seconds(wait: float) -> int:
    """Whole seconds until a token is available, at least 1 (Retry-After)."""
    return max(1, math.ceil(wait))


# A forwarded address longer than this is not an IP address.
_MAX_ADDRESS_LENGTH = 64
MALFORMED_CLIENT = "malformed-x-forwarded-for"
UNKNOWN_CLIENT = "unknown-peer"


_IPV6_OFFSET = 1 << 128


def describe_client(key: ClientKey) -> str:
    """The address a bucket key stands for (for logs)."""
    if isinstance(key, str):
        return key
    if key >= _IPV6_OFFSET:
        return ipaddress.IPv6Address(key - _IPV6_OFFSET).compressed
    return ipaddress.IPv4Address(key).compressed


def _parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP from an X-Forwarded-For item: bare, ``[v6]:port`` or ``v4:port``."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class ClientIdentifier:
    """Selects the client address (peer, or the Nth X-Forwarded-For item from the right).

    Returns the bucket key (the address as an int; see RateLimiter), or None for a
    client in ``excluded`` (never limited). Malformed forwarded values share
    one bucket instead of creating new keys. Address classification is cached
    in a bounded LRU, so a repeat client costs one dict lookup.
    """

    def __init__(self, depth: int, excluded: tuple[Network, ...], cache_size: int = 4096) -> None:
        self.depth = depth
        self._excluded = excluded
        self._classify = functools.lru_cache(maxsize=cache_size)(self._classify_uncached)

    def _classify_uncached(self, text: str) -> ClientKey | None:
        address = _parse_address(text)
        if address is None:
            return MALFORMED_CLIENT
        if any(address in network for network in self._excluded):
            return None
        return int(address) if address.version == 4 else int(address) + _IPV6_OFFSET

    def key(self, peer: str | None, forwarded: bytes | None) -> ClientKey | None:
        if self.depth and forwarded:
            items = forwarded.rsplit(b",", self.depth)
            if len(items) >= self.depth:
                item = items[-self.depth]
                if len(item) > _MAX_ADDRESS_LENGTH:
                    return MALFORMED_CLIENT
                return self._classify(item.decode("latin-1"))
        if peer is None:
            return UNKNOWN_CLIENT
        return self._classify(peer)
