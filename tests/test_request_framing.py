"""The gunicorn worker's test for "the whole request is here" (moderation/server.py), and the settings it
refuses, without a server."""

from __future__ import annotations

import pytest
from gunicorn.config import Config

from moderation.server import MAX_HEAD_BYTES, BufferingWorker, Framing, framing

MAX_BODY = 100
GET = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"


def post(body: bytes, *headers: str, length: int | None = None) -> bytes:
    lines = ["POST /v1/score HTTP/1.1", "Host: t", *headers]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


CHUNKED = "Transfer-Encoding: chunked"
CASES = [
    ("nothing yet", b"", Framing.INCOMPLETE),
    ("half a request line", GET[:8], Framing.INCOMPLETE),
    ("head without its empty line", GET[:-2], Framing.INCOMPLETE),
    ("GET without a body", GET, Framing.COMPLETE),
    ("GET and the start of the next request", GET + GET[:10], Framing.COMPLETE),
    ("body complete", post(b'{"text":"x"}', length=12), Framing.COMPLETE),
    ("body not yet complete", post(b'{"text"', length=12), Framing.INCOMPLETE),
    ("header names in any case", post(b"{}", "cOnTeNt-LeNgTh: 5"), Framing.INCOMPLETE),
    ("Content-Length 0", post(b"", length=0), Framing.COMPLETE),
    ("Content-Length not a number: gunicorn refuses it", post(b"", "Content-Length: 1e3"), Framing.COMPLETE),
    ("body over the app's limit", post(b"", length=MAX_BODY + 1), Framing.OVERSIZED),
    ("body at the app's limit", post(b"x" * MAX_BODY, length=MAX_BODY), Framing.COMPLETE),
    ("Expect: 100-continue before the body", post(b"", "Expect: 100-continue", length=12), Framing.STREAM),
    ("Expect: 100-continue with the body", post(b"x" * 12, "Expect: 100-continue", length=12), Framing.COMPLETE),
    ("Expect: 100-continue in HTTP/1.0 means nothing",
     post(b"", "Expect: 100-continue", length=12).replace(b"HTTP/1.1", b"HTTP/1.0"), Framing.INCOMPLETE),
    ("chunked, complete", post(b"5\r\nhallo\r\n0\r\n\r\n", CHUNKED), Framing.COMPLETE),
    ("chunked, two chunks and an extension", post(b"2;x=y\r\nha\r\n3\r\nllo\r\n0\r\n\r\n", CHUNKED),
     Framing.COMPLETE),
    ("chunked, with a trailer", post(b"5\r\nhallo\r\n0\r\nX-T: 1\r\n\r\n", CHUNKED), Framing.COMPLETE),
    ("chunked, trailer not finished", post(b"5\r\nhallo\r\n0\r\nX-T: 1\r\n", CHUNKED), Framing.INCOMPLETE),
    ("chunked, last chunk missing", post(b"5\r\nhallo\r\n", CHUNKED), Framing.INCOMPLETE),
    ("chunked, inside a chunk", post(b"a\r\nhal", CHUNKED), Framing.INCOMPLETE),
    ("chunked, malformed size: gunicorn refuses it", post(b"zz\r\n", CHUNKED), Framing.COMPLETE),
    ("chunked, far over the limit", post(b"ffff\r\n" + b"x" * (2 * MAX_BODY + 1), CHUNKED), Framing.STREAM),
    ("head over the limit, unfinished", b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * (MAX_HEAD_BYTES // 6),
     Framing.HEAD_TOO_LARGE),
    ("head over the limit, finished", b"GET / HTTP/1.1\r\nX: " + b"y" * MAX_HEAD_BYTES + b"\r\n\r\n",
     Framing.HEAD_TOO_LARGE),
]


@pytest.mark.parametrize(("raw", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_framing(raw, expected):
    assert framing(raw, MAX_BODY) is expected
    assert framing(bytearray(raw), MAX_BODY) is expected


@pytest.mark.parametrize(("setting", "value"), [("certfile", "/etc/ssl/cert.pem"), ("http_protocols", "h1,h2")])
def test_tls_and_http2_are_left_to_the_proxy(setting, value):
    config = Config()
    BufferingWorker.check_config(config, None)  # the defaults pass
    config.set(setting, value)
    with pytest.raises(RuntimeError, match="plain HTTP/1.1"):
        BufferingWorker.check_config(config, None)
