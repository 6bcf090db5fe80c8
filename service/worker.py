"""The gunicorn worker convserve serves with: gthread, where slow clients hold no thread.

The probes and `/metrics` (CONTROL_PATHS) are handed to two control threads of their own, so
they are answered in milliseconds while every request thread waits for or runs inference. What
could still take the request threads away is a client that sends its request slowly:
gunicorn's gthread worker waits for the first bytes off-thread, but then reads headers and body
with blocking calls, so a body trickling in at one byte a second holds a thread for as long as
the client likes (before this worker: 59 s for one client, and two of them stalled every health
probe 14–19 s).

So a request is gathered in the worker's event loop, without a thread, until its headers and
its body (or its first GATHER_BYTES of body: a client that fast gets a thread for the rest)
have arrived; only then does a thread take it. A request must arrive within
`CONVSERVE_REQUEST_READ_TIMEOUT` seconds of its first byte (default 60) and no read waits more
than `CONVSERVE_READ_IDLE_TIMEOUT` seconds for data (default 10); past either, the client gets
`408 Request Timeout` (problem+json) and the connection is closed, whether the event loop or a
thread (reading the rest of a large body) was waiting for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import socket
import time
from concurrent import futures
from functools import partial
from typing import Any

from gunicorn.http.errors import NoMoreData
from gunicorn.workers.gthread import ThreadWorker

from .errors import RequestTimeout

#: Body bytes gathered before a thread takes the request (a client this fast is not a trickler).
GATHER_BYTES = 256 * 1024
#: Headers longer than this are left to gunicorn, which refuses them with its own limits.
HEADER_BYTES = 64 * 1024
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_EXPECT_CONTINUE = re.compile(rb"\r\nexpect:[ \t]*100-continue", re.IGNORECASE)
READ_TIMEOUT_ENV = "CONVSERVE_REQUEST_READ_TIMEOUT"
IDLE_TIMEOUT_ENV = "CONVSERVE_READ_IDLE_TIMEOUT"


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be above 0, got {raw!r}")
    return value


class ClientTooSlow(NoMoreData, RequestTimeout):
    """The client did not send its request in time (408). A NoMoreData to gunicorn, which then
    closes the connection quietly; a ConvserveError to the application's error handler."""

    def __init__(self, detail: str):
        NoMoreData.__init__(self, None)
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


