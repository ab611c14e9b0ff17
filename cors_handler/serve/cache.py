"""The bounded tables of finished answers: the response cache and the head memo.

Both are plain stores: they never compute an answer (the pipeline does, on a
miss, and offers it back), so a lookup costs a dict operation or two and the
dependency runs one way. Both are bounded by configuration, never by the
traffic, and both admit a new key past their bound only on its second
sighting (``SeenFilter``), so a flood of one-off keys cannot evict the keys
of real traffic.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

from ..cors.limits import MAX_CACHED_KEY_BYTES, MAX_MEMO_HEAD_BYTES, SEEN_BITS_PER_ENTRY, SEEN_GENERATION
from ..cors.model import RoutePolicy
from .responses import Response

# (route, origin, method, request headers, private-network flag): the header values as received.
Key = tuple[RoutePolicy, bytes, bytes, bytes, bool]
Value = TypeVar("Value")

# One bytes object per common method for every stored key: a key read from the wire holds its own copy (48 bytes).
_METHODS = {method: method for method in (b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS")}


class SeenFilter:
    """The admission test of a bounded table: was this digest seen recently (a two-bit Bloom filter)?

    ``SEEN_BITS_PER_ENTRY * maxsize`` bits per generation, a generation lasting
    ``SEEN_GENERATION * maxsize`` new digests (64 bytes per table entry in all):
    1.4 to 2.8 % of one-off digests look seen, and a digest must recur within
    16 to 32 times ``maxsize`` new ones to count as seen. A test costs a hash
    and four bit tests.
    """

    def __init__(self, maxsize: int) -> None:
        bits = SEEN_BITS_PER_ENTRY * maxsize
        self._bits = bits
        self._seen = bytearray(bits // 8)
        self._seen_before = bytearray(bits // 8)
        self._generation = SEEN_GENERATION * maxsize
        self._seen_count = 0

    def seen_twice(self, digest: int) -> bool:
        """Whether this digest was seen recently; marks it seen if not."""
        low, high = digest % self._bits, (digest >> 32) % self._bits
        low_byte, low_bit, high_byte, high_bit = low >> 3, 1 << (low & 7), high >> 3, 1 << (high & 7)
        seen, before = self._seen, self._seen_before
        if (seen[low_byte] & low_bit and seen[high_byte] & high_bit) or (
            before[low_byte] & low_bit and before[high_byte] & high_bit
        ):
            return True
        seen[low_byte] |= low_bit
        seen[high_byte] |= high_bit
        self._seen_count += 1
        if self._seen_count >= self._generation:
            self._seen_before, self._seen, self._seen_count = seen, bytearray(len(seen)), 0
        return False


class BoundedTable(Generic[Value]):
    """An LRU of at most ``maxsize`` entries with second-sighting admission once it is full.

    While the table has room, an offered entry is stored; once it is full, a
    key must be offered twice (recently, see SeenFilter) to evict the least
    recently used one. An OrderedDict (C-implemented) keeps the lookup and the
    eviction O(1).
    """

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[object, Value] = OrderedDict()
        self._admission = SeenFilter(maxsize)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is stored now (without touching its recency)."""
        return key in self._entries

    def _admit(self, key: object, value: Value) -> None:
        entries = self._entries
        if len(entries) < self.maxsize:
            entries[key] = value
        elif self._admission.seen_twice(hash(key)):
            entries[key] = value
            entries.popitem(last=False)


class ResponseCache(BoundedTable[Response]):
    """Finished preflight responses by key, one cache per compiled policy.

    Keys use the raw header values: a lookup needs no parsing at all, and every
    spelling of a request maps to the response its normalized form gets, because
    the pipeline's decision normalizes. A reload replaces the cache with the
    Runtime. A hit costs two C-level dict operations; the admission filter costs
    misses a hash and four bit tests and hits nothing.
    """

    def __init__(self, maxsize: int) -> None:
        super().__init__(maxsize)
        self._hits = 0
        self._misses = 0

    def get(self, key: Key) -> Response | None:
        """The cached response (now the most recently used), or None: a miss, counted."""
        entries = self._entries
        response = entries.get(key)
        if response is not None:
            entries.move_to_end(key)
            self._hits += 1
            return response
        self._misses += 1
        return None

    def store(self, key: Key, response: Response) -> None:
        """Offer a computed response; a key over MAX_CACHED_KEY_BYTES is never stored (memory stays bounded)."""
        route, origin, method, headers, private_network = key
        if len(origin) + len(method) + len(headers) <= MAX_CACHED_KEY_BYTES:
            shared = _METHODS.get(method)
            if shared is not None and shared is not method:
                key = (route, origin, shared, headers, private_network)
            self._admit(key, response)

    def stats(self) -> tuple[int, int, int]:
        """(hits, misses, entries); an uncached oversize request counts as a miss."""
        return self._hits, self._misses, len(self._entries)


class HeadMemo(BoundedTable[Value]):
    """Raw request heads read before, mapped to what they decide (``serve.pipeline.Prepared``).

    The same bytes parse the same way, so a repeated head skips the head reader,
    the header scan and the route lookup; the limiter, the cache and the counters
    still run per request. One memo per Runtime: a reload starts an empty one.
    At most ``maxsize`` heads of at most MAX_MEMO_HEAD_BYTES each; about 800
    bytes per head with its entry. A head is stored only at its second sighting,
    even while the memo has room, and the pipeline offers a head only once its
    answer is cached (``Runtime.remember``): a flood of one-off heads (random
    origins, random X-Forwarded-For) neither fills the memo nor evicts the heads
    of real traffic.
    """

    def get(self, head: bytes) -> Value | None:
        entries = self._entries
        prepared = entries.get(head)
        if prepared is not None:
            entries.move_to_end(head)
        return prepared

    def offer(self, head: bytes, prepared: Value) -> None:
        """Remember ``head`` at its second sighting (if short enough), evicting the least recent."""
        if len(head) > MAX_MEMO_HEAD_BYTES or not self._admission.seen_twice(hash(head)):
            return
        entries = self._entries
        entries[head] = prepared
        if len(entries) > self.maxsize:
            entries.popitem(last=False)
