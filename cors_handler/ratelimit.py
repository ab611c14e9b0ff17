"""Per-client token buckets with a hard bound on the number of clients tracked.

The bucket is kept in its GCRA form (the "theoretical arrival time", one
float per client) which behaves exactly like a token bucket of ``burst``
tokens refilled at ``average`` per ``period`` seconds, but needs no refill
bookkeeping: a request at time t is allowed when TAT - t <= (burst - 1) *
interval, and then TAT advances by one interval. A client whose TAT is in
the past has a full bucket, so dropping its entry changes nothing.

The table is an LRU bounded by ``max_clients``: a flood of new addresses
evicts the least recently seen clients, and memory never depends on traffic.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# The last request of a full burst must not be refused because of float
# rounding in the repeated additions of ``interval``.
_EPSILON = 1e-9


class RateLimiter:
    """GCRA limiter keyed by client address; ``hit`` is the only hot-path call."""

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
        self._clock = clock
        self._tat: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tat)

    def hit(self, client: str) -> float:
        """Take one token for ``client``: 0.0 when allowed, else seconds until one is available."""
        now = self._clock()
        table = self._tat
        tat = table.pop(client, now)
        if tat < now:
            tat = now
        wait = tat - now - self.tolerance
        if wait > _EPSILON:
            table[client] = tat
            return wait
        table[client] = tat + self.interval
        if len(table) > self.max_clients:
            table.popitem(last=False)
        return 0.0


def retry_after_seconds(wait: float) -> int:
    """Whole seconds until a token is available, at least 1 (Retry-After)."""
    return max(1, math.ceil(wait))


# A forwarded address longer than this is not an IP address.
_MAX_ADDRESS_LENGTH = 64
MALFORMED_CLIENT = "malformed-x-forwarded-for"
UNKNOWN_CLIENT = "unknown-peer"


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

    Returns a normalized address string used as the bucket key, or None for a
    client in ``excluded`` (never limited). Malformed forwarded values share
    one bucket instead of creating new keys. Address classification is cached
    in a bounded LRU, so a repeat client costs one dict lookup.
    """

    def __init__(self, depth: int, excluded: tuple[Network, ...], cache_size: int = 4096) -> None:
        self.depth = depth
        self._excluded = excluded
        self._classify = functools.lru_cache(maxsize=cache_size)(self._classify_uncached)

    def _classify_uncached(self, text: str) -> str | None:
        address = _parse_address(text)
        if address is None:
            return MALFORMED_CLIENT
        if any(address in network for network in self._excluded):
            return None
        return address.compressed

    def key(self, peer: str | None, forwarded: bytes | None) -> str | None:
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
