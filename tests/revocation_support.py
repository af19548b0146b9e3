"""What the revocation tests share: deciding a certificate with its trace, reading the
trace's line for ``revoked``, a loopback port nothing listens on, and a local HTTP server
for what a real responder cannot be made to answer."""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TypeVar

from policyengine import Decision, Policy
from policyengine.evaluation.trace import TraceNode
from policyengine.testing import IssuedCertificate


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def revoked_said(decision: Decision) -> str:
    """The trace's line for ``revoked``: its outcome and detail."""
    assert decision.trace is not None
    found: list[str] = []

    def walk(node: TraceNode) -> None:
        if node.text == "revoked" and node.outcome != "skipped":
            found.append(f"{node.outcome} {node.detail}")
        for child in node.children:
            walk(child)

    for rule in decision.trace.rules:
        walk(rule.node)
    assert found, "revoked was not evaluated"
    return found[0]


E = TypeVar("E")


def evidence_of(policy: Policy, kind: type[E]) -> E:
    """The policy's trust store's evidence of ``kind`` (OcspEvidence, ...)."""
    store = policy.trust
    assert store is not None
    found = [e for e in store._revocation.evidence if isinstance(e, kind)]
    assert found, f"the policy asks no {kind.__name__}"
    return found[0]


def decide(policy: Policy, cert: IssuedCertificate, now: datetime | None = None) -> Decision:
    return policy.evaluate(cert.pem, now=now or datetime.now(UTC), explain=True)


class Answering(http.server.BaseHTTPRequestHandler):
    """A request handler with the answers the tests' servers give."""

    content_type = "application/octet-stream"

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client gave up (the size cap, the timeout)
            self.wfile.write(body)

    def redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Quiet(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that gave up (the size cap, the timeout) is what the tests want


@contextlib.contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` served on a loopback port, in threads: the base URL."""
    server = _Quiet(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
