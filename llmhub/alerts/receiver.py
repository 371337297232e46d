"""Local recording receivers for the channels: an HTTP server standing in for Slack, Teams,
PagerDuty and webhook endpoints, and an SMTP server (aiosmtpd) standing in for a mail relay.

They record every request (path, headers, JSON body, arrival time) and can be scripted to answer
with a status (429 with Retry-After, 5xx, 4xx) for the next N requests on a path, so tests, the
demo and the benchmark exercise the real clients against real sockets. Bound to 127.0.0.1 on a
port chosen by the OS.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

KEY_HEADER = "x-llmhub-notification-key"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes
    received_at: float  # time.time()
    status: int

    @property
    def keys(self) -> list[str]:
        value = self.headers.get(KEY_HEADER, "")
        return [k for k in value.split(",") if k]


@dataclass
class Scripted:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A sender killed mid-request (the SIGKILL test) resets its connections: not an error
        # of the receiver's.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class RecordingHTTPServer:
    """A threaded HTTP server recording POSTs; ``script(path, status, times, headers)`` makes
    the next ``times`` requests to ``path`` answer ``status``."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.requests: list[Received] = []
        self.accepted_count = 0
        self.delay_s = delay_s
        self._script: dict[str, deque[Scripted]] = defaultdict(deque)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # The status line + headers and the body are two writes: with Nagle on, the body
            # waited for the client's delayed ACK, about 40 ms per request on a keep-alive
            # connection (the sender spent 85% of its time in recv; benchmarks/alert_fanout.py).
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length)
                if server.delay_s:
                    time.sleep(server.delay_s)
                with server._lock:
                    queue = server._script.get(self.path)
                    answer = (
                        queue.popleft()
                        if queue
                        else Scripted(202 if "pagerduty" in self.path else 200)
                    )
                    try:
                        body = json.loads(raw) if raw else None
                    except ValueError:
                        body = raw.decode(errors="replace")
                    server.requests.append(
                        Received(
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            raw,
                            time.time(),
                            answer.status,
                        )
                    )
                    if answer.status < 300:
                        server.accepted_count += 1
                payload = (answer.body or ("ok" if answer.status < 300 else "error")).encode()
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(
        self,
        path: str,
        status: int,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: str = "",
    ) -> None:
        with self._lock:
            for _ in range(times):
                self._script[path].append(Scripted(status, headers or {}, body))

    def reset(self) -> None:
        """Forget every request recorded so far."""
        with self._lock:
            self.requests.clear()
            self.accepted_count = 0

    def accepted(self, path: str | None = None) -> list[Received]:
        """Requests answered 2xx (optionally to one path)."""
        with self._lock:
            return [r for r in self.requests if r.status < 300 and (path is None or r.path == path)]

    def start(self) -> RecordingHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> RecordingHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RecordingSMTPServer:
    """An aiosmtpd server on 127.0.0.1 that keeps every message it accepts."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[Message] = []
        outer = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                outer.messages.append(
                    message_from_bytes(envelope.original_content or envelope.content)
                )
                return "250 OK"

        # aiosmtpd probes its own port after starting, so it cannot bind port 0: take a free one.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=free)

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def start(self) -> RecordingSMTPServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> RecordingSMTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
