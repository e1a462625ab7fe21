"""A fault-injecting HTTP proxy on 127.0.0.1 in front of fake-gcs-server, run in a thread.

Requests pass through unchanged unless a rule matches: then the proxy answers 503 or 403, drops
the connection without an answer, delays, holds the request until the test releases it, cuts an
upload in half on its way to the server, flips a byte of the answer (its checksum header no longer
matches), or stops listening for a while (new connections refused, open ones dropped: the server
is down).
"""

import http.client
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


@dataclass
class Rule:
    match: Callable[[str, str, bytes], bool]  # (method, path, body)
    action: str  # "503" | "403" | "drop" | "delay" | "hold" | "cut" | "corrupt" | "outage"
    times: int = 1  # how many matching requests it applies to
    seconds: float = 0.0  # delay, or length of the outage, or the longest hold
    hits: int = 0
    release: threading.Event = field(default_factory=threading.Event)  # ends a hold


def body_has(fragment: bytes) -> Callable[[str, str, bytes], bool]:
    """Matches uploads whose body names the object (the JSON metadata of a GCS upload)."""
    return lambda method, path, body: method in ("POST", "PUT") and fragment in body


class FaultProxy:
    def __init__(self, upstream: str):
        self.upstream = upstream.removeprefix("http://")
        self.rules: list[Rule] = []
        self.requests = 0
        self.down_until = 0.0
        self._lock = threading.Lock()
        self._server = self._serve(0)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def add(self, rule: Rule) -> Rule:
        self.rules.append(rule)
        return rule

    def _serve(self, port: int) -> ThreadingHTTPServer:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                rule = proxy._rule(self.command, self.path, body)
                if time.time() < proxy.down_until or (rule and rule.action in ("drop", "outage")):
                    if rule and rule.action == "outage":
                        proxy._outage(rule.seconds)
                    self.close_connection = True
                    return
                if rule and rule.action in ("503", "403"):
                    code = int(rule.action)
                    payload = b'{"error": {"code": %d, "message": "injected by the test proxy"}}' % code
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if rule and rule.action == "cut":
                    proxy._forward_half(self.command, self.path, self.headers, body)
                    self.close_connection = True
                    return
                if rule and rule.action == "delay":
                    time.sleep(rule.seconds)
                if rule and rule.action == "hold":
                    rule.release.wait(rule.seconds)
                status, headers, payload = proxy._forward(self.command, self.path, self.headers, body)
                if rule and rule.action == "corrupt" and payload:
                    payload = bytes([payload[0] ^ 0xFF]) + payload[1:]
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return server

    def _rule(self, method: str, path: str, body: bytes) -> Rule | None:
        with self._lock:
            self.requests += 1
            for rule in self.rules:
                if rule.hits < rule.times and rule.match(method, path, body):
                    rule.hits += 1
                    return rule
        return None

    def _forward(self, method, path, headers, body):
        conn = http.client.HTTPConnection(self.upstream, timeout=60)
        try:
            conn.request(
                method, path, body=body, headers={k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
            )
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def _forward_half(self, method, path, headers, body):
        """Send the request with its full Content-Length but only half of its body, then hang up."""
        host, port = self.upstream.split(":")
        with socket.create_connection((host, int(port))) as s:
            lines = [f"{method} {path} HTTP/1.1"] + [
                f"{k}: {v}" for k, v in headers.items() if k.lower() not in HOP_BY_HOP
            ]
            s.sendall(("\r\n".join(lines) + "\r\nConnection: close\r\n\r\n").encode() + body[: len(body) // 2])
            time.sleep(0.2)

    def _outage(self, seconds: float) -> None:
        """Stop listening (connections refused) and drop every request for `seconds`."""
        self.down_until = time.time() + seconds
        server = self._server

        def restart():
            server.shutdown()
            server.server_close()
            time.sleep(max(0.0, self.down_until - time.time()))
            self._server = self._serve(self.port)

        threading.Thread(target=restart, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
