"""Every size limit of the service, in one place.

Each bounds what one request, one table or one log line may cost, whatever
the traffic. The modules that enforce a limit import it from here; the docs
that state one are checked against these names (tests/test_docs.py).
"""

from __future__ import annotations

# -- one request's head (http.protocol enforces them; http.head reads only heads well inside them) --
# More headers, or more bytes counted as len(url) + sum(len(name) + len(value) + 4), get a 431.
MAX_HEAD_BYTES = 32 * 1024
MAX_HEADERS = 100

# Requests one connection may have read but not answered (pipelined behind an answer still being written, or
# behind a request with the ASGI app): past it, parsing stops until the queue drains, so memory grows with
# connections, never with the bytes a client sends. Bytes read but not parsed stay at most one read.
MAX_PIPELINED_REQUESTS = 16

# -- the preflight's own values, checked before the cache lookup: oversized input costs a length check --
MAX_ORIGIN_BYTES = 512
MAX_METHOD_BYTES = 64
MAX_REQUEST_HEADERS_BYTES = 4096
# More distinct names in Access-Control-Request-Headers than any browser sends: an attack or a bug.
MAX_REQUEST_HEADER_NAMES = 100
# A forwarded address longer than this is not an IP address (X-Forwarded-For items).
MAX_ADDRESS_BYTES = 64

# -- tables --
# The response cache stores only keys (origin + method + request headers) up to this many bytes, so its
# memory is cache_size times a small constant; a longer (rare, often hostile) request is answered uncached.
MAX_CACHED_KEY_BYTES = 1024
# The head memo: at most this many raw heads (fewer with a smaller cache_size), each at most this long.
HEAD_MEMO_SIZE = 4096
# Host headers remembered with what they select (cors.model.RouteTable, serve.pipeline): emptied when full.
HOST_MEMO_SIZE = 4096
MAX_MEMO_HEAD_BYTES = 1024
# The admission filter of a bounded table: bits per entry, and a generation's length in entries.
SEEN_BITS_PER_ENTRY = 256
SEEN_GENERATION = 16
# The largest tables a policy may configure: both are allocated up front when a policy is swapped in (the
# cache's admission filter, 64 bytes per entry; the limiter's arrays, 32 bytes per client), so a larger value is
# refused by `check`, at startup and at reload, instead of failing an allocation (or the pod's memory limit).
MAX_CACHE_SIZE = 1_000_000
MAX_RATE_LIMIT_CLIENTS = 1_000_000
# Every integer setting fits 64 bits (the policy version hashes the settings as JSON, and headers carry them).
MAX_SETTING_INT = 2**63 - 1
# Classified client addresses kept by the rate limiter's identifier (an LRU).
CLIENT_ADDRESS_CACHE = 4096
# Disagreeing keys the candidate's log remembers (so each is logged once).
MAX_LOGGED_KEYS = 4096

# -- log lines: request values are cut to these many characters --
LOG_ORIGIN_CHARS = 128
LOG_METHOD_CHARS = 32
LOG_HEADERS_CHARS = 256
LOG_PATH_CHARS = 256
