"""docs/server.md stays true: every ```http exchange in it is sent to a real
``policyengine serve`` and the answer must be the one printed.

An exchange is a request (request line, headers), a blank line, and the response as the
server gives it (status line, headers but ``date``, body). A header value written
``{FILE as $ssl_client_escaped_cert}`` is that certificate file percent-encoded as nginx
sends it; ``{FILE as base64 DER}`` as App Service, Caddy and Traefik send it. After an
intended change of output: ``UPDATE_DOCS=1 pytest tests/test_docs_server.py``.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "server.md"
SERVED = ["policies/nginx-partner.yaml", "policies/partner-roles.yaml"]
BLOCK = re.compile(r"```http\n(?P<request>.*?)\n\n(?P<response>HTTP/1\.1 .*?)```", re.S)
PLACEHOLDER = re.compile(r"\{(?P<file>[^ }]+) as (?P<form>\$ssl_client_escaped_cert|base64 DER)\}")


def _exchanges() -> list[tuple[str, str]]:
    return [(m.group("request"), m.group("response")) for m in BLOCK.finditer(PAGE.read_text())]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "policyengine", "serve", *SERVED, "--http", f"127.0.0.1:{port}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=15)


def _value(text: str) -> str:
    def fill(match: re.Match[str]) -> str:
        pem = (ROOT / match.group("file")).read_bytes()
        if match.group("form") == "base64 DER":
            der = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
            return base64.b64encode(der).decode()
        return quote(pem.decode(), safe="")

    return PLACEHOLDER.sub(fill, text)


def _send(base: str, request: str) -> str:
    line, *header_lines = request.splitlines()
    method, target, _ = line.split(" ")
    headers = [tuple(part.strip() for part in h.split(":", 1)) for h in header_lines]
    sent = [(name, _value(value)) for name, value in headers if name.lower() != "host"]
    response = httpx.request(method, base + target, headers=sent, timeout=10)
    shown = [f"HTTP/1.1 {response.status_code} {response.reason_phrase}"]
    shown += [f"{k}: {v}" for k, v in response.headers.items() if k != "date"]
    body = response.text.rstrip("\n")
    return "\n".join(shown) + "\n" + (f"\n{body}\n" if body else "")


@pytest.mark.parametrize(("request_text", "expected"), _exchanges(), ids=lambda t: t[:50])
def test_exchange_is_real(server: str, request_text: str, expected: str) -> None:
    actual = _send(server, request_text)
    if os.environ.get("UPDATE_DOCS") == "1" and actual != expected:
        text = PAGE.read_text()
        PAGE.write_text(
            text.replace(f"{request_text}\n\n{expected}", f"{request_text}\n\n{actual}", 1)
        )
        return
    assert actual == expected


def test_the_page_has_exchanges() -> None:
    assert len(_exchanges()) >= 6
