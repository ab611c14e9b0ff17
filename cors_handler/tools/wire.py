"""An HTTP answer read from its raw bytes as a browser reads it (for ``tools.verify``).

``http.client`` is lenient where browsers are strict and strict where they read
on: it keeps the whitespace Fetch trims from a value and stops at a line it does
not like, where Chromium reads the fields after it. So verify reads the bytes
itself: the status line, every field with Fetch's trimming, reading on past a
malformed line as Chromium does, and each defect RFC 9112's grammar does not
allow in a head (whitespace before a colon, folding, a bare CR or LF, a control
character, a name that is not a token) kept beside the fields, so that verify
reports it. Bounded: a head of at most MAX_HEAD_BYTES and MAX_FIELDS lines.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass


class Unreachable(Exception):
    """The case got no answer to compare: connection refused, timeout, or still 429."""


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer as a browser sees it: the status and the header fields (lower-case names)."""

    status: int
    headers: tuple[tuple[str, str], ...]
    defects: tuple[str, ...] = ()  # what RFC 9112's grammar does not allow in its head (``parse_head``)

    def get(self, name: str) -> str | None:
        """The field's value, repeated fields joined with ", " (what a browser's header list gives)."""
        values = [v for n, v in self.headers if n == name]
        return ", ".join(values) if values else None


MAX_BODY_BYTES = 64 * 1024  # an answer's body read at most (then the connection is closed)
MAX_HEAD_BYTES = 64 * 1024  # an answer's head (status line and fields) at most; more is unreachable
MAX_FIELDS = 100  # header lines in one head at most (http.client's bound); more is unreachable
MAX_INTERIM = 5  # 1xx answers skipped before the final one at most
HTTP_WHITESPACE = " \t"  # what Fetch trims around a field value (CR and LF end the line here)
_STATUS_LINE = re.compile(r"HTTP/1\.[01] ([1-9][0-9]{2})(?: [^\x00-\x08\x0a-\x1f\x7f]*)?")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_DIGITS = re.compile(r"[0-9]+")
MAX_DELTA_SECONDS = 10**18  # a longer run of digits is read as this (Python's int() refuses 4,300 digits)


def delta_seconds(value: str | None) -> int | None:
    """``1*DIGIT`` in ASCII digits only (``²`` passes str.isdigit()); None when absent or anything else."""
    if value is None or _DIGITS.fullmatch(value) is None:
        return None
    digits = value.lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else MAX_DELTA_SECONDS


def _excerpt(line: str) -> str:
    return repr(line if len(line) <= 60 else line[:57] + "...")


def parse_head(head: bytes) -> Answer:
    """A response head (status line to the blank line, which ends it) as a browser reads it, with its defects.

    Fields are read on through every defect as Chromium does (whitespace before the colon
    dropped from the name, an obs-fold joined to the previous value, a line without a
    colon skipped), values trimmed of HTTP whitespace (Fetch: normalize) and decoded
    isomorphically (latin-1). Whatever RFC 9112's grammar does not allow is listed in
    ``defects``: clients read such a head differently (http.client stops at the first
    malformed line), so an answer with a defect is a disagreement however it reads.
    Raises Unreachable when it is not an HTTP/1.x answer at all.
    """
    text = head.decode("latin-1")
    lines = text.split("\n")
    defects: list[str] = []
    if any(not line.endswith("\r") for line in lines[:-1]):
        defects.append("a line ends in LF without CR")
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    while lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise Unreachable("not an HTTP answer: nothing before the blank line")
    status_line = _STATUS_LINE.fullmatch(lines[0])
    if status_line is None:
        raise Unreachable(f"not an HTTP answer: {_excerpt(lines[0])}")
    fields: list[list[str]] = []
    for number, line in enumerate(lines[1:], start=2):
        if line[:1] in (" ", "\t"):
            defects.append(f"line {number} {_excerpt(line)} continues the line before it (obsolete line folding)")
            if fields:
                fields[-1][1] = f"{fields[-1][1]} {line.strip(HTTP_WHITESPACE)}".strip(HTTP_WHITESPACE)
            continue
        name, colon, value = line.partition(":")
        if not colon:
            defects.append(f"line {number} {_excerpt(line)} has no colon")
            continue
        if name != name.rstrip(HTTP_WHITESPACE):
            defects.append(f"line {number} {_excerpt(line)} has whitespace before the colon")
            name = name.rstrip(HTTP_WHITESPACE)
        if _TOKEN.fullmatch(name) is None:
            defects.append(f"line {number} {_excerpt(line)}: the field name is not a token")
        value = value.strip(HTTP_WHITESPACE)
        if _CONTROL.search(value):
            defects.append(f"line {number} {_excerpt(line)}: a control character in the value")
        fields.append([name.lower(), value])
    if len(fields) > MAX_FIELDS:
        raise Unreachable(f"more than {MAX_FIELDS} header fields")
    return Answer(int(status_line[1]), tuple((name, value) for name, value in fields), tuple(defects))


def _head_end(data: bytes) -> int:
    """Where the head in ``data`` ends (after its blank line: CRLF or a bare LF), or -1 while it has not."""
    crlf, lf = data.find(b"\n\r\n"), data.find(b"\n\n")
    ends = [i + 3 for i in (crlf,) if i >= 0] + [i + 2 for i in (lf,) if i >= 0]
    if data.startswith((b"\r\n", b"\n")):
        ends.append(data.index(b"\n") + 1)
    return min(ends, default=-1)


def read_answer(recv: Callable[[], bytes]) -> tuple[Answer, bytes]:
    """The final answer from a byte stream (``recv``: the next chunk, b"" at its end) and the bytes after its head.

    Interim 1xx answers are skipped as a browser skips them (at most MAX_INTERIM); the
    head is bounded by MAX_HEAD_BYTES. Raises Unreachable when there is no answer to read.
    """
    data = b""
    interim = 0
    while True:
        end = _head_end(data)
        if end < 0 or end > MAX_HEAD_BYTES:
            if len(data) > MAX_HEAD_BYTES:
                raise Unreachable(f"the answer's head is over {MAX_HEAD_BYTES // 1024} KiB")
            chunk = recv()
            if not chunk:
                raise Unreachable("closed in the middle of the answer's head" if data else "closed without an answer")
            data += chunk
            continue
        answer = parse_head(data[:end])
        data = data[end:]
        if answer.status == 101:
            raise Unreachable("the answer switched protocols (101)")
        if answer.status >= 200:
            return answer, data
        interim += 1
        if interim > MAX_INTERIM:
            raise Unreachable(f"more than {MAX_INTERIM} interim (1xx) answers")


def drain(recv: Callable[[], bytes], answer: Answer, received: bytes) -> None:
    """Read the body (at most MAX_BODY_BYTES, until its Content-Length or the end) so the server is not reset."""
    if answer.status in (204, 304):
        return
    length = delta_seconds(answer.get("content-length"))
    want = MAX_BODY_BYTES if length is None else min(length, MAX_BODY_BYTES)
    with contextlib.suppress(OSError):
        while len(received) < want and (chunk := recv()):
            received += chunk
