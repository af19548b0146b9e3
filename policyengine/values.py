"""Values that policies compare, and how they are written and normalised.

This module is shared by every stage: the checker uses it to validate literals and set
entries, the compiler to normalise them once, the certificate facts to produce values of
the same shape, and the trace to print them.

A shared leaf: imports nothing of policyengine but ``errors``, and no cryptography, so
the language and the request side may both import it.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

from policyengine.errors import FactError

__all__ = [
    "ABSENT",
    "FactError",
    "Missing",
    "format_duration",
    "format_serial",
    "format_time",
    "normalize_fingerprint",
    "normalize_host",
    "normalize_path",
    "parse_duration",
    "parse_serial",
    "parse_timestamp",
]


class Missing:
    """A value that is not there: absent, or ambiguous. Comparisons with it are undefined.

    An undefined comparison is neither true nor false: ``not`` keeps it undefined, ``and``
    is false if any side is false, ``or`` is true if any side is true, and a rule holds only
    when its condition is true. So a policy never allows by accident because a value was
    missing, and the trace says *why* it was missing instead of printing ``false``.
    """

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Missing({self.reason!r})"


ABSENT = Missing("no certificate was presented")


_HEX_DIGITS = frozenset("0123456789abcdef")
_SEPARATORS = str.maketrans("", "", ": \t-\u200e\u200f\ufeff")
FINGERPRINT_LENGTHS = {40: "sha1", 64: "sha256"}


def normalize_fingerprint(text: str) -> str | None:
    """Lower-case hex without separators, or None when ``text`` is not a SHA-1/SHA-256 digest.

    Accepts any case, colons, spaces and dashes, and the invisible direction marks that a
    thumbprint copied from Windows' certificate manager carries.
    """
    cleaned = text.translate(_SEPARATORS).lower()
    if len(cleaned) not in FINGERPRINT_LENGTHS or not set(cleaned) <= _HEX_DIGITS:
        return None
    return cleaned


def normalize_hex(text: str) -> str | None:
    """Lower-case hex without separators (key identifiers), or None when not hex."""
    cleaned = text.translate(_SEPARATORS).lower()
    if not cleaned or len(cleaned) % 2 or not set(cleaned) <= _HEX_DIGITS:
        return None
    return cleaned


_TOKEN_KEY = os.urandom(32)
_KEYED = hashlib.blake2b(key=_TOKEN_KEY, digest_size=16)
"""The keyed hash with its key taken in, copied for each token (keying it anew costs more
than hashing a digest)."""


def digest_token(digest: bytes) -> bytes:
    """A keyed hash of a fingerprint's raw digest, used for set membership.

    Sets of pinned fingerprints are looked up by this token, so the time a lookup takes
    depends on a secret-keyed hash and not on how many leading characters of a pin an
    attacker's certificate shares.
    """
    keyed = _KEYED.copy()
    keyed.update(digest)
    return keyed.digest()


def fingerprint_token(hex_digest: str) -> bytes:
    """:func:`digest_token` of a fingerprint written as normalised hex (a policy's pin)."""
    try:
        return digest_token(bytes.fromhex(hex_digest))
    except ValueError:  # not hex: a token no certificate's digest has (other length)
        return digest_token(hex_digest.encode("utf-8", "surrogatepass"))


def fingerprints_equal(a: str, b: str) -> bool:
    """Constant-time equality of two normalised fingerprints."""
    return hmac.compare_digest(a.encode("ascii"), b.encode("ascii"))


def parse_serial(value: str | int) -> int | None:
    """A serial number written in a policy: hex text (``0x1A2B3C``, ``1a:2b:3c``) or an int."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = value.strip()
    negative = text.startswith("-")
    if negative:
        text = text[1:]
    if text[:2].lower() == "0x":
        text = text[2:]
    text = text.replace(":", "").replace(" ", "")
    if not text or not set(text.lower()) <= _HEX_DIGITS:
        return None
    number = int(text, 16)
    return -number if negative else number


def format_serial(serial: int) -> str:
    """Upper-case hex, as certificate tools print serials."""
    return f"-{-serial:X}" if serial < 0 else f"{serial:X}"


_DURATION = re.compile(r"([0-9]{1,9})([wdhms])")
_DURATION_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> timedelta | None:
    """``30d``, ``12h``, ``15m``, ``45s``, ``2w``; None when not a duration."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        return None
    try:
        return timedelta(seconds=int(match.group(1)) * _DURATION_UNITS[match.group(2)])
    except OverflowError:  # more than timedelta holds (999999999 days)
        return None


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{sign}{seconds // size}{unit}"
    if seconds >= 86400:
        days, rest = divmod(seconds, 86400)
        return f"{sign}{days}d{rest // 3600}h"
    return f"{sign}{seconds}s"


def parse_timestamp(text: str) -> datetime | None:
    """An RFC 3339 timestamp (``2026-01-01T00:00:00Z``) or a date (midnight UTC)."""
    text = text.strip()
    if len(text) == 10:
        text += "T00:00:00Z"
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # the offset moves it before year 1 or after 9999
        return None


@functools.lru_cache(maxsize=1024)
def format_time(value: datetime) -> str:
    """``2026-11-28T10:00:00Z``: UTC, to the second (what the trace and the CLI show)."""
    t = value.astimezone(UTC)
    # a third of what strftime costs, which the explain trace paid five times over
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}Z"


def as_utc(value: datetime) -> datetime:
    """A datetime in UTC; a naive one is taken to be UTC already."""
    if value.tzinfo is UTC:
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


# -- the request ----------------------------------------------------------------------------


def normalize_path(path: str) -> str:
    """The path as an application routes it: no query, decoded, dot segments resolved.

    ``/public/../admin`` is ``/admin``, so it cannot ride an exclusion for ``/public``.
    """
    if (
        path.startswith("/")
        and "//" not in path
        and "%" not in path
        and "/." not in path
        and "\\" not in path
        and "?" not in path
        and "#" not in path
    ):
        return path  # nothing to decode or resolve (one test per character of concern)
    path = path.split("?", 1)[0].split("#", 1)[0]
    # backslashes count as separators: IIS (App Service on Windows) routes them as `/`
    path = unquote(path, errors="replace").replace("\\", "/")
    segments: list[str] = []
    parts = path.split("/")
    for part in parts:
        if part in ("", "."):
            continue
        if part == "..":
            if segments:
                segments.pop()
            continue
        segments.append(part)
    trailing = len(parts) > 1 and parts[-1] in ("", ".", "..") and bool(segments)
    return "/" + "/".join(segments) + ("/" if trailing else "")


def normalize_host(host: str) -> str:
    """The host as policies compare it: lower case, no port, no trailing dot."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    # `api.contoso.com.` is the same host: a trailing dot must not slip past a deny rule
    return host[:-1] if host.endswith(".") else host
