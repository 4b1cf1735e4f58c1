"""The gunicorn worker of `make run` and the image: threads that only ever see complete requests.

gunicorn's threaded worker (gthread) hands a connection to a thread as soon as its first bytes arrive, and the
thread then blocks in recv() until the request is complete, however slowly the rest comes: gunicorn has no
header or body read timeout. With sync workers it was worse (one slow client per worker). Here the worker's
event loop collects each request without blocking, as a buffering proxy does, and hands the connection to
the thread pool only when the request head and its whole body are there. A client has `client_timeout`
seconds for a whole request (counted from the connection's accept, or from the first byte of a later request
on a kept-alive connection) and for taking in the answer; after that it is closed. Slow clients then cost a
socket and a buffer each, no thread.

gunicorn also closes a connection "gracefully" by waiting up to 2 s, in its event loop, for the client to
close its side; a client that never does stalled the whole worker. That wait happens in the event loop here
without blocking it.

Plain HTTP/1.1 only (TLS ends at the proxy in front, see deploy/nginx).
"""

from __future__ import annotations

import enum
import errno
import selectors
import socket
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from gunicorn import util
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers.gthread import TConn, ThreadWorker

READ_SIZE = 64 * 1024
# A request head (request line and headers) longer than this is refused with 431 before any thread sees it.
MAX_HEAD_BYTES = 64 * 1024
# Bodies are collected up to what the app accepts (Flask's MAX_CONTENT_LENGTH), or this when it does not say.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# How long a closing connection may keep sending before it is cut (gunicorn's own graceful close waits 2 s).
LINGER_SECONDS = 2.0


class Framing(enum.Enum):
    """How far the bytes collected on a connection are from a request a thread can run without waiting."""

    INCOMPLETE = "incomplete"          # wait for more
    COMPLETE = "complete"              # the head and the whole body are here
    STREAM = "stream"                  # the head is here; the thread reads the body (Expect: 100-continue)
    OVERSIZED = "oversized"            # the body is larger than the app takes: answer without it, then close
    HEAD_TOO_LARGE = "head_too_large"  # no end of the head within MAX_HEAD_BYTES


def _chunked_end(buffer: bytes | bytearray, start: int) -> bool:
    """Whether a chunked body starting at `start` ends (last chunk and trailers) within `buffer`."""
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return False
        size = bytes(buffer[position:line_end]).split(b";", 1)[0].strip()
        if not size or any(c not in b"0123456789abcdefABCDEF" for c in size):
            return True  # malformed: gunicorn's parser answers 400 without reading further
        if int(size, 16) == 0:
            # Trailer fields, if any, end with an empty line.
            return buffer.startswith(b"\r\n", line_end + 2) or buffer.find(b"\r\n\r\n", line_end) >= 0
        position = line_end + 2 + int(size, 16) + 2
        if position > len(buffer):
            return False


def framing(buffer: bytes | bytearray, max_body: int) -> Framing:
    """Say whether `buffer` holds a whole request; only the framing is looked at, gunicorn validates the rest."""
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0 or head_end > MAX_HEAD_BYTES:
        return Framing.HEAD_TOO_LARGE if len(buffer) > MAX_HEAD_BYTES else Framing.INCOMPLETE
    lines = bytes(buffer[:head_end]).split(b"\r\n")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if colon:
            headers.setdefault(name.strip().lower(), value.strip().lower())
    body_start = head_end + 4
    received = len(buffer) - body_start
    expects_continue = headers.get(b"expect") == b"100-continue" and lines[0].endswith(b"HTTP/1.1")
    if b"transfer-encoding" in headers:
        if _chunked_end(buffer, body_start):
            return Framing.COMPLETE
        # Chunk sizes add a few bytes per chunk; far past the limit, let the thread read and refuse it.
        return Framing.STREAM if expects_continue or received > 2 * max_body else Framing.INCOMPLETE
    length = headers.get(b"content-length")
    if length is None:
        return Framing.COMPLETE
    if not length.isdigit():
        return Framing.COMPLETE  # gunicorn's parser refuses it
    if int(length) > max_body:
        return Framing.OVERSIZED
    if received >= int(length):
        return Framing.COMPLETE
    return Framing.STREAM if expects_continue else Framing.INCOMPLETE


class DeadlineUnreader(SocketUnreader):
    """gunicorn's socket reader, but a read in a thread (a streamed body) ends at the connection's deadline."""

    def __init__(self, conn: CollectedConn) -> None:
        super().__init__(conn.sock)
        self.conn = conn

    def chunk(self, size_hint: int | None = None) -> bytes:
        remaining = self.conn.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the client took too long to send its request")
        previous = self.sock.gettimeout()
        self.sock.settimeout(remaining)
        try:
            return super().chunk(size_hint)
        finally:
            self.sock.settimeout(previous)


