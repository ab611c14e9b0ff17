"""A strict HTTP/1.1 head reader: a subset of what llhttp accepts, read exactly as llhttp reads it.

The fast path answers most preflights from one read that holds exactly one
request head. Parsing that head with httptools costs a parser pass plus a
Python callback per header; this reader costs two compiled regexes. It accepts
only heads on which it provably agrees with llhttp (tests/http/test_head.py checks
it against httptools on generated and mutated heads) and answers None for
anything else, which then goes to httptools ("let httptools decide"):

* ``OPTIONS``, one space, an origin-form target of RFC 3986 path and query
  characters (no ``#``: llhttp passes a fragment to the URL, which the path
  must not contain), one space, ``HTTP/1.1``, CRLF;
* header lines ``token ":" OWS value CRLF`` with visible ASCII, spaces and tabs
  in the value; the value is what llhttp reports: leading spaces and tabs
  dropped, trailing ones kept (``PUT `` is not ``PUT``);
* none of the headers that change framing or the connection (Content-Length,
  Transfer-Encoding, Connection, Proxy-Connection, Upgrade, Expect): those are
  llhttp's and uvicorn's to decide;
* small enough that the protocol's head bounds (``cors.limits``: at most
  MAX_HEADERS headers and MAX_HEAD_BYTES counted as url + name + value + 4 per
  header) cannot apply: every header line adds at most one byte more to that
  count than its length, so a head of at most MAX_HEAD_BYTES - MAX_HEADERS
  bytes with at most MAX_HEADERS lines is always inside both.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ..cors.limits import MAX_HEAD_BYTES, MAX_HEADERS
from ..serve.pipeline import PIPELINE_HEADERS
from .framing import FRAMING_HEADERS

# Possessive quantifiers (``*+``, ``++``): no class here can give back a byte the next token could use, so the
# match is the same and the engine keeps no backtracking state (a third less time per head).
_HEAD = re.compile(
    rb"OPTIONS (/[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*+) HTTP/1\.1\r\n"
    rb"(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]++:[ \t]*+(?:[!-~][\t -~]*+)?\r\n)*+"
    rb"\r\n"
)
# The headers the pipeline reads (handed over), and those that send the head to httptools (refused).
_WANTED = re.compile(
    rb"\r\n(" + b"|".join(re.escape(name) for name in (*PIPELINE_HEADERS, *FRAMING_HEADERS)) + rb"):[ \t]*([^\r]*)",
    re.IGNORECASE,
)
_FRAMING = frozenset(FRAMING_HEADERS)
# The spellings browsers, curl and proxies send, lower-cased without a call (``bytes.lower`` for the rest).
_CANONICAL = {
    spelling: name
    for name in PIPELINE_HEADERS
    for spelling in (name, b"-".join(part.capitalize() for part in name.split(b"-")))
}
_MAX_BYTES = MAX_HEAD_BYTES - MAX_HEADERS
_MIN_BYTES_OVER_LINES = 2 * (MAX_HEADERS + 3)
_new_head = tuple.__new__


class Head(NamedTuple):
    raw_path: bytes  # the target before any ``?``, still percent-encoded
    headers: list[tuple[bytes, bytes]]  # only PIPELINE_HEADERS: lower-cased names, llhttp's values


def read_head(data: bytes) -> Head | None:
    """The head in ``data`` (exactly one whole OPTIONS head), or None to let httptools decide."""
    size = len(data)
    # more than MAX_HEADERS + 2 line ends take at least _MIN_BYTES_OVER_LINES bytes: only count in a head that long
    if size > _MAX_BYTES or (size >= _MIN_BYTES_OVER_LINES and data.count(b"\r\n") > MAX_HEADERS + 2):
        return None
    matched = _HEAD.fullmatch(data)
    if matched is None:
        return None
    headers = []
    for name, value in _WANTED.findall(data):
        name = _CANONICAL.get(name) or name.lower()
        if name in _FRAMING:
            return None
        headers.append((name, value))
    return _new_head(Head, (matched[1].partition(b"?")[0], headers))  # NamedTuple's __new__ is Python code
