"""The HTTP authorizer: a plain ASGI application that nginx, Caddy, Traefik and Envoy ask.

Routes (every other path is 404):

=============================  ====================================================
``/authorize``                 decide with the only policy (``unknown_policy`` when
                               the server has several)
``/authorize/<policy>[/path]`` decide with the policy of that name; Envoy's HTTP
                               ext_authz appends the original path after it
``/healthz``                   200 while the process serves
``/readyz``                    200 once every policy has loaded, 503 before
``/metrics``                   Prometheus text (decisions, latency) when enabled
=============================  ====================================================

What the proxy says of the request it asks about: the original path from
``X-Original-URI`` (nginx ``auth_request``), ``X-Forwarded-Uri`` (Caddy, Traefik) or
``X-Original-URL`` (ingress-nginx's ``auth-url``: the whole URL), else the path after the
policy's name, the query never; the method from ``X-Original-Method``
or ``X-Forwarded-Method``, else, for Envoy's HTTP ext_authz (which asks with the original
method and path), the authorizer request's own; the host from ``X-Forwarded-Host``, else
``Host``. A request that gives no path, or no method, is refused (``bad_request``) rather
than decided as ``GET /``: nginx asks its ``auth_request`` with GET whatever the client
sent, so a missing ``X-Original-Method`` would let a DELETE pass as a GET.

These are believed as sent, because the verdict goes back only to whoever asked: a client
that reaches the server itself learns a verdict and passes nothing. But a proxy passes the
client's own headers on too, so one header twice, or two paths (or methods) that disagree,
are refused (``bad_request``): else a client's ``X-Original-URI: /health`` behind Caddy
would be decided instead of the ``X-Forwarded-Uri`` Caddy set. The certificate is another
matter: the policy's source reads it from the headers only when the connection's peer (the
proxy) is among its trusted proxies.

Allow: 200 with the identity headers. Refusal: 403 with ``{"reason", "message"}``; the
reason code and its generic sentence only.

Imports no web framework: it is served by uvicorn (``cli/serve.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote, urlsplit

from policyengine.request.answers import off_the_loop
from policyengine.server.authorizer import BAD_REQUEST, Authorizer, Verdict

__all__ = ["AuthorizerApp", "http_view"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_PATHS = (b"x-original-uri", b"x-forwarded-uri", b"x-original-url")
_METHODS = (b"x-original-method", b"x-forwarded-method")
_ONE_OF = frozenset((*_PATHS, *_METHODS, b"x-forwarded-host", b"host"))
_JSON = (b"content-type", b"application/json")
_NO_STORE = (b"cache-control", b"no-store")


class Ambiguous(ValueError):
    """The proxy described the request twice, differently, or not at all."""


def http_view(scope: Scope, rest: str | None) -> dict[str, Any]:
    """The request the proxy asks about, as ``evaluate_request`` keywords: the headers as
    received, the connection's peer, and the original path, method and host."""
    headers = list(scope.get("headers") or ())
    seen: dict[bytes, str] = {}
    for name, value in headers:
        key = bytes(name).lower()
        if key in _ONE_OF:
            if key in seen:
                raise Ambiguous(f"two {key.decode()} headers")
            seen[key] = bytes(value).decode("latin-1")
    # A proxy passes a client's own headers on to the authorizer (Caddy and Traefik all of
    # them, nginx those it does not set): two descriptions that disagree are refused, or a
    # client's X-Original-URI would be decided instead of the X-Forwarded-Uri Caddy set.
    paths = {_path(seen[key]) for key in _PATHS if key in seen}
    if paths and rest is not None:
        paths.add(rest)  # Envoy's HTTP ext_authz: the path after /authorize/<policy>
    if len(paths) > 1:
        raise Ambiguous(f"the original path given differently: {', '.join(sorted(paths))}")
    path = next(iter(paths)) if paths else rest
    methods = {seen[key] for key in _METHODS if key in seen}
    if len(methods) > 1:
        raise Ambiguous(f"the original method given differently: {', '.join(sorted(methods))}")
    if path is None:
        raise Ambiguous("no original path: set X-Original-URI or X-Forwarded-Uri")
    if methods:
        method = next(iter(methods))
    elif rest is not None:  # Envoy's HTTP ext_authz asks with the original method
        method = str(scope.get("method") or "")
    else:
        raise Ambiguous("no original method: set X-Original-Method or X-Forwarded-Method")
    client = scope.get("client")
    return {
        "headers": headers,
        "remote_addr": client[0] if client else None,
        "path": path,
        "method": method,
        "host": seen.get(b"x-forwarded-host") or seen.get(b"host"),
    }


