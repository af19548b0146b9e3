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

import concurrent.futures
import fnmatch
import re
import time
from collections.abc import Sequence

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
        self._workers = concurrent.futures.ThreadPoolExecutor(
            max_workers=connections, thread_name_prefix="policyengine-fetch"
        )

    def allowed(self, url: str) -> str | None:
        """Why ``url`` is not fetched, or None when it may be. The URL is read as urllib3
        reads it to connect (one parser: no host a check sees and the connection does not),
        and one with user information, a backslash, a percent sign in the host or a control
        character is refused outright."""
        if any(char in url for char in "\\@") or any(ord(char) < 0x21 for char in url):
            return f"the URL {url!r} has characters a responder URL has no need of"
        try:
            parts = urllib3.util.parse_url(url)
        except ValueError as exc:
            return f"the URL {url} cannot be read ({exc})"
        host = (parts.host or "").lower().strip("[]")
        if parts.scheme not in ("http", "https"):
            return f"the URL {url} is not http or https"
        if not host or "%" in host:
            return f"the URL {url} names no host"
        if not any(_matches(host, pattern) for pattern in self.allow_hosts):
            return f"the host {host} is not in fetch.allow_hosts ({', '.join(self.allow_hosts)})"
        return None

    def fetch(
        self, url: str, *, body: bytes | None = None, content_type: str | None = None
    ) -> bytes:
        """GET ``url`` (POST ``body`` when given) and return what it answered with 200.

        The request runs in one of the fetcher's worker threads and is waited for at most
        ``timeout``: a server that drips its status line or headers a byte at a time would
        outlast every per-read timeout, so the wait is bounded here, whatever the socket
        does. A worker stuck so is one of a few (``connections``): when all are, a fetch
        waits its timeout and fails, and no request waits longer."""
        refused = self.allowed(url)
        if refused is not None:
            raise FetchError(refused)
        future = self._workers.submit(self._fetch, url, body, content_type)
        try:
            return future.result(timeout=self.timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise FetchError(f"{url} took longer than {self.timeout:g} s") from None

    def _fetch(self, url: str, body: bytes | None, content_type: str | None) -> bytes:
        deadline = time.monotonic() + self.timeout
        headers = {"Content-Type": content_type} if content_type else {}
        try:
            response = self._pool.request(
                "POST" if body is not None else "GET",
                url,
                body=body,
                headers=headers,
                timeout=urllib3.Timeout(total=self.timeout),
                redirect=False,
                preload_content=False,
                decode_content=False,
            )
        except urllib3.exceptions.HTTPError as exc:
            if _timed_out(exc):  # urllib3's own clock ran out first: the same words
                raise FetchError(f"{url} took longer than {self.timeout:g} s") from None
            raise FetchError(f"{url} could not be reached: {_cause(exc)}") from None
        whole = False
        try:
            if 300 <= response.status < 400:
                where = response.headers.get("Location", "elsewhere")
                raise FetchError(f"{url} redirected to {where}; redirects are not followed")
            if response.status != 200:
                raise FetchError(f"{url} answered HTTP {response.status}")
            body = self._body(url, response, deadline)
            whole = True
            return body
        finally:
            if not whole:  # bytes left unread: the connection is not asked again
                response.close()
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
            if _timed_out(exc):
                raise FetchError(f"{url} took longer than {self.timeout:g} s") from None
            raise FetchError(f"{url} broke off: {_cause(exc)}") from None


def _matches(host: str, pattern: str) -> bool:
    """``*`` matches any run of characters; nothing else is special (an IPv6 literal's
    brackets and colons are themselves)."""
    pattern = pattern.strip("[]")
    if "*" not in pattern:
        return host == pattern
    return fnmatch.fnmatchcase(host, pattern.replace("[", "[[]"))


def _timed_out(exc: BaseException) -> bool:
    """A timeout of urllib3's (connecting or reading), however wrapped; not a refused
    connection (urllib3's NewConnectionError descends from its ConnectTimeoutError)."""
    while exc is not None:
        if isinstance(exc, urllib3.exceptions.NewConnectionError):
            return False
        if isinstance(exc, urllib3.exceptions.TimeoutError):
            return True
        reason = getattr(exc, "reason", None)
        exc = reason if isinstance(reason, BaseException) else None  # type: ignore[assignment]
    return False


def _cause(exc: BaseException) -> str:
    """The innermost reason urllib3 gives, without the connection it names (the URL is
    said already): ``Failed to establish a new connection: [Errno 111] Connection
    refused``, ``Read timed out. (read timeout=0.2)``."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, BaseException):
        return _cause(reason)
    return _CONNECTION.sub("", str(exc))


_CONNECTION = re.compile(r"^(<[^>]*>|\w+\(host=[^)]*\)):\s*")
