"""Embedding the wscore core in a server that does its own I/O and its own HTTP: a threaded echo server
with plain blocking sockets, one thread per connection.

    python examples/embed_blocking.py --port 8765 --heartbeat 20
    # then, e.g.: python -m websockets ws://127.0.0.1:8765/

What the host does, and what the core does:

1. The host reads and parses the HTTP request itself (here a few lines; in a framework, its parser),
   then hands it over with `ServerConnection.receive_request(Request.build(...))`.
2. `accept(extra_headers=...)` validates the upgrade, picks the subprotocol, negotiates
   permessage-deflate and returns the 101 response's headers; it writes nothing, the host writes the
   response. A refused upgrade raises `HandshakeError` with the status to send (`build_response`).
3. After that: bytes read go to `receive_data(data, now)`, the events come out of `events()`, the
   bytes to write out of `data_to_send()`, and `close_transport` says when to close the socket.
4. Timers: the host asks `next_deadline()` and calls `handle_timer(now)` when it passes; here that is
   the socket's receive timeout. The core does the rest: heartbeat pings, dropping a peer that does
   not answer them, and the close handshake's timeout.
"""

from __future__ import annotations

import argparse
import signal
import socket
import threading
import time
from email.utils import formatdate

from wscore import DeflateOptions, HandshakeError, Request, ServerConnection, WSConfig, WSMsgType
from wscore.handshake import build_response

MAX_REQUEST = 16 * 1024
POLL = 0.5  # how often an idle connection thread looks at the shutdown flag
WRITE_TIMEOUT = 10.0


def read_request(sock: socket.socket) -> tuple[Request, bytes] | None:
    """The host's own HTTP parsing: read up to the blank line; return the request and the bytes after it."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk or len(buf) > MAX_REQUEST:
            return None
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, version = request_line.split(" ", 2)
    headers = []
    for line in lines:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return Request.build(method, target, headers, version.removeprefix("HTTP/")), rest


def http_response(status: int, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    """The host's own HTTP writing."""
    reason = {101: "Switching Protocols", 404: "Not Found"}.get(status, "")
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class EchoServer:
    """Echoes every text and binary message back; speaks the `echo` subprotocol if asked."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8765, *, heartbeat: float | None = 20.0) -> None:
        self.address = (host, port)
        self.config = WSConfig(heartbeat=heartbeat, compress=DeflateOptions(), close_timeout=5.0)
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def serve_forever(self, on_ready: threading.Event | None = None) -> None:
        """Accept connections until `shutdown()`; each runs in its own thread."""
        with socket.create_server(self.address) as listener:
            listener.settimeout(POLL)
            self.address = listener.getsockname()[:2]
            print(f"listening on ws://{self.address[0]}:{self.address[1]}/", flush=True)
            if on_ready is not None:
                on_ready.set()
            while not self.stopping.is_set():
                try:
                    sock, _ = listener.accept()
                except TimeoutError:
                    continue
                thread = threading.Thread(target=self.handle, args=(sock,), daemon=True)
                self.threads = [t for t in self.threads if t.is_alive()]
                self.threads.append(thread)
                thread.start()
        for thread in self.threads:
            thread.join()

    def shutdown(self) -> None:
        """Stop accepting; open connections close with 1001 (going away) within POLL seconds."""
        self.stopping.set()

    def handle(self, sock: socket.socket) -> None:
        """One connection, from the HTTP request to the closed socket."""
        with sock:
            sock.settimeout(WRITE_TIMEOUT)
            try:
                parsed = read_request(sock)
                if parsed is not None:
                    self.run(sock, *parsed)
            except OSError:
                pass  # the peer vanished; nothing more to do for it

    def run(self, sock: socket.socket, request: Request, rest: bytes) -> None:
        """The handshake through `accept()`, then the connection driven by the core."""
        if request.path != "/":
            sock.sendall(http_response(*build_response(404, [], b"no WebSocket here\n")))
            return
        conn = ServerConnection(subprotocols=["echo"], config=self.config)
        conn.receive_request(request, now=time.monotonic())
        try:
            headers = conn.accept(
                extra_headers=[("Server", "embed-blocking/1.0"), ("Date", formatdate(usegmt=True))],
                now=time.monotonic(),
            )
        except HandshakeError as exc:  # not a valid upgrade: the host writes the refusal
            status, fields, body = build_response(exc.status or 400, exc.headers, exc.reason.encode())
            sock.sendall(http_response(status, fields, body))
            return
        sock.sendall(http_response(101, headers))
        if rest:  # frames a client sent without waiting for the 101
            conn.receive_data(rest, now=time.monotonic())

        while True:
            for event in conn.events():
                if event.type is WSMsgType.TEXT:
                    conn.send_text(event.data)
                elif event.type is WSMsgType.BINARY:
                    conn.send_bytes(event.data)
            out = conn.data_to_send()
            if out:
                sock.settimeout(WRITE_TIMEOUT)
                sock.sendall(out)
            if conn.close_transport:
                return
            now = time.monotonic()
            if self.stopping.is_set() and conn.close(1001, "server shutting down", now=now):
                continue  # write the close frame; then wait for the reply, within the close timeout
            deadline = conn.next_deadline()
            if deadline is not None and deadline <= now:
                conn.handle_timer(now)
                continue
            sock.settimeout(POLL if deadline is None else min(POLL, deadline - now))
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue  # the loop re-reads the deadline and the shutdown flag
            except OSError:
                data = b""
            if data:
                conn.receive_data(data, now=time.monotonic())
            else:
                conn.receive_eof()


def main() -> None:
    """Run the echo server until Ctrl-C (or SIGINT), then close every connection with 1001."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--heartbeat", type=float, default=20.0, help="seconds of silence before a ping")
    args = parser.parse_args()
    server = EchoServer(args.host, args.port, heartbeat=args.heartbeat or None)
    # Ctrl-C only sets the flag: the accept loop and every connection thread poll it (a
    # KeyboardInterrupt raised inside Thread.join could leave threads unjoined).
    signal.signal(signal.SIGINT, lambda signum, frame: server.shutdown())
    signal.signal(signal.SIGTERM, lambda signum, frame: server.shutdown())
    server.serve_forever()
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