class CollectedConn(TConn):
    """A connection whose requests the event loop collects before a thread parses them."""

    def __init__(self, cfg: Any, sock: socket.socket, client: Any, server: Any,
                 linger: Callable[[CollectedConn], None]) -> None:
        super().__init__(cfg, sock, client, server)
        self.buffer = bytearray()
        self.deadline = 0.0
        self.close_after = False  # the body was never read: do not keep the connection
        self.lingering = False
        self._linger = linger

    def init(self) -> None:
        """Set up gunicorn's parser (once) and put the collected request in front of it."""
        first = not self.initialized
        super().init()
        if first:
            self.parser.unreader = DeadlineUnreader(self)
        if self.buffer:
            self.parser.unreader.unread(bytes(self.buffer))
            self.buffer = bytearray()

    def close(self, graceful: bool = False) -> None:
        """Close; a graceful close waits for the client in the event loop instead of blocking it."""
        if graceful:
            self._linger(self)
        else:
            super().close()


class BufferingWorker(ThreadWorker):
    """gthread, with requests collected by the event loop and a deadline for each (see the module docstring)."""

    client_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Connections the event loop reads from (collecting a request, or lingering before the close);
        # insertion order is deadline order except for lingering ones, so expiry looks at all of them.
        self.collecting: dict[CollectedConn, None] = {}
        self.max_body = DEFAULT_MAX_BODY_BYTES

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        """Refuse settings this worker does not serve: TLS and HTTP/2 belong to the proxy in front."""
        super().check_config(cfg, log)
        if cfg.is_ssl or "h2" in cfg.http_protocols:
            raise RuntimeError(f"{cls.__name__} serves plain HTTP/1.1: terminate TLS and HTTP/2 in the proxy")

    def run(self) -> None:
        """Learn the app's body limit, then run gunicorn's event loop."""
        config = getattr(self.wsgi, "config", None) or {}
        self.max_body = config.get("MAX_CONTENT_LENGTH") or DEFAULT_MAX_BODY_BYTES
        super().run()

    def accept(self, listener: socket.socket) -> None:
        """Accept a connection and start collecting its first request."""
        try:
            sock, client = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        self._collect(CollectedConn(self.cfg, sock, client, listener.getsockname(), self._linger))

    def enqueue_req(self, conn: CollectedConn) -> None:
        """Collect the next request of a kept-alive connection (gunicorn calls this when it turns readable,
        or when the previous request left part of the next one read)."""
        self._collect(conn, conn.parser.unreader.take_buffered() if conn.parser is not None else b"")

    def _collect(self, conn: CollectedConn, data: bytes = b"") -> None:
        conn.buffer = bytearray(data)
        conn.deadline = time.monotonic() + self.client_timeout
        conn.close_after = False
        conn.sock.setblocking(False)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))
        self.collecting[conn] = None
        if data:
            self._advance(conn)

    def _on_readable(self, conn: CollectedConn, _sock: socket.socket) -> None:
        try:
            data = conn.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)
        elif not conn.lingering:
            conn.buffer += data
            self._advance(conn)

    def _advance(self, conn: CollectedConn) -> None:
        state = framing(conn.buffer, self.max_body)
        if state is Framing.INCOMPLETE:
            return
        self._forget(conn)
        if state is Framing.HEAD_TOO_LARGE:
            self.nr_conns -= 1
            try:
                conn.sock.send(b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n"
                               b"Content-Length: 0\r\n\r\n")
            except OSError:
                pass
            self._linger(conn)
            return
        conn.close_after = state is Framing.OVERSIZED
        conn.data_ready = True
        super().enqueue_req(conn)

    def _linger(self, conn: CollectedConn) -> None:
        """Close after the client has had our answer: send FIN, then discard what it still sends until it
        closes too or LINGER_SECONDS pass (closing with unread input would reset the answer away)."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            util.close(conn.sock)
            return
        conn.sock.setblocking(False)
        conn.lingering = True
        conn.deadline = time.monotonic() + LINGER_SECONDS
        try:
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))
        except (ValueError, OSError):
            util.close(conn.sock)
            return
        self.nr_conns += 1
        self.collecting[conn] = None

    def _forget(self, conn: CollectedConn) -> None:
        self.collecting.pop(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def _close(self, conn: CollectedConn) -> None:
        self._forget(conn)
        self.nr_conns -= 1
        util.close(conn.sock)

    def murder_pending(self) -> None:
        """Close connections past their deadline (called by gunicorn's event loop about once a second)."""
        super().murder_pending()
        now = time.monotonic()
        for conn in [c for c in self.collecting if c.deadline <= now]:
            self._close(conn)

    def handle_request(self, req: Any, conn: CollectedConn) -> bool:
        """Run one request in this thread; the answer, too, must leave within the client timeout."""
        conn.sock.settimeout(self.client_timeout)  # a client that stops reading holds the thread no longer
        return super().handle_request(req, conn)

    def _keepalive_after(self, conn: CollectedConn, keepalive: bool) -> bool:
        # An oversized body was never read: close rather than drain it in this thread.
        return False if conn.close_after else super()._keepalive_after(conn, keepalive)
