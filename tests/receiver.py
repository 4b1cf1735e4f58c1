"""A real local HTTP endpoint that records what it receives, for webhook tests."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """Listens on 127.0.0.1:`port`; answers with the next of `statuses` (then 200); keeps every request.

    A 3xx answer carries `Location: <location>`. Requests of any method are recorded: `received` holds
    (headers, body), `methods` the method and `peers` the client's (address, port) of each, so a test sees
    a redirect that was followed and whether requests shared one keep-alive connection (HTTP/1.1).
    """

    def __init__(self, port: int, statuses: list[int] | None = None, *, location: str | None = None) -> None:
        self.port, self.statuses, self.location = port, list(statuses or []), location
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.methods: list[str] = []
        self.peers: list[tuple[str, int]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.received.append((dict(self.headers), body))
                    receiver.methods.append(self.command)
                    receiver.peers.append(self.client_address)
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if 300 <= status < 400 and receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET = do_PUT = do_HEAD = _answer  # noqa: N815 (http.server's naming)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/kommentare"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
