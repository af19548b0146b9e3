"""Fetching revocation evidence over HTTP: OCSP responses, CRLs from distribution points.

:class:`Fetcher` sends one request and returns the body, or raises :class:`FetchError`
with a reason fit for a trace. What it never does: follow a redirect (a responder that
points elsewhere is an error, not a new host to ask), read more than ``max_bytes``, take
longer than ``timeout`` in all (connecting, sending, and reading however slowly the
server drips the body), or ask a host outside ``allow_hosts`` (``*`` wildcards, matched
without regard to case). Only ``http`` and ``https`` URLs are fetched.

It is only ever handed URLs of certificates whose chain to an anchor has verified (the
revocation check runs after path validation), so a client cannot make the server fetch
a URL of its choosing.

The client is urllib3 (the ``revocation`` extra): pooled keep-alive connections (a
returning responder costs no handshake), timeouts for connecting and reading, no
retries, no redirects, a body read in chunks so a size cap holds; no other dependency.
Owns Fetcher and FetchError. urllib3 is imported here alone.
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

import urllib3

__all__ = ["FetchError", "Fetcher"]

_CHUNK = 16384


class FetchError(Exception):
    """A fetch that did not give a body: why, in plain words."""


class Fetcher:
    """HTTP for revocation evidence, bounded in size, time and hosts."""

    def __init__(
        self,
        *,
        timeout: float,
        max_bytes: int,
        allow_hosts: Sequence[str] = ("*",),
        connections: int = 4,
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.allow_hosts = tuple(host.lower() for host in allow_hosts)
        self._pool = urllib3.PoolManager(
            num_pools=32, maxsize=connections, block=False, retries=False
        )

    def allowed(self, url: str) -> str | None:
        """Why ``url`` is not fetched, or None when it may be."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
            parts.port  # noqa: B018 (a port that is not a number raises here)
        except ValueError as exc:
            return f"the URL {url} cannot be read ({exc})"
        if parts.scheme not in ("http", "https"):
            return f"the URL {url} is not http or https"
        if not host:
            return f"the URL {url} names no host"
        if not any(fnmatch.fnmatchcase(host, pattern) for pattern in self.allow_hosts):
            return f"the host {host} is not in fetch.allow_hosts ({', '.join(self.allow_hosts)})"
        return None

    def fetch(
        self, url: str, *, body: bytes | None = None, content_type: str | None = None
    ) -> bytes:
        """GET ``url`` (POST ``body`` when given) and return what it answered with 200."""
        refused = self.allowed(url)
        if refused is not None:
            raise FetchError(refused)
        deadline = time.monotonic() + self.timeout
        headers = {"Content-Type": content_type} if content_type else {}
        try:
            response = self._pool.request(
                "POST" if body is not None else "GET",
                url,
                body=body,
                headers=headers,
                timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout),
                redirect=False,
                preload_content=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise FetchError(f"{url} could not be reached: {_cause(exc)}") from None
        try:
            if 300 <= response.status < 400:
                where = response.headers.get("Location", "elsewhere")
                raise FetchError(f"{url} redirected to {where}; redirects are not followed")
            if response.status != 200:
                raise FetchError(f"{url} answered HTTP {response.status}")
            return self._body(url, response, deadline)
        finally:
            response.release_conn()

    def _body(self, url: str, response: urllib3.BaseHTTPResponse, deadline: float) -> bytes:
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchError(f"{url} sent {declared} bytes, over fetch.max_bytes")
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                if time.monotonic() > deadline:
                    raise FetchError(f"{url} took longer than {self.timeout:g} s")
                chunk = response.read(_CHUNK)
                if not chunk:
                    return b"".join(chunks)
                size += len(chunk)
                if size > self.max_bytes:
                    raise FetchError(f"{url} sent more than fetch.max_bytes ({self.max_bytes})")
                chunks.append(chunk)
        except urllib3.exceptions.HTTPError as exc:
            raise FetchError(f"{url} broke off: {_cause(exc)}") from None


def _cause(exc: BaseException) -> str:
    """The innermost reason urllib3 gives, without the connection it names (the URL is
    said already): ``Failed to establish a new connection: [Errno 111] Connection
    refused``, ``Read timed out. (read timeout=0.2)``."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException):
        return _cause(reason)
    return _CONNECTION.sub("", str(exc))


_CONNECTION = re.compile(r"^(<[^>]*>|\w+\(host=[^)]*\)):\s*")
