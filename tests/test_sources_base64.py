"""What base64 each source accepts, pinned (issue 14, item 18).

Every source that carries base64, as a header value (App Service, Cloudflare, Caddy,
HAProxy, Traefik, RFC 9440, GCP, auto) or inside a PEM (nginx, Apache, AWS ALB, Envoy,
mod_wsgi, ASGI), gets one certificate written every way a review might try: padded,
without its `=` padding, with only part of it, in the URL-safe alphabet, with a space, a
tab, a line break or a `=` inside, with data after the padding, and with non-zero pad
bits. The expected outcomes are the table in docs/sources.md ("Base64"), which these
tests keep true. A refusal is always ``malformed_header``; an acceptance must give back
the very certificate.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest

from policyengine.errors import MALFORMED_HEADER, SourceError
from policyengine.request.sources import SourceConfig, read_forwarded
from policyengine.testing import make_certificate

PROXY = "10.0.0.5"
"""A peer every header source trusts by default (a private address)."""
VALID = {
    "not_before": datetime(2026, 1, 1, tzinfo=UTC),
    "not_after": datetime(2027, 1, 1, tzinfo=UTC),
}
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _certificate_with(issuer: Any = None) -> bytes:
    """A certificate whose DER is 3n+1 bytes long, so its base64 ends in `==`, and whose
    base64 holds both `+` and `/`, which the URL-safe alphabet writes `-` and `_`."""
    for _ in range(500):
        der = make_certificate({"CN": "base64"}, issuer=issuer, **VALID).der
        text = base64.b64encode(der).decode()
        if len(der) % 3 == 1 and "+" in text and "/" in text:
            return der
    raise AssertionError("no such certificate in 500 tries")


ROOT = make_certificate({"CN": "Base64 Root"}, ca=True, **VALID)
LEAF = _certificate_with(ROOT)
INTERMEDIATE = _certificate_with()


def _pad_bits(text: str) -> str:
    """The same bytes with the unused low bits of the last character set: a non-canonical
    encoding (RFC 4648 section 3.5) of the very same DER."""
    assert text.endswith("==")
    last = _ALPHABET.index(text[-3])
    assert last % 16 == 0  # the 4 pad bits are zero in the canonical form
    return text[:-3] + _ALPHABET[last + 1] + "=="


FORMS: dict[str, Callable[[str], str]] = {
    "padded": lambda t: t,
    "unpadded": lambda t: t.rstrip("="),
    "part-padded": lambda t: t[:-1],
    "url-safe": lambda t: t.translate(str.maketrans("+/", "-_")),
    "space-inside": lambda t: t[:40] + " " + t[40:],
    "tab-inside": lambda t: t[:40] + "\t" + t[40:],
    "line-break-inside": lambda t: t[:40] + "\n" + t[40:],
    "non-zero-pad-bits": _pad_bits,
    "equals-inside": lambda t: t[:40] + "=" + t[41:],
    "data-after-padding": lambda t: t + "QQ==",
}

# how each kind of carrier treats each form: True accepted, False malformed_header
PLAIN = {  # one base64 value as the whole header: strict, spaces and tabs dropped
    "padded": True,
    "unpadded": False,
    "part-padded": False,
    "url-safe": False,
    "space-inside": True,
    "tab-inside": True,
    "line-break-inside": False,
    "non-zero-pad-bits": True,
    "equals-inside": False,
    "data-after-padding": False,
}
LIST_ITEM = {**PLAIN, "space-inside": False, "tab-inside": False}  # Traefik: nothing inside
BYTE_SEQUENCE = {  # RFC 8941 sf-binary: padding may be left out (section 4.2.7)
    **LIST_ITEM,
    "unpadded": True,
    "part-padded": True,
}
PEM_BODY = {**PLAIN, "line-break-inside": True}  # whitespace is PEM's own line structure


def _b64(der: bytes) -> str:
    return base64.b64encode(der).decode()


def _pem(body: str) -> str:
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def _pem_with(form: Callable[[str], str], der: bytes) -> str:
    """The PEM of ``der`` with ``form`` applied to its base64, then cut into lines."""
    return _pem(form(_b64(der)))


# source -> (kind, how the proxy writes one certificate as the header value)
HEADER_SOURCES: dict[str, tuple[dict[str, bool], Callable[[Callable[[str], str], bytes], str]]] = {
    "azure": (PLAIN, lambda form, der: form(_b64(der))),
    "cloudflare": (PLAIN, lambda form, der: form(_b64(der))),
    "caddy": (PLAIN, lambda form, der: form(_b64(der))),
    "haproxy": (PLAIN, lambda form, der: form(_b64(der))),
    "auto": (PLAIN, lambda form, der: form(_b64(der))),
    "traefik": (LIST_ITEM, lambda form, der: form(_b64(der))),
    "rfc9440": (BYTE_SEQUENCE, lambda form, der: f":{form(_b64(der))}:"),
    "gcp": (BYTE_SEQUENCE, lambda form, der: f":{form(_b64(der))}:"),
    "nginx": (PEM_BODY, lambda form, der: quote(_pem_with(form, der), safe="")),
    "aws-alb": (PEM_BODY, lambda form, der: quote(_pem_with(form, der), safe="+=/")),
    "envoy": (
        PEM_BODY,
        lambda form, der: f'Hash=00;Cert="{quote(_pem_with(form, der), safe="")}"',
    ),
    # mod_headers turns the PEM's line breaks into spaces
    "apache": (PEM_BODY, lambda form, der: _pem_with(form, der).replace("\n", " ").strip()),
}


def _read(source: str, headers: list[tuple[str, str]]) -> bytes | None:
    config = SourceConfig(source=source)
    try:
        forwarded = read_forwarded(config, headers, PROXY)
    except SourceError as exc:
        assert exc.reason == MALFORMED_HEADER, exc
        return None
    return forwarded.leaf


def _header(source: str) -> str:
    return SourceConfig(source=source).header_name


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("source", HEADER_SOURCES)
def test_base64_of_the_certificate_header_is_read_as_documented(source: str, form: str) -> None:
    kind, write = HEADER_SOURCES[source]
    value = write(FORMS[form], LEAF)
    leaf = _read(source, [(_header(source), value)])
    if kind[form]:
        assert leaf == LEAF, "accepted, so it must be the very certificate"
    else:
        assert leaf is None, f"{source} accepted {form} base64"


@pytest.mark.parametrize("form", FORMS)
def test_auto_reads_an_rfc_9440_byte_sequence_as_rfc_9440_does(form: str) -> None:
    value = f":{FORMS[form](_b64(LEAF))}:"
    leaf = _read("auto", [("X-Client-Cert", value)])
    assert (leaf == LEAF) if BYTE_SEQUENCE[form] else (leaf is None)


# source -> (kind, chain header value for one forwarded intermediate, given the leaf's)
CHAIN_SOURCES: dict[
    str, tuple[dict[str, bool], Callable[[Callable[[str], str]], list[tuple[str, str]]]]
] = {
    "haproxy": (
        PLAIN,
        lambda form: [
            ("X-SSL-Client-Cert", _b64(LEAF)),
            ("X-SSL-Client-Chain", form(_b64(INTERMEDIATE))),
        ],
    ),
    "traefik": (  # the chain is the rest of the same header
        LIST_ITEM,
        lambda form: [("X-Forwarded-Tls-Client-Cert", f"{_b64(LEAF)},{form(_b64(INTERMEDIATE))}")],
    ),
    "rfc9440": (
        BYTE_SEQUENCE,
        lambda form: [
            ("Client-Cert", f":{_b64(LEAF)}:"),
            ("Client-Cert-Chain", f":{form(_b64(INTERMEDIATE))}:"),
        ],
    ),
    "gcp": (
        BYTE_SEQUENCE,
        lambda form: [
            ("X-Client-Cert", f":{_b64(LEAF)}:"),
            ("X-Client-Cert-Chain", f":{form(_b64(INTERMEDIATE))}:"),
        ],
    ),
}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("source", CHAIN_SOURCES)
def test_base64_of_a_forwarded_intermediate_is_read_as_documented(source: str, form: str) -> None:
    kind, headers = CHAIN_SOURCES[source]
    config = SourceConfig(source=source)
    try:
        forwarded = read_forwarded(config, headers(FORMS[form]), PROXY)
    except SourceError as exc:
        assert exc.reason == MALFORMED_HEADER
        assert not kind[form], f"{source} refused {form} base64 in the chain: {exc}"
        return
    assert kind[form], f"{source} accepted {form} base64 in the chain"
    assert forwarded.chain == (INTERMEDIATE,)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("server", ["wsgi-environ", "asgi-tls"])
def test_base64_of_a_pem_from_the_server_itself_is_read_as_documented(
    server: str, form: str
) -> None:
    pem = _pem_with(FORMS[form], LEAF)
    if server == "wsgi-environ":
        where: dict[str, Any] = {"SSL_CLIENT_CERT": pem}
    else:
        where = {"type": "http", "extensions": {"tls": {"client_cert_chain": [pem]}}}
    try:
        leaf = read_forwarded(SourceConfig(source=server), None, None, where).leaf
    except SourceError as exc:
        assert exc.reason == MALFORMED_HEADER
        leaf = None
    assert (leaf == LEAF) if PEM_BODY[form] else (leaf is None)


def test_the_refusal_says_what_is_wrong_with_the_base64() -> None:
    headers = [("X-ARR-ClientCert", _b64(LEAF).rstrip("="))]
    with pytest.raises(SourceError) as caught:
        read_forwarded(SourceConfig(source="azure"), headers, PROXY)
    assert "broken base64 in the value: length" in caught.value.message
    assert "is not a multiple of 4" in caught.value.message
    headers = [("X-ARR-ClientCert", FORMS["url-safe"](_b64(LEAF)))]
    with pytest.raises(SourceError) as caught:
        read_forwarded(SourceConfig(source="azure"), headers, PROXY)
    assert "is not base64" in caught.value.message
