"""ASGI middleware: a policy in front of any ASGI application (Starlette, FastAPI, Django).

::

    from policyengine.integrations.asgi import PolicyMiddleware

    app = PolicyMiddleware(app, "policies/partner-api.yaml")

``http`` and ``websocket`` connections are decided before the application sees them; a
refused HTTP request gets a ready 403 without the application being called (its body is not
read), and a refused websocket is closed with code 1008 (policy violation) before it is
accepted. ``lifespan`` and any other scope type pass through untouched. An allowed
connection reaches the application with the decision in ``scope["policyengine.decision"]``
and, for Starlette and FastAPI, in ``request.state.policyengine_decision``; its
:class:`~policyengine.Identity` likewise in ``scope["policyengine.identity"]`` and
``request.state.policyengine_identity`` (None when the decision has none, or refuses). The
identity is stored as the decision made it: its principal and groups are worked out only
when the application reads them.

There is no ``remote_user`` here: ASGI has no ``REMOTE_USER``. The key frameworks read the
authenticated user from, ``scope["user"]``, holds an object of their own (Starlette's
``BaseUser``, Channels' Django user), never a string, and belongs to their authentication
middleware: for Starlette and FastAPI, ``request.user`` comes from policyengine's
authentication backend (docs/identity.md).

Plain ASGI: it imports no web framework (not Starlette either), only what the integrations
share.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from policyengine.evaluation.decision import Decision
from policyengine.evaluation.engine import Policy
from policyengine.integrations import (
    DECIDED_KEY,
    Middleware,
    decide_fields,
    refusal,
    reusable_decision,
)
from policyengine.integrations.runtime import DecisionLog, ReloadingPolicy
from policyengine.request.answers import Waiting, on_the_loop

__all__ = [
    "IDENTITY_KEY",
    "IDENTITY_STATE_KEY",
    "SCOPE_KEY",
    "PolicyMiddleware",
    "decide_scope",
    "scope_request",
]

SCOPE_KEY = "policyengine.decision"
STATE_KEY = "policyengine_decision"
IDENTITY_KEY = "policyengine.identity"
"""Where the scope keeps the identity of an allowed decision (None otherwise)."""
IDENTITY_STATE_KEY = "policyengine_identity"
"""The same in ``scope["state"]``: Starlette's ``request.state.policyengine_identity``."""
POLICY_VIOLATION = 1008

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def scope_request(scope: Scope) -> dict[str, Any]:
    """An ASGI ``http``/``websocket`` scope as ``evaluate_request`` keyword arguments."""
    headers, remote_addr, path, method, host = _scope_fields(scope)
    return {
        "headers": headers,
        "remote_addr": remote_addr,
        "path": path,
        "method": method,
        "host": host,
        "scope": scope,
    }


def _scope_fields(scope: Scope) -> tuple[list[Any], str | None, str, str, str | None]:
    """The headers, peer address, path, method and host of a scope, as read on every
    request (no view built: a middleware decides with these straight away)."""
    headers = scope.get("headers") or []
    if headers.__class__ is not list:
        headers = list(headers)
    host = None
    for name, value in headers:  # servers send names in lower case (ASGI): mostly b"host"
        if name == b"host" or (len(name) == 4 and bytes(name).lower() == b"host"):
            host = bytes(value).decode("latin-1")
            break
    raw_path = scope.get("raw_path")
    if isinstance(raw_path, (bytes, bytearray)):
        path = bytes(raw_path).decode("latin-1")
    else:
        path = scope.get("path", "/")
        if raw_path is None:
            path = (scope.get("root_path") or "") + path
    client = scope.get("client")
    return headers, client[0] if client else None, path, scope.get("method", "GET"), host


def decide_scope(
    provider: Policy | ReloadingPolicy,
    scope: Scope,
    log: DecisionLog | None,
    explain: bool = False,
) -> Decision:
    """Decide the connection an ASGI scope describes, log it, and store it in the scope
    (with the policy that made it, under ``DECIDED_KEY``, for a later guard to reuse), and
    its identity under ``IDENTITY_KEY`` when it allows (None when it refuses). A decision
    an outer guard made with the very same policy object is reused."""
    earlier = scope.get(DECIDED_KEY)
    decided = None if earlier is None else reusable_decision(earlier, provider)
    if decided is None:
        headers, peer, path, method, host = _scope_fields(scope)
        decided = decide_fields(
            provider, log, explain, headers, peer, path, method, host, None, scope
        )
    decision = decided.decision
    identity = decision.identity if decision.allowed else None
    scope[SCOPE_KEY] = decision
    scope[DECIDED_KEY] = decided
    scope[IDENTITY_KEY] = identity
    # Starlette's request.state is scope["state"]; servers without lifespan state (and
    # httpx's ASGITransport) send no "state", and Starlette would then start an empty one.
    state = scope.setdefault("state", {})
    if state.__class__ is dict or isinstance(state, MutableMapping):
        state[STATE_KEY] = decision
        state[IDENTITY_STATE_KEY] = identity
    return decision


class PolicyMiddleware(Middleware):
    """Decides every ``http`` and ``websocket`` connection before the application sees it.

    Options as for the WSGI middleware: ``policy`` (a Policy, a ReloadingPolicy or a policy
    file path), ``on_deny``, ``expose_trace`` and ``log``. Validated when constructed.
    """

    protocol = "ASGI"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        decision = on_the_loop(decide_scope, self.policy, scope, self.log, self.expose_trace)
        if isinstance(decision, Waiting):  # for the network: in a thread, from the start
            decision = await asyncio.to_thread(
                decide_scope, self.policy, scope, self.log, self.expose_trace
            )
        if decision.allowed:
            await self.app(scope, receive, send)
            return
        if kind == "websocket":
            message = await receive()  # websocket.connect comes first
            if message.get("type") == "websocket.connect":
                await send({"type": "websocket.close", "code": POLICY_VIOLATION})
            return
        accept = next(
            (
                bytes(value).decode("latin-1")
                for name, value in scope.get("headers") or ()
                if bytes(name).lower() == b"accept"
            ),
            "",
        )
        response = refusal(decision, accept, self.on_deny, self.expose_trace)
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [(k.lower().encode(), v.encode()) for k, v in response.headers],
            }
        )
        await send({"type": "http.response.body", "body": response.body})
