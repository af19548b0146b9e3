"""Constants of the policy language normalised for the attribute they are compared with.

A fingerprint written with colons, a serial in hex or decimal, a timestamp, an EKU by OID:
:func:`coerce` turns each into the value the compiler compares with, or says what is wrong
with it and how to write it. The checker asks it for every literal, list item and set entry.

Must not import: ``cryptography``, anything of ``policyengine.request``, ``evaluation`` or
``load``.
"""

from __future__ import annotations

from policyengine.language.vocabulary import Attribute, Type
from policyengine.values import (
    FINGERPRINT_LENGTHS,
    normalize_fingerprint,
    normalize_hex,
    parse_duration,
    parse_serial,
    parse_timestamp,
)

__all__ = ["article", "coerce", "kind_of"]

_LITERAL_TYPES = {
    "string": Type.STRING,
    "int": Type.INT,
    "bool": Type.BOOL,
    "duration": Type.DURATION,
    "timestamp": Type.TIME,
}


def article(t: Type) -> str:
    """``an int``, ``a string``: the type's name with its article."""
    return f"an {t}" if str(t)[0] in "aeiou" else f"a {t}"


def kind_of(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    return "string"


def coerce(
    attribute: Attribute, value: object, kind: str, text: str | None = None
) -> tuple[object, tuple[str, str] | None]:
    """A constant normalised for comparison with ``attribute``, or a problem and a hint."""
    t = attribute.type
    shown = f"`{text}`" if text is not None else f"`{value}`" if kind != "string" else f'"{value}"'
    if t is Type.FINGERPRINT:
        return _coerce_fingerprint(attribute, value, kind, shown)
    if t is Type.SERIAL:
        serial = parse_serial(value) if kind in ("string", "int") else None  # type: ignore[arg-type]
        if serial is None:
            return None, (
                f"{shown} is not a serial number",
                'write hex text such as "0x1A2B3C" or "1a:2b:3c", or a decimal integer',
            )
        return serial, None
    if t is Type.HEX:
        digits = normalize_hex(str(value)) if kind == "string" else None
        if digits is None:
            return None, (
                f"{shown} is not hex",
                'write hex digits, with or without colons, e.g. "6a:1f:3b"',
            )
        return digits, None
    expected = _KIND_OF_TYPE[t]
    if kind != expected:
        return None, _mismatch(attribute, value, kind, expected, shown)
    if value is None:
        return None, (f"{shown} is not a valid {t}", "")
    if attribute.aliases and isinstance(value, str):
        value = attribute.aliases.get(value, value)
    return value, None


_KIND_OF_TYPE = {
    Type.STRING: "string",
    Type.INT: "int",
    Type.BOOL: "bool",
    Type.TIME: "timestamp",
    Type.DURATION: "duration",
}
"""How a constant of each plain type is written."""

_EXAMPLE_OF_KIND = {
    "string": '"text"',
    "int": "2048",
    "bool": "true",
    "timestamp": "2026-01-01T00:00:00Z",
    "duration": "30d",
}


def _coerce_fingerprint(
    attribute: Attribute, value: object, kind: str, shown: str
) -> tuple[object, tuple[str, str] | None]:
    if kind != "string":
        return None, (f"a fingerprint is written as a quoted hex string, not {shown}", "")
    normalized = normalize_fingerprint(str(value))
    if normalized is None:
        return None, (
            f"{shown} is not a fingerprint",
            "write 40 (SHA-1) or 64 (SHA-256) hex digits, with or without colons",
        )
    algorithm = FINGERPRINT_LENGTHS[len(normalized)]
    if attribute.algorithm is not None and algorithm != attribute.algorithm:
        return None, (
            f"{shown} is a {algorithm.upper()} fingerprint but `{attribute.name}` is "
            f"{attribute.algorithm.upper()}",
            f"compare it with `fingerprint.{algorithm}` or `fingerprint`",
        )
    return normalized, None


def _mismatch(
    attribute: Attribute, value: object, kind: str, expected: str, shown: str
) -> tuple[str, str]:
    """The problem of a constant written as ``kind`` where ``expected`` was wanted."""
    t = attribute.type
    hint = f"compare it with {article(t)} such as {_EXAMPLE_OF_KIND[expected]}"
    if kind == "string" and isinstance(value, str):
        unquoted = {
            "timestamp": parse_timestamp(value) is not None,
            "duration": parse_duration(value) is not None,
        }.get(expected, False)
        if unquoted:
            hint = f"write the {expected} without quotes: {value.strip()}"
    return (
        f"`{attribute.name}` is {article(t)} but {shown} is {article(_LITERAL_TYPES[kind])}",
        hint,
    )