def _path(original: str) -> str:
    """The path of an original URI as a proxy sent it, without the query; ingress-nginx's
    ``X-Original-URL`` is the whole URL."""
    if not original.startswith("/"):
        return urlsplit(original).path
    return original.partition("?")[0]


def route(raw_path: str) -> tuple[str | None, str | None] | None:
    """``/authorize[/<policy>[/rest]]`` as (policy name or None, the rest or None); None
    for any other path."""
    if raw_path == "/authorize" or raw_path == "/authorize/":
        return None, None
    if not raw_path.startswith("/authorize/"):
        return None
    name, slash, rest = raw_path[len("/authorize/") :].partition("/")
    return unquote(name) or None, ("/" + rest) if slash else None


class AuthorizerApp:
    """The ASGI application: ``authorizer`` decides, ``ready`` says whether to pass
    ``/readyz``, ``metrics`` renders ``/metrics`` (None: 404)."""

    def __init__(
        self,
        authorizer: Authorizer,
        *,
        ready: Callable[[], bool] = lambda: True,
        metrics: Callable[[], tuple[bytes, str]] | None = None,
    ) -> None:
        self.authorizer = authorizer
        self.ready = ready
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind != "http":
            return
        raw = scope.get("raw_path")
        raw_path = bytes(raw).decode("latin-1") if raw else str(scope.get("path", "/"))
        raw_path = raw_path.partition("?")[0]
        routed = route(raw_path)
        if routed is not None:
            await _answer(send, await off_the_loop(lambda: self._verdict(scope, *routed)))
        elif raw_path == "/healthz":
            await _plain(send, 200, b"ok\n")
        elif raw_path == "/readyz":
            ready = self.ready()
            await _plain(send, 200 if ready else 503, b"ready\n" if ready else b"draining\n")
        elif raw_path == "/metrics" and self.metrics is not None:
            body, content_type = self.metrics()
            await _plain(send, 200, body, content_type.encode())
        else:
            await _plain(send, 404, b"not found\n")

    def _verdict(self, scope: Scope, name: str | None, rest: str | None) -> Verdict:
        try:
            view = http_view(scope, rest)
        except ValueError as exc:  # Ambiguous, or an X-Original-URL urlsplit cannot read
            client = scope.get("client")
            view = {"remote_addr": client[0] if client else None, "path": rest}
            message = f"The proxy's description of the request cannot be used ({exc})."
            return self.authorizer.refuse(name, BAD_REQUEST, message, view)
        return self.authorizer.authorize(name, view)


async def _answer(send: Send, verdict: Verdict) -> None:
    if verdict.allowed:
        headers = [(k.lower().encode(), v.encode()) for k, v in verdict.set_headers]
        headers += [(b"content-length", b"0"), _NO_STORE]
        await _send(send, 200, headers, b"")
        return
    body = verdict.body
    headers = [_JSON, (b"content-length", str(len(body)).encode()), _NO_STORE]
    await _send(send, verdict.status, headers, body)


async def _plain(
    send: Send, status: int, body: bytes, content_type: bytes = b"text/plain; charset=utf-8"
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await _send(send, status, headers, body)


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
