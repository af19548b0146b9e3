"""Header text hygiene shared by every proxy module: sizes, characters, percent-decoding.

Owns the checks a header value passes before any decoder reads it (:func:`check_size`,
:func:`check_text`), exact percent-decoding (:func:`percent_decode`), the chain bound, and
the small helpers the decoders share (:func:`in_header` prefixes an error with the header
name, :func:`one` and :func:`leaf_and_rest` shape a decoder's result). Bytes-level
framing (base64, DER, PEM) is ``request/der.py``'s.

Must not import the proxy modules, ``registry``, ``config`` or ``read``, nor
``language/`` or ``evaluation/``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes

from policyengine.errors import CHAIN_TOO_LONG, HEADER_TOO_LARGE, MALFORMED_HEADER, SourceError
from policyengine.request.der import pem_blocks
from policyengine.request.sources.record import Decoded, Limits

HEX = frozenset("0123456789abcdefABCDEF")
HEADER_SPACE = " \t"


def malformed(message: str) -> SourceError:
    return SourceError(MALFORMED_HEADER, message)


def as_text(value: object, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        # latin-1 maps every byte to one character; non-ASCII is then refused as such.
        return bytes(value).decode("latin-1")
    raise malformed(f"{what} must be text or bytes, not {type(value).__name__}")


def check_size(value: str, limits: Limits) -> None:
    # Each character is at least one byte on the wire, so a character count over the
    # limit is over it in bytes too; non-ASCII is refused later anyway.
    if len(value) > limits.max_header_bytes:
        raise SourceError(
            HEADER_TOO_LARGE,
            f"{len(value)} bytes, over the {limits.max_header_bytes}-byte limit",
        )


def check_chain_length(count: int, limits: Limits) -> None:
    if count > limits.max_chain_length:
        raise SourceError(
            CHAIN_TOO_LONG,
            f"{count} intermediate certificates forwarded; at most {limits.max_chain_length} "
            "are accepted",
        )


_R = TypeVar("_R")


def in_header(name: str, work: Callable[..., _R], *args: Any) -> _R:
    """``work(*args)``, with any SourceError's message prefixed by the header name."""
    try:
        return work(*args)
    except SourceError as exc:
        raise SourceError(exc.reason, f"{name}: {exc.message}") from None


def check_text(value: str, *, folded: bool = False) -> None:
    """Refuse non-ASCII and control characters; TAB is allowed, and LF only as nginx folds.

    ``folded``: nginx's legacy ``$ssl_client_cert`` puts a TAB after every LF (obsolete
    line folding); a stack that passes it through verbatim hands us ``\\n\\t``.
    """
    if not value.isascii():
        for offset, ch in enumerate(value):
            if not ch.isascii():
                raise malformed(f"non-ASCII character U+{ord(ch):04X} at offset {offset}")
    probe = value
    if folded:
        probe = probe.replace("\r\n\t", "").replace("\n\t", "")
    if probe.replace("\t", "").isprintable():
        return
    for offset, ch in enumerate(value):
        if ch == "\t" or " " <= ch < "\x7f":
            continue
        if folded and ch == "\n" and value[offset + 1 : offset + 2] == "\t":
            continue
        if folded and ch == "\r" and value[offset + 1 : offset + 3] == "\n\t":
            continue
        raise malformed(f"control character U+{ord(ch):04X} at offset {offset}")


def percent_decode(value: str) -> str:
    """Decode ``%XX`` exactly once (``unquote``, never ``unquote_plus``: ``+`` stays ``+``)."""
    index = value.find("%")
    while index >= 0:
        pair = value[index + 1 : index + 3]
        if len(pair) != 2 or pair[0] not in HEX or pair[1] not in HEX:
            raise malformed(
                f"broken percent-encoding at offset {index}: '%' must be followed by two hex "
                f"digits, found {pair!r}"
            )
        index = value.find("%", index + 3)
    try:
        decoded = unquote_to_bytes(value).decode("ascii")
    except UnicodeDecodeError:
        raise malformed("percent-encoding decodes to non-ASCII bytes") from None
    if "%" in decoded:
        raise malformed("still holds '%' after percent-decoding: encoded twice?")
    return decoded


def percent_pem(value: str, limits: Limits) -> list[bytes]:
    return pem_blocks(percent_decode(value), limits)


def one(found: list[bytes], what: str) -> bytes:
    if len(found) != 1:
        raise malformed(f"{what} carries {len(found)} certificates where the proxy sends one")
    return found[0]


def one_pem(text: str, limits: Limits) -> bytes:
    check_size(text, limits)
    return one(pem_blocks(text, limits), "the PEM")


def leaf_and_rest(found: list[bytes]) -> Decoded:
    return found[0], found[1:]
