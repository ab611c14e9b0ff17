"""Per-client token buckets with a hard bound on the number of clients tracked.

The bucket is kept in its GCRA form (the "theoretical arrival time", one
float per client) which behaves exactly like a token bucket of ``burst``
tokens refilled at ``average`` per ``period`` seconds, but needs no refill
bookkeeping: a request at time t is allowed when TAT - t <= (burst - 1) *
interval, and then TAT advances by one interval. A client whose TAT is in
the past has a full bucket, so dropping its entry changes nothing.

The table is bounded by ``max_clients`` and holds no Python object per
client: two generations (young and old) of open-addressing hash tables in
flat arrays (a 64-bit key and a float TAT per slot, linear probing, each with
``max_clients + 1`` slots for at most ``max_clients / 2`` clients, so at most
half full). A client is looked up in both and always written to the young
one; when the young one has ``max_clients / 2`` clients it becomes the old
one and the previous old one is dropped whole. So a client seen within the
last generation is never evicted, a flood of new addresses evicts the least
recently seen, and eviction costs nothing per request. The memory is fixed
and allocated up front: 32 bytes per client at the bound, which the
benchmark's `table costs` line (python -m loadtests.bench) reports as
34 bytes per tracked client. A dict of int keys and float TATs cost 108
bytes per client, and a flood of new clients churned that many objects
through the allocator.

The key: an IPv4 address (the bucket key as an int, see ClientIdentifier) is
stored exactly; an IPv6 address or a string key is stored as a 64-bit keyed
(per-process SipHash) digest, in a range no IPv4 key uses. Slots are chosen
by a multiply-shift hash with a random multiplier per limiter, so nobody
can choose addresses that pile into one probe chain.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import secrets
import time
from array import array
from collections.abc import Callable

from ..cors.limits import CLIENT_ADDRESS_CACHE, MAX_ADDRESS_BYTES

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# The last request of a full burst must not be refused because of float
# rounding in the repeated additions of ``interval``.
_EPSILON = 1e-9


ClientKey = int | str


_MASK64 = (1 << 64) - 1
_IPV4_KEYS = 1 << 32
_DIGEST_BIT = 1 << 63
_TOMBSTONE = _MASK64  # a slot whose client moved to the young generation


def _fresh(slots: int) -> tuple[array[int], array[float]]:
    return array("Q", bytes(8 * slots)), array("d", bytes(8 * slots))


def _cleared(table: array[int], tats: array[float]) -> tuple[array[int], array[float]]:
    """The dropped generation's arrays, zeroed in place for the new young one.

    Allocating a new pair per generation instead left the service's RSS about
    1.5 MiB higher after a flood of new clients (the freed 800 KB blocks were
    not reused whole): a table allocated once stays put.
    """
    for values in (table, tats):
        memoryview(values).cast("B")[:] = bytes(8 * len(values))  # bytes(n) is calloc'd: never resident itself
    return table, tats


class RateLimiter:
    """GCRA limiter keyed by client: ``locate`` once per client (the pipeline keeps it), ``hit_located`` per request."""

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
        self._slots = 2 * self._generation + 1
        self._multiplier = secrets.randbits(64) | 1
        self._clock = clock
        self._young_keys, self._young_tats = _fresh(self._slots)
        self._old_keys, self._old_tats = _fresh(self._slots)
        self._young_count = self._old_count = 0

    def __len__(self) -> int:
        return self._young_count + self._old_count

    def table_bytes(self) -> int:
        """The memory both generations' arrays hold (fixed: 32 bytes per client at the bound)."""
        return 4 * 8 * self._slots

    def locate(self, client: ClientKey) -> tuple[int, int]:
        """``client``'s table key and first probe slot: fixed for this limiter, so a caller may keep them."""
        key = client + 1 if isinstance(client, int) and client < _IPV4_KEYS else _digest(client)
        return key, (((key * self._multiplier) & _MASK64) >> 32) % self._slots

    def hit_located(self, key: int, start: int) -> float:
        """Take one token for the client ``locate`` gave (on this limiter): 0.0 when allowed, else seconds to wait."""
        now = self._clock()
        slots = self._slots
        keys = self._young_keys
        slot = start
        found = keys[slot]
        while found != key and found:
            slot = slot + 1 if slot + 1 < slots else 0
            found = keys[slot]
        tat = self._young_tats[slot] if found else self._take_old(key, start, now)
        if tat < now:
            tat = now
        wait = tat - now - self.tolerance
        allowed = wait <= _EPSILON
        self._young_tats[slot] = tat + self.interval if allowed else tat
        if not found:
            keys[slot] = key
            self._young_count += 1
            if self._young_count >= self._generation:
                dropped = self._old_keys, self._old_tats
                self._old_keys, self._old_tats = keys, self._young_tats
                self._young_keys, self._young_tats = _cleared(*dropped)
                self._old_count, self._young_count = self._young_count, 0
        return 0.0 if allowed else wait

    def _take_old(self, key: int, slot: int, now: float) -> float:
        """The client's TAT from the old generation (its slot tombstoned), or ``now`` when it is not there."""
        keys, slots = self._old_keys, self._slots
        found = keys[slot]
        while found != key and found:
            slot = slot + 1 if slot + 1 < slots else 0
            found = keys[slot]
        if not found:
            return now
        keys[slot] = _TOMBSTONE
        self._old_count -= 1
        return self._old_tats[slot]


def _digest(client: ClientKey) -> int:
    """A 64-bit key for an IPv6 address or a string key, never one an IPv4 key or the tombstone uses."""
    digest = hash(client if isinstance(client, str) else client.to_bytes(17, "little")) & (_DIGEST_BIT - 1)
    return _DIGEST_BIT | min(digest, _DIGEST_BIT - 2)


def retry_after_seconds(wait: float) -> int:
    """Whole seconds until a token is available, at least 1 (Retry-After)."""
    return max(1, math.ceil(wait))


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

    def __init__(self, depth: int, excluded: tuple[Network, ...], cache_size: int = CLIENT_ADDRESS_CACHE) -> None:
        self.depth = depth
        self._excluded = excluded
        self._classify = functools.lru_cache(maxsize=cache_size)(self._classify_uncached)

    def _classify_uncached(self, text: str | bytes) -> ClientKey | None:
        address = _parse_address(text.decode("latin-1") if isinstance(text, bytes) else text)
        if address is None:
            return MALFORMED_CLIENT
        if any(address in network for network in self._excluded):
            return None
        return int(address) if address.version == 4 else int(address) + _IPV6_OFFSET

    def forwarded_key(self, forwarded: bytes | None) -> tuple[bool, ClientKey | None]:
        """(True, the bucket key) when X-Forwarded-For decides it, else (False, None): the peer decides."""
        depth = self.depth
        if depth and forwarded:
            item: bytes | None = None
            if depth == 1 and b"," not in forwarded:
                item = forwarded  # one address, the common case behind one proxy
            else:
                items = forwarded.rsplit(b",", depth)
                if len(items) >= depth:
                    item = items[-depth]
            if item is not None:
                if len(item) > MAX_ADDRESS_BYTES:
                    return True, MALFORMED_CLIENT
                return True, self._classify(item)
        return False, None

    def peer_key(self, peer: str | None) -> ClientKey | None:
        """The bucket key of the TCP peer (no X-Forwarded-For item to use)."""
        if peer is None:
            return UNKNOWN_CLIENT
        return self._classify(peer)
