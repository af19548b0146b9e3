"""Picking a source's headers out of a request: one pass, duplicates and variants kept.

Owns :func:`scan` (each wanted header's values and its underscore variants, which WSGI
servers fold into the same variable), the single-instance rule (:func:`single_instance`:
two copies mean a client-sent one got through) and RFC 9440's joined field lines
(:func:`joined_instances`).

Must not import the proxy modules, ``registry``, ``config`` or ``read``, nor
``language/`` or ``evaluation/``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from policyengine.errors import DUPLICATE_HEADER, HEADER_TOO_LARGE, SourceError
from policyengine.request.sources.record import Limits
from policyengine.request.sources.text import as_text, check_size, in_header, malformed

Found = dict[str, tuple[list[str], list[str]]]


def header_items(headers: object) -> Iterable[Any]:
    """The ``(name, value)`` items of a mapping or an iterable of pairs."""
    if headers is None:
        return ()
    if isinstance(headers, Mapping):
        return headers.items()
    if isinstance(headers, (str, bytes)):
        raise TypeError("a string is not a header collection")
    return headers  # type: ignore[return-value]


def not_headers(exc: Exception) -> SourceError:
    return malformed(f"headers must be a mapping or an iterable of (name, value) pairs: {exc}")


def normalise_headers(headers: object) -> list[tuple[str, str]]:
    """A list of ``(name, value)`` text pairs, duplicates kept."""
    try:
        return [
            (as_text(name, "a header name"), as_text(value, "a header value"))
            for name, value in header_items(headers)
        ]
    except SourceError:
        raise
    except Exception as exc:
        raise not_headers(exc) from None


def same_header(name: str, wanted: str) -> bool:
    return name.lower() == wanted.lower()


def scan(headers: object, by_lower: Mapping[str, str]) -> Found:
    """For each wanted header (``by_lower``: lower-cased name -> name): its values, and the
    names of its underscore variants (``X_SSL_Client_Cert`` for ``X-SSL-Client-Cert``,
    which WSGI servers fold into the same variable). One pass over the headers, one
    lower-casing each; values of other headers are not looked at."""
    found: Found = {name: ([], []) for name in by_lower.values()}
    wanted = by_lower.get
    try:
        for name, value in header_items(headers):
            if name.__class__ is not str:
                name = as_text(name, "a header name")
            hit = wanted(name.lower())
            if hit is not None:
                found[hit][0].append(
                    value if value.__class__ is str else as_text(value, "a header value")
                )
            elif "_" in name:
                hit = wanted(name.lower().replace("_", "-"))
                if hit is not None:
                    found[hit][1].append(name)
    except SourceError:
        raise
    except Exception as exc:
        raise not_headers(exc) from None
    return found


def single_instance(found: Found, wanted: str, limits: Limits, notes: list[str]) -> str | None:
    exact, variants = found[wanted]
    if len(exact) > 1:
        raise SourceError(
            DUPLICATE_HEADER,
            f"{wanted}: sent {len(exact)} times; the proxy sets it once, so a client-sent "
            "copy got through",
        )
    if exact and variants:
        raise SourceError(
            DUPLICATE_HEADER,
            f"{wanted}: also sent as {variants[0]}, which WSGI servers merge into the same "
            "variable; a client-sent copy got through",
        )
    if variants:
        notes.append(f"ignored {variants[0]}: not the configured header {wanted}")
    if not exact:
        return None
    in_header(wanted, check_size, exact[0], limits)
    return exact[0]


def joined_instances(found: Found, wanted: str, limits: Limits) -> str | None:
    exact, variants = found[wanted]
    if variants:
        raise SourceError(
            DUPLICATE_HEADER,
            f"{wanted}: also sent as {variants[0]}; a client-sent copy got through",
        )
    if not exact:
        return None
    total = sum(len(v) for v in exact) + 2 * (len(exact) - 1)
    if total > limits.max_header_bytes:
        raise SourceError(
            HEADER_TOO_LARGE,
            f"{wanted}: {total} bytes over {len(exact)} field line(s), over the "
            f"{limits.max_header_bytes}-byte limit",
        )
    return ", ".join(exact)
