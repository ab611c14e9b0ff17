"""The request headers that decide a message's framing and its connection.

They are llhttp's and uvicorn's to act on, never the fast path's: the strict
head reader (``http.head``) leaves any head carrying one to httptools, the
parsed fast path never answers a request at its head when one may announce a
body or a protocol switch, and the bounded protocol ends the connection after
an Upgrade (``http.protocol``).
"""

from __future__ import annotations

CONTENT_LENGTH = b"content-length"
TRANSFER_ENCODING = b"transfer-encoding"
CONNECTION = b"connection"
PROXY_CONNECTION = b"proxy-connection"
UPGRADE = b"upgrade"
EXPECT = b"expect"

FRAMING_HEADERS = (CONTENT_LENGTH, TRANSFER_ENCODING, CONNECTION, PROXY_CONNECTION, UPGRADE, EXPECT)
# A request carrying one of these (or a Content-Length other than 0) may have a body or switch protocols.
BODY_OR_UPGRADE = (TRANSFER_ENCODING, EXPECT, UPGRADE)
