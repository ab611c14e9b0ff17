"""Send many requests quickly over one connection with HTTP/1.1 pipelining (test helper)."""

import socket
from collections.abc import Iterable


def pipeline(port: int, requests: Iterable[bytes], batch: int = 500) -> list[int]:
    """Send raw requests in pipelined batches; return the status codes in order."""
    statuses: list[int] = []
    pending = list(requests)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        for start in range(0, len(pending), batch):
            chunk = pending[start : start + batch]
            s.sendall(b"".join(chunk))
            statuses += _read_statuses(s, len(chunk))
    return statuses


def _read_statuses(s: socket.socket, count: int) -> list[int]:
    buffer = b""
    statuses: list[int] = []
    while len(statuses) < count:
        data = s.recv(1 << 20)
        if not data:
            raise ConnectionError(f"server closed after {len(statuses)} of {count} responses")
        buffer += data
        while True:
            head_end = buffer.find(b"\r\n\r\n")
            if head_end < 0:
                break
            head = buffer[:head_end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            if len(buffer) < head_end + 4 + length:
                break
            statuses.append(int(head[9:12]))
            buffer = buffer[head_end + 4 + length :]
    return statuses


def preflight_bytes(origin: str, method: str = "GET", path: str = "/api", forwarded: str | None = None) -> bytes:
    lines = [f"OPTIONS {path} HTTP/1.1", "Host: test", f"Origin: {origin}", f"Access-Control-Request-Method: {method}"]
    if forwarded is not None:
        lines.append(f"X-Forwarded-For: {forwarded}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
