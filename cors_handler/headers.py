"""HTTP token grammar and Access-Control-Request-Headers parsing.

Everything here is pure and bounded: the caller enforces a byte limit on the
raw header value *before* calling in, so a megabyte of commas is rejected by a
length check and never split.
"""

from __future__ import annotations

import re

# RFC 9110 section 5.6.2: token = 1*tchar
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# Optional whitespace (RFC 9110 OWS) around list items.
_OWS = " \t"


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
    the same tuple. A non-token item raises HeaderListError.
    """
    names: set[str] = set()
    for item in value.split(","):
        name = item.strip(_OWS)
        if not name:
            continue
        if not is_token(name):
            raise HeaderListError("request header names must be RFC 9110 tokens")
        names.add(name.lower())
    return tuple(sorted(names))
