"""The identity as request headers, for an application behind the decision server.

An authorizer in front of an app (``policyengine serve`` behind Envoy, nginx, Caddy or
Traefik) tells the app who the client is in request headers. What those headers are is
defined here, once, so the server, the proxy configurations ``policyengine export`` writes
and an app in any language agree:

==========================  =================================================================
header (default name)       value
==========================  =================================================================
``X-Client-Principal``      the principal; absent when there is none
``X-Client-Groups``         the groups, comma-separated; absent when there are none
``X-Client-Roles``          the roles that hold, comma-separated; absent when none holds
==========================  =================================================================

Every value is UTF-8, percent-encoded (RFC 3986) but for letters, digits and ``-._~:/@``:
a comma, a semicolon, a quote, a space, a CR or LF, any byte of a non-ASCII character
is written ``%XX``. So a value is one line of printable ASCII that cannot end the header or
start a second one, a comma in a header always separates two values, and the app decodes
each value with its language's URL decoding (``decodeURIComponent``,
``URLDecoder.decode``, ``Uri.UnescapeDataString``, ``urllib.parse.unquote``) after
splitting at commas.

The authorizer sets every header it names, and removes the ones it does not set: a
client-sent ``X-Client-Principal`` must never reach the app (:attr:`IdentityHeaders.names`
is the list to strip).

Owns: IdentityHeaders, identity_headers, read_identity_headers.
Must not import: any web framework, the server's libraries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

from policyengine.evaluation.identity import Identity

__all__ = ["IdentityHeaders", "identity_headers", "read_identity_headers"]

_SAFE = "-._~:/@"
"""Kept as they are (with letters and digits): what URIs, DNS names and email addresses are
made of, none of which separates values or ends a header."""
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""An HTTP header name (RFC 9110's token)."""


@dataclass(frozen=True, slots=True)
class IdentityHeaders:
    """The names of the identity headers; each can be renamed, or turned off with None."""

    principal: str | None = "X-Client-Principal"
    groups: str | None = "X-Client-Groups"
    roles: str | None = "X-Client-Roles"

    def __post_init__(self) -> None:
        given = [n for n in (self.principal, self.groups, self.roles) if n is not None]
        for name in given:
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"{name!r} is not a header name")
        if len({n.lower() for n in given}) != len(given):
            raise ValueError("each identity header needs a name of its own")

    @property
    def names(self) -> tuple[str, ...]:
        """Every header this names: the ones to remove from what the client sent."""
        return tuple(n for n in (self.principal, self.groups, self.roles) if n is not None)


DEFAULT_HEADERS = IdentityHeaders()


def _encoded(values: Iterable[str]) -> str:
    """The values percent-encoded and joined; "" when none is left. A value that is no
    Unicode text (a lone surrogate, which a certificate never yields) is left out rather
    than sent changed."""
    out = []
    for value in values:
        try:
            out.append(quote(value, safe=_SAFE, errors="strict"))
        except UnicodeEncodeError:
            continue
    return ",".join(out)


def identity_headers(
    identity: Identity | None, names: IdentityHeaders = DEFAULT_HEADERS
) -> tuple[tuple[str, str], ...]:
    """The headers that tell the app ``identity``: only those with a value (the rest are
    to be removed, see :attr:`IdentityHeaders.names`)."""
    if identity is None:
        return ()
    out: list[tuple[str, str]] = []
    principal = identity.principal
    for name, values in (
        (names.principal, (principal,) if principal else ()),
        (names.groups, identity.groups),
        (names.roles, identity.roles),
    ):
        encoded = _encoded(values) if name is not None else ""
        if name is not None and encoded:
            out.append((name, encoded))
    return tuple(out)


def read_identity_headers(
    headers: Mapping[str, str], names: IdentityHeaders = DEFAULT_HEADERS
) -> dict[str, object]:
    """What an app reads back: ``principal`` (text or None), ``groups`` and ``roles``
    (lists). The reference for an app's own decoding; header names are matched in any case."""
    lowered = {k.lower(): v for k, v in headers.items()}

    def values(name: str | None) -> list[str]:
        raw = lowered.get(name.lower(), "") if name is not None else ""
        return [unquote(part, errors="strict") for part in raw.split(",")] if raw else []

    principal = values(names.principal)
    return {
        "principal": principal[0] if len(principal) == 1 else None,
        "groups": values(names.groups),
        "roles": values(names.roles),
    }