class DeadlineSocket:
    """A socket whose reads fail once the request has taken too long to arrive."""

    def __init__(self, sock: socket.socket, total: float, idle: float):
        self._sock = sock
        self._total = total
        self._idle = idle
        self.deadline = time.monotonic() + total

    def restart(self) -> None:
        """A new request begins on this connection: it gets the whole time again."""
        self.deadline = time.monotonic() + self._total

    def _before_read(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ClientTooSlow(
                f"the request was not received within {self._total:g} s "
                f"({READ_TIMEOUT_ENV}); send it faster or raise the limit"
            )
        self._sock.settimeout(min(left, self._idle))

    def _read(self, fn: Any, *args: Any) -> Any:
        self._before_read()
        try:
            return fn(*args)
        except TimeoutError:
            left = self.deadline - time.monotonic()
            raise ClientTooSlow(
                f"the client sent nothing for {self._idle:g} s ({IDLE_TIMEOUT_ENV})"
                if left > 0
                else f"the request was not received within {self._total:g} s ({READ_TIMEOUT_ENV})"
            ) from None

    def recv(self, *args: Any) -> bytes:
        return self._read(self._sock.recv, *args)

    def recv_into(self, *args: Any) -> int:
        return self._read(self._sock.recv_into, *args)

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _raw(sock: Any) -> socket.socket:
    """The socket itself, without the deadline (the event loop never blocks on a read)."""
    return sock._sock if isinstance(sock, DeadlineSocket) else sock


def request_arrived(buf: bytes | bytearray) -> bool:
    """Whether a thread should take the request in `buf`: its headers are complete, and so is
    its body or GATHER_BYTES of it (or the client waits for `100 Continue` before sending it)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return len(buf) > HEADER_BYTES
    head = bytes(buf[:end])
    if _EXPECT_CONTINUE.search(head):
        return True
    match = _CONTENT_LENGTH.search(head)
    body = len(buf) - end - 4
    if match is not None:
        return body >= min(int(match.group(1)), GATHER_BYTES)
    if b"chunked" in head.lower():
        return body >= GATHER_BYTES or buf.endswith(b"0\r\n\r\n")
    return True  # no body


#: Requests the worker's control threads answer, never queued behind inference: the probes and
#: the metrics. They are cheap and bounded, so two threads keep them answered whatever the
#: request threads are doing, and the request threads can be sized for throughput alone.
CONTROL_PATHS = frozenset(
    (b"/healthz", b"/readyz", b"/metrics", b"/v2/health/live", b"/v2/health/ready")
)
CONTROL_THREADS = 2


def is_control(head: bytes) -> bool:
    """Whether the request starting `head` is a GET or HEAD of one of CONTROL_PATHS."""
    parts = head[: head.find(b"\r\n")].split(b" ")
    if len(parts) != 3 or parts[0] not in (b"GET", b"HEAD"):
        return False
    return parts[1].partition(b"?")[0] in CONTROL_PATHS


def timeout_response(detail: str) -> bytes:
    body = json.dumps(
        {
            "type": "urn:convserve:problem:request-timeout",
            "title": "Request Timeout",
            "status": 408,
            "detail": detail,
        }
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class Worker(ThreadWorker):
    """gunicorn's gthread worker: requests gathered off-thread, with deadlines on reading."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.read_timeout = _seconds(READ_TIMEOUT_ENV, 60.0)
        self.idle_timeout = _seconds(IDLE_TIMEOUT_ENV, 10.0)
        self.gathering: dict[int, Any] = {}  # id(conn) -> conn, while their request arrives

    def init_process(self) -> None:
        self.control = futures.ThreadPoolExecutor(CONTROL_THREADS, thread_name_prefix="control")
        super().init_process()  # runs the worker's loop until it exits

    # -- gathering in the event loop -----------------------------------------------------

    def enqueue_req(self, conn: Any) -> None:
        leftover = conn.parser is not None and conn.parser.unreader.buf.getvalue()
        if getattr(conn, "gathered", None) is not None or leftover:
            # The next request is already here (pipelined, or read ahead): a thread takes it.
            conn.read_deadline = time.monotonic() + self.read_timeout
            return super().enqueue_req(conn)
        conn.gathered = None
        conn.buf = bytearray()
        conn.first_byte = None
        conn.last_byte = time.monotonic()
        _raw(conn.sock).setblocking(False)
        self._gather(conn)

    def _on_readable(self, conn: Any, _client: Any) -> None:
        self._gather(conn)

    def _gather(self, conn: Any) -> None:
        while True:
            try:
                chunk = _raw(conn.sock).recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                return self._close(conn)
            if not chunk:
                return self._close(conn)  # the client went away
            now = time.monotonic()
            if conn.first_byte is None:
                conn.first_byte = now
            conn.last_byte = now
            conn.buf += chunk
            if request_arrived(conn.buf):
                return self._hand_over(conn)
        if id(conn) not in self.gathering:
            self.gathering[id(conn)] = conn
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _hand_over(self, conn: Any) -> None:
        if self.gathering.pop(id(conn), None) is not None:
            self.poller.unregister(conn.sock)
        conn.gathered, conn.buf = bytes(conn.buf), None
        conn.data_ready = True
        started = conn.first_byte or time.monotonic()
        conn.read_deadline = started + self.read_timeout
        if is_control(conn.gathered):
            fs = self.control.submit(self.handle, conn)
            fs.add_done_callback(
                lambda fut: self.method_queue.defer(self.finish_request, conn, fut)
            )
        else:
            super().enqueue_req(conn)

    def _close(self, conn: Any, answer: bytes | None = None) -> None:
        if self.gathering.pop(id(conn), None) is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(conn.sock)
        if answer:
            with contextlib.suppress(OSError):
                _raw(conn.sock).send(answer)  # best effort: the socket is non-blocking
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        super().murder_pending()
        for conn in list(self.gathering.values()):
            if self._overdue(conn) is None:
                continue
            # Take what arrived since the last poll first: a starved event loop must not cut off
            # a client whose bytes are already waiting on the socket.
            self._gather(conn)
            if id(conn) not in self.gathering:
                continue  # handed to a thread, or closed by the client
            detail = self._overdue(conn)
            if detail == "":
                self._close(conn)  # an idle connection that never started a request
            elif detail is not None:
                self._close(conn, timeout_response(f"{detail}; send the request faster"))

    def _overdue(self, conn: Any) -> str | None:
        """Why `conn` is past its time ("" for idle before any request), or None."""
        now = time.monotonic()
        if conn.first_byte is None:
            return "" if now - conn.last_byte > self.cfg.keepalive else None
        if now - conn.first_byte > self.read_timeout:
            return f"the request was not received within {self.read_timeout:g} s"
        if now - conn.last_byte > self.idle_timeout:
            return f"the client sent nothing for {self.idle_timeout:g} s"
        return None

    # -- in a thread ------------------------------------------------------------------------

    def handle(self, conn: Any) -> Any:
        sock = conn.sock
        if not isinstance(sock, DeadlineSocket):
            conn.sock = sock = DeadlineSocket(sock, self.read_timeout, self.idle_timeout)
            if conn.parser is not None:
                conn.parser.unreader.sock = sock
        sock.deadline = getattr(conn, "read_deadline", None) or time.monotonic() + self.read_timeout
        gathered, conn.gathered = getattr(conn, "gathered", None), None
        if gathered:
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(gathered)
        return super().handle(conn)
