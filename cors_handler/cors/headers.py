"""HTTP token grammar and Access-Control-Request-Headers parsing.

Everything here is pure and bounded: the caller enforces a byte limit on the
raw header value *before* calling in, so a megabyte of commas is rejected by a
length check and never split. Within the limit, parsing runs in C-level byte
operations (translate, split, one linear regex search), never a Python loop
per item: four thousand empty items cost tens of microseconds, not hundreds.
"""

from __future__ import annotations

import re

from .limits import MAX_REQUEST_HEADER_NAMES

# RFC 9110 section 5.6.2: token = 1*tchar
_TCHAR_CLASS = r"!#$%&'*+\-.^_`|~0-9A-Za-z"
_TOKEN = re.compile(f"[{_TCHAR_CLASS}]+")
_TCHARS = bytes(c for c in range(128) if _TOKEN.fullmatch(chr(c)))

# Optional whitespace (RFC 9110 OWS) around list items.
_OWS = b" \t"
_LIST_BYTES = _TCHARS + _OWS + b","
# Whitespace *between* two token characters: "x-a x-b" is one malformed item.
# Linear: each match attempt starts on a tchar and scans one whitespace run.
_INNER_SPACE = re.compile(f"[{_TCHAR_CLASS}][ \\t]+[{_TCHAR_CLASS}]".encode())


_NOT_TOKENS = "must be a comma-separated list of header names (RFC 9110 tokens)"


def is_token(value: str) -> bool:
    """True when ``value`` is a non-empty RFC 9110 token."""
    return _TOKEN.fullmatch(value) is not None


class HeaderListError(ValueError):
    """A request-headers list that is not a comma list of tokens."""


def parse_header_list(value: str) -> tuple[str, ...]:
    """Parse an Access-Control-Request-Headers value into sorted, unique, lower-case names.

    Browsers send a sorted, lower-case, comma-separated list; curl users and
    gateways send any case, spaces after commas, empty items and several
    header lines (joined by the caller with commas). All of those normalize to
    the same tuple. A non-token item, or more than MAX_REQUEST_HEADER_NAMES
    distinct names, raises HeaderListError.
    """
    if not value:
        return ()  # most preflights ask for no header at all
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        raise HeaderListError(_NOT_TOKENS) from None
    if raw.translate(None, _LIST_BYTES):
        raise HeaderListError(_NOT_TOKENS)
    if b" " in raw or b"\t" in raw:
        if _INNER_SPACE.search(raw) is not None:
            raise HeaderListError(_NOT_TOKENS)
        raw = raw.translate(None, _OWS)
    names = set(raw.lower().split(b","))
    names.discard(b"")
    if len(names) > MAX_REQUEST_HEADER_NAMES:
        raise HeaderListError(f"must not name more than {MAX_REQUEST_HEADER_NAMES} distinct headers")
    return tuple(sorted(name.decode("ascii") for name in names))
