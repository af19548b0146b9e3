"""Envoy (``envoy``): ``X-Forwarded-Client-Cert`` (XFCC), read with a hand-written tokenizer.

Owns the XFCC parser (linear, index only moves forward, no regular expressions) and the
rule that only the last element counts: with ``APPEND_FORWARD`` every element left of it
came from further away and may be client-written.

Must not import ``registry``, ``config`` or ``read``, nor ``language/`` or ``evaluation/``.
"""

from __future__ import annotations

from policyengine.request.sources.record import Decoded, Limits, Source
from policyengine.request.sources.text import (
    HEADER_SPACE,
    check_text,
    in_header,
    malformed,
    one,
    percent_pem,
)

_XFCC_KEYS = frozenset({"by", "hash", "cert", "chain", "subject", "uri", "dns"})
_XFCC_SINGLE = frozenset({"hash", "cert", "chain", "subject"})
_XFCC_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def parse_xfcc(value: str) -> list[list[tuple[str, str]]]:
    """Elements (``,``) of ``key=value`` pairs (``;``); keys lower-cased, quotes undone.

    One pass, index only moves forward. Quoted values may hold ``,;=``; ``\\"`` is a
    quote, ``\\\\`` a backslash, any other backslash pair is kept (RFC 2253 subjects).
    OWS around separators is tolerated; a quote in an unquoted value, an unterminated
    quote, an empty element or a pair without ``=`` is refused.
    """
    elements: list[list[tuple[str, str]]] = []
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(value)
    while True:
        key, i = _key(value, i)
        if i < n and value[i] == '"':
            text, i = _quoted(value, i)
        else:
            start = i
            while i < n and value[i] not in ";,":
                if value[i] == '"':
                    raise malformed(f"XFCC: double quote inside an unquoted value at offset {i}")
                i += 1
            text = value[start:i].strip(HEADER_SPACE)
        pairs.append((key.lower(), text))
        if i >= n:
            elements.append(pairs)
            return elements
        if value[i] == ",":
            elements.append(pairs)
            pairs = []
        i += 1


def _key(value: str, i: int) -> tuple[str, int]:
    """The key at ``i`` (after optional whitespace) and where its value starts."""
    n = len(value)
    while i < n and value[i] in HEADER_SPACE:
        i += 1
    start = i
    while i < n and value[i] not in '=;,"':
        i += 1
    key = value[start:i].strip(HEADER_SPACE)
    if i >= n or value[i] != "=" or not key:
        what = "an empty XFCC element" if not key and (i >= n or value[i] in ",;") else None
        raise malformed(what or f"XFCC: expected key=value at offset {start}")
    if not all(ch in _XFCC_KEY_CHARS for ch in key):
        raise malformed(f"XFCC: bad key {key[:40]!r} at offset {start}")
    return key, i + 1


def _quoted(value: str, i: int) -> tuple[str, int]:
    """The quoted value opening at ``i``, its escapes undone, and the offset after it."""
    n = len(value)
    opened = i
    i += 1
    parts: list[str] = []
    while True:
        if i >= n:
            raise malformed(f"XFCC: quoted value opened at offset {opened} never closes")
        ch = value[i]
        if ch == "\\":
            if i + 1 >= n:
                raise malformed(f"XFCC: quoted value opened at offset {opened} never closes")
            following = value[i + 1]
            parts.append(following if following in '"\\' else "\\" + following)
            i += 2
        elif ch == '"':
            i += 1
            break
        else:
            parts.append(ch)
            i += 1
    while i < n and value[i] in HEADER_SPACE:
        i += 1
    if i < n and value[i] not in ";,":
        raise malformed(f"XFCC: {value[i]!r} after a quoted value at offset {i}")
    return "".join(parts), i


def decode_envoy(value: str, limits: Limits, notes: list[str]) -> Decoded:
    """XFCC: the whole header must parse; only the LAST element is used.

    With ``APPEND_FORWARD`` every element left of the last came from further away and may
    be client-written; the last one is the adjacent Envoy's. ``Cert``/``Chain`` are PEM
    with ``\\n``, space, ``+``, ``/``, ``=`` percent-encoded; ``Chain`` includes the leaf.
    """
    text = value.strip(HEADER_SPACE)
    if not text:
        return None, []
    check_text(text)
    elements = parse_xfcc(text)
    if len(elements) > 1:
        notes.append(f"took the last of {len(elements)} XFCC elements (the nearest proxy's)")
    values: dict[str, str] = {}
    for key, item in elements[-1]:
        if key in _XFCC_SINGLE and key in values:
            raise malformed(f"the last XFCC element has two {key.capitalize()} keys")
        values.setdefault(key, item)
    leaf: bytes | None = None
    chain: list[bytes] = []
    if "cert" in values:
        leaf = one(in_header("Cert", percent_pem, values["cert"], limits), "Cert")
    if "chain" in values:
        chain = in_header("Chain", percent_pem, values["chain"], limits)
        if leaf is None:
            leaf = chain[0]
        elif chain[0] != leaf:
            raise malformed("XFCC Chain does not start with the Cert certificate")
        chain = chain[1:]
    if leaf is None:
        present = sorted(k.capitalize() for k in values if k in _XFCC_KEYS) or ["no known key"]
        notes.append(
            f"the last XFCC element carries no Cert or Chain (only {', '.join(present)}); "
            "set Envoy's set_current_client_cert_details cert: true to forward the certificate"
        )
    return leaf, chain


def looks_like_xfcc(text: str) -> bool:
    equals = text.find("=")
    return equals > 0 and text[:equals].strip(HEADER_SPACE).lower() in _XFCC_KEYS


ENVOY = Source("envoy", "X-Forwarded-Client-Cert", decode_envoy, native_to=frozenset({"envoy"}))
