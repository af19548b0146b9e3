"""policyengine.request.sources: each proxy's real encoding, real samples, hostile input, trust.

The encoders below reproduce what each proxy does on the wire, following
``shared/reference/forwarded-client-certs.md``; a decoder that only agreed with itself
would prove nothing. Samples in ``data/header-samples`` are keycloak's (Apache-2.0).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policyengine.errors import (
    CHAIN_TOO_LONG,
    DUPLICATE_HEADER,
    HEADER_TOO_LARGE,
    MALFORMED_HEADER,
    SourceError,
)
from policyengine.request.sources import (
    REASONS,
    SOURCES,
    Forwarded,
    SourceConfig,
    decode_header_value,
    default_header_names,
    default_trusted_proxies,
    read_forwarded,
    trusted_from_anywhere,
)
from policyengine.testing import make_certificate

SAMPLES = Path(__file__).parent / "data" / "header-samples"
PROXY = "10.0.0.5"
"""A peer inside the default trusted ranges."""

HEADER_SOURCES = tuple(s for s in SOURCES if s not in ("wsgi-environ", "asgi-tls"))


# -- certificates ----------------------------------------------------------------------

ROOT = make_certificate({"CN": "Test Root CA"}, ca=True)
INTERMEDIATE = make_certificate({"CN": "Test Intermediate CA"}, issuer=ROOT, ca=True)
LEAF = make_certificate({"CN": "api-client", "O": "Contoso, Ltd"}, issuer=INTERMEDIATE)
LEAF_DER, INTER_DER, ROOT_DER = LEAF.der, INTERMEDIATE.der, ROOT.der


def _with_plus() -> bytes:
    """A certificate whose base64 holds a '+', so the ALB ``unquote_plus`` trap is exercised."""
    for _ in range(200):
        candidate = make_certificate({"CN": "plus"}, issuer=INTERMEDIATE).der
        if "+" in base64.b64encode(candidate).decode():
            return candidate
    raise AssertionError("no certificate with '+' in its base64 in 200 tries")


PLUS_DER = _with_plus()


def cn(der: bytes) -> str:
    cert = x509.load_der_x509_certificate(der)
    value = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert isinstance(value, str)
    return value


# -- encoders: what each proxy puts on the wire ----------------------------------------


def pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode()


def b64(der: bytes) -> str:
    return base64.b64encode(der).decode()


def nginx_escaped(der: bytes) -> str:
    """``$ssl_client_escaped_cert``: everything but ALPHA DIGIT - . _ ~, upper-case hex."""
    return quote(pem(der), safe="-._~")


def nginx_legacy(der: bytes) -> str:
    """``$ssl_client_cert``: final LF dropped, a TAB after every other LF."""
    return pem(der).rstrip("\n").replace("\n", "\n\t")


def nginx_legacy_unfolded(der: bytes) -> str:
    """The legacy value after an HTTP stack replaced each obs-fold by a space."""
    return nginx_legacy(der).replace("\n\t", " ")


def envoy_urlencode(text: str) -> str:
    """Envoy's StrReplaceAll: only newline, space, '+', '/' and '=' are encoded."""
    for raw, encoded in (("\n", "%0A"), (" ", "%20"), ("+", "%2B"), ("/", "%2F"), ("=", "%3D")):
        text = text.replace(raw, encoded)
    return text


def xfcc_element(leaf: bytes, chain: tuple[bytes, ...] = (), *, by: str = "spiffe://edge") -> str:
    """One element as Envoy's APPEND_FORWARD/SANITIZE_SET emits it (Cert, Chain, Subject…)."""
    digest = hashlib.sha256(leaf).hexdigest()
    parts = [f"By={by}", f"Hash={digest}", f'Cert="{envoy_urlencode(pem(leaf))}"']
    if chain:
        full = "".join(pem(d) for d in (leaf, *chain))
        parts.append(f'Chain="{envoy_urlencode(full)}"')
    parts += ['Subject="CN=api-client,O=Contoso\\, Ltd,OU=\\"q\\";x=y"', "URI=", "DNS=a.example"]
    return ";".join(parts)


def rfc9440(der: bytes) -> str:
    return f":{b64(der)}:"


def rfc9440_list(ders: tuple[bytes, ...]) -> str:
    return ", ".join(rfc9440(d) for d in ders)


def alb(text: str) -> str:
    """ALB: "URL-encoded PEM format … with +=/ as safe characters"."""
    return quote(text, safe="+=/")


def traefik(ders: tuple[bytes, ...]) -> str:
    """Traefik >= 2.9.2: base64 DER per certificate, joined with ','."""
    return ",".join(b64(d) for d in ders)


def traefik_old(ders: tuple[bytes, ...]) -> str:
    """Traefik < 2.9.2: each item additionally ``url.QueryEscape``d."""
    return ",".join(quote_plus(b64(d)) for d in ders)


def haproxy(ders: tuple[bytes, ...]) -> str:
    """``%[ssl_c_der,base64]`` / ``%[ssl_c_chain_der,base64]``: DERs back to back."""
    return b64(b"".join(ders))


def apache(der: bytes) -> str:
    """mod_headers' unwrap_header: every CR/LF becomes a space (trailing one included)."""
    return pem(der).replace("\n", " ")


def read(source: str, headers: object, remote: str | None = PROXY, **options: object) -> Forwarded:
    return read_forwarded(SourceConfig(source=source, **options), headers, remote)  # type: ignore[arg-type]


# -- round trips: every source, its real encoding --------------------------------------

ROUND_TRIPS: list[tuple[str, dict[str, str], tuple[bytes, ...], bool | None]] = [
    ("azure", {"X-ARR-ClientCert": b64(LEAF_DER)}, (), None),
    (
        "nginx",
        {"X-SSL-Client-Cert": nginx_escaped(LEAF_DER), "X-SSL-Client-Verify": "SUCCESS"},
        (),
        True,
    ),
    (
        "nginx",
        {
            "X-SSL-Client-Cert": nginx_legacy(LEAF_DER),
            "X-SSL-Client-Verify": "FAILED:certificate has expired",
        },
        (),
        False,
    ),
    (
        "nginx",
        {"X-SSL-Client-Cert": nginx_legacy_unfolded(LEAF_DER), "X-SSL-Client-Verify": "NONE"},
        (),
        None,
    ),
    (
        "envoy",
        {"x-forwarded-client-cert": xfcc_element(LEAF_DER, (INTER_DER,))},
        (INTER_DER,),
        None,
    ),
    (
        "rfc9440",
        {
            "Client-Cert": rfc9440(LEAF_DER),
            "Client-Cert-Chain": rfc9440_list((INTER_DER, ROOT_DER)),
        },
        (INTER_DER, ROOT_DER),
        None,
    ),
    ("aws-alb", {"X-Amzn-Mtls-Clientcert-Leaf": alb(pem(LEAF_DER))}, (), None),
    (
        "aws-alb",
        {"X-Amzn-Mtls-Clientcert": alb(pem(LEAF_DER) + pem(INTER_DER))},
        (INTER_DER,),
        None,
    ),
    (
        "gcp",
        {
            "X-Client-Cert": rfc9440(LEAF_DER),
            "X-Client-Cert-Chain": rfc9440_list((INTER_DER,)),
            "X-Client-Cert-Chain-Verified": "true",
            "X-Client-Cert-Present": "true",
        },
        (INTER_DER,),
        True,
    ),
    (
        "traefik",
        {"X-Forwarded-Tls-Client-Cert": traefik((LEAF_DER, INTER_DER))},
        (INTER_DER,),
        None,
    ),
    (
        "traefik",
        {"X-Forwarded-Tls-Client-Cert": traefik_old((LEAF_DER, INTER_DER))},
        (INTER_DER,),
        None,
    ),
    (
        "haproxy",
        {
            "X-SSL-Client-Cert": haproxy((LEAF_DER,)),
            "X-SSL-Client-Chain": haproxy((INTER_DER, ROOT_DER)),
            "X-SSL-Client-Verify": "0",
        },
        (INTER_DER, ROOT_DER),
        True,
    ),
    (
        "apache",
        {"X-SSL-Client-Cert": apache(LEAF_DER), "X-SSL-Client-Verify": "GENEROUS"},
        (),
        False,
    ),
    (
        "cloudflare",
        {"Cf-Client-Cert-Der-Base64": b64(LEAF_DER), "Cf-Cert-Verified": "true"},
        (),
        True,
    ),
    ("caddy", {"X-Client-Cert": b64(LEAF_DER)}, (), None),
]


@pytest.mark.parametrize(
    ("source", "headers", "chain", "verified"),
    ROUND_TRIPS,
    ids=[f"{case[0]}-{n}" for n, case in enumerate(ROUND_TRIPS)],
)
def test_round_trip_through_read_forwarded(
    source: str, headers: dict[str, str], chain: tuple[bytes, ...], verified: bool | None
) -> None:
    forwarded = read(source, headers)
    assert forwarded.leaf == LEAF_DER
    assert forwarded.chain == chain
    assert forwarded.proxy_verified is verified


@pytest.mark.parametrize(
    ("source", "encode"),
    [
        ("azure", lambda d: b64(d)),
        ("azure", lambda d: pem(d).replace("\n", " ")),
        ("azure", nginx_escaped),
        ("nginx", nginx_escaped),
        ("nginx", nginx_legacy),
        ("nginx", nginx_legacy_unfolded),
        ("envoy", lambda d: xfcc_element(d)),
        ("rfc9440", rfc9440),
        ("aws-alb", lambda d: alb(pem(d))),
        ("gcp", rfc9440),
        ("traefik", lambda d: traefik((d,))),
        ("traefik", lambda d: traefik_old((d,))),
        ("haproxy", lambda d: haproxy((d,))),
        ("apache", apache),
        ("cloudflare", b64),
        ("caddy", b64),
        ("wsgi-environ", pem),
        ("asgi-tls", pem),
        ("auto", b64),
        ("auto", rfc9440),
        ("auto", nginx_escaped),
        ("auto", nginx_legacy),
        ("auto", apache),
        ("auto", lambda d: alb(pem(d))),
        ("auto", lambda d: xfcc_element(d)),
        ("auto", lambda d: traefik_old((d,))),
    ],
)
def test_decode_header_value_round_trip(source: str, encode: Callable[[bytes], str]) -> None:
    for der in (LEAF_DER, PLUS_DER):
        assert decode_header_value(source, encode(der)) == (der, ())


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("envoy", xfcc_element(LEAF_DER, (INTER_DER, ROOT_DER))),
        ("aws-alb", alb(pem(LEAF_DER) + pem(INTER_DER) + pem(ROOT_DER))),
        ("traefik", traefik((LEAF_DER, INTER_DER, ROOT_DER))),
        ("haproxy", haproxy((LEAF_DER, INTER_DER, ROOT_DER))),
        ("wsgi-environ", pem(LEAF_DER) + pem(INTER_DER) + pem(ROOT_DER)),
        ("auto", rfc9440_list((LEAF_DER, INTER_DER, ROOT_DER))),
        ("auto", traefik((LEAF_DER, INTER_DER, ROOT_DER))),
        ("auto", haproxy((LEAF_DER, INTER_DER, ROOT_DER))),
    ],
)
def test_decode_header_value_splits_chains(source: str, value: str) -> None:
    assert decode_header_value(source, value) == (LEAF_DER, (INTER_DER, ROOT_DER))


def test_alb_plus_stays_a_plus() -> None:
    """ALB keeps '+' literal: form-decoding would turn it into a space and break base64."""
    value = alb(pem(PLUS_DER))
    assert "+" in value
    assert decode_header_value("aws-alb", value) == (PLUS_DER, ())


def test_wsgi_environ() -> None:
    environ = {
        "SSL_CLIENT_CERT": pem(LEAF_DER),
        "SSL_CLIENT_CERT_CHAIN_0": pem(INTER_DER),
        "SSL_CLIENT_CERT_CHAIN_1": pem(ROOT_DER),
        "SSL_CLIENT_VERIFY": "SUCCESS",
    }
    config = SourceConfig(source="wsgi-environ")
    forwarded = read_forwarded(config, {}, None, environ)
    assert forwarded == Forwarded(
        LEAF_DER, (INTER_DER, ROOT_DER), True, "SUCCESS", ("SSL_CLIENT_VERIFY says SUCCESS",)
    )
    # The environ is the TLS layer itself: headers and the peer address play no part.
    spoof = {"X-SSL-Client-Cert": nginx_escaped(PLUS_DER)}
    assert read_forwarded(config, spoof, "203.0.113.7", environ).leaf == LEAF_DER


def test_wsgi_environ_through_mod_wsgi_var_lookup() -> None:
    variables = {"SSL_CLIENT_CERT": pem(LEAF_DER), "SSL_CLIENT_VERIFY": "FAILED:expired"}
    environ = {"mod_ssl.var_lookup": lambda name: variables.get(name, "")}
    forwarded = read_forwarded(SourceConfig(source="wsgi-environ"), {}, None, environ)
    assert (forwarded.leaf, forwarded.proxy_verified) == (LEAF_DER, False)
    assert any("var_lookup" in note for note in forwarded.notes)


def test_wsgi_environ_without_certificate() -> None:
    config = SourceConfig(source="wsgi-environ")
    forwarded = read_forwarded(config, {}, None, {"SSL_CLIENT_VERIFY": "NONE"})
    assert (forwarded.leaf, forwarded.proxy_verified, forwarded.proxy_verify) == (
        None,
        None,
        "NONE",
    )
    assert read_forwarded(config, {}, None, None).leaf is None


def test_wsgi_environ_chain_too_long() -> None:
    environ = {"SSL_CLIENT_CERT": pem(LEAF_DER)}
    environ |= {f"SSL_CLIENT_CERT_CHAIN_{i}": pem(INTER_DER) for i in range(3)}
    with pytest.raises(SourceError) as caught:
        read_forwarded(SourceConfig(source="wsgi-environ", max_chain_length=2), {}, None, environ)
    assert caught.value.reason == CHAIN_TOO_LONG


def test_asgi_tls_extension() -> None:
    config = SourceConfig(source="asgi-tls")
    tls = {"client_cert_chain": [pem(LEAF_DER), pem(INTER_DER)], "client_cert_error": None}
    scope = {"type": "http", "extensions": {"tls": tls}}
    forwarded = read_forwarded(config, [], None, scope)
    assert (forwarded.leaf, forwarded.chain, forwarded.proxy_verified) == (
        LEAF_DER,
        (INTER_DER,),
        True,
    )
    failed = {"tls": {"client_cert_chain": [pem(LEAF_DER)], "client_cert_error": "expired"}}
    forwarded = read_forwarded(config, [], None, {"extensions": failed})
    assert (forwarded.proxy_verified, forwarded.proxy_verify) == (False, "expired")
    none = read_forwarded(config, [], None, {"type": "http", "extensions": {}})
    assert none.leaf is None and "no 'tls' extension" in none.notes[0]


def test_asgi_tls_hostile_scope() -> None:
    config = SourceConfig(source="asgi-tls")
    for chain in ("just a string", [42], [pem(LEAF_DER) + "junk"]):
        scope = {"extensions": {"tls": {"client_cert_chain": chain}}}
        with pytest.raises(SourceError) as caught:
            read_forwarded(config, [], None, scope)
        assert caught.value.reason == MALFORMED_HEADER


# -- keycloak samples ------------------------------------------------------------------


def sample(name: str) -> str:
    return (SAMPLES / name).read_text().strip()


def test_samples_readme_keeps_provenance() -> None:
    assert "keycloak/keycloak (Apache-2.0)" in (SAMPLES / "README.md").read_text()


def test_sample_envoy_xfcc_cert() -> None:
    value = sample("keycloak_envoy_xfcc_cert.txt")
    leaf, chain = decode_header_value("envoy", value)
    assert leaf is not None and chain == ()
    cert = x509.load_der_x509_certificate(leaf)
    assert cn(leaf) == "x509client"
    assert cert.issuer.rfc4514_string() == "CN=client-sub-ca"
    assert cert.not_valid_before_utc.date().isoformat() == "2024-09-16"
    assert cert.not_valid_after_utc.date().isoformat() == "2025-09-16"
    # The XFCC Hash is the SHA-256 of exactly the DER we decoded.
    assert value.startswith(f"Hash={hashlib.sha256(leaf).hexdigest()};")


def test_sample_envoy_xfcc_chain_drops_the_leaf() -> None:
    leaf, chain = decode_header_value("envoy", sample("keycloak_envoy_xfcc_chain.txt"))
    assert leaf is not None
    assert cn(leaf) == "x509client"
    assert [cn(c) for c in chain] == ["client-sub-ca"]
    assert leaf == decode_header_value("envoy", sample("keycloak_envoy_xfcc_cert.txt"))[0]


def test_sample_rfc9440() -> None:
    headers = [
        ("Client-Cert", sample("keycloak_rfc9440_client_cert.txt")),
        ("Client-Cert-Chain", sample("keycloak_rfc9440_client_chain.txt")),
    ]
    forwarded = read("rfc9440", headers)
    assert forwarded.leaf is not None
    cert = x509.load_der_x509_certificate(forwarded.leaf)
    assert cn(forwarded.leaf) == "BC"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical and san.value.get_values_for_type(x509.RFC822Name) == ["bdc@example.com"]
    assert [cn(c) for c in forwarded.chain] == [
        "LA Intermediate CA",
        "Let's Authenticate Root Authority",
    ]


def test_sample_haproxy_cert_and_concatenated_chain() -> None:
    headers = {
        "X-SSL-Client-Cert": sample("keycloak_haproxy_client_cert.txt"),
        "X-SSL-Client-Chain": sample("keycloak_haproxy_client_chain.txt"),
        "X-SSL-Client-Verify": "0",
    }
    forwarded = read("haproxy", headers)
    assert forwarded.leaf is not None
    assert cn(forwarded.leaf) == "test-client"
    assert [cn(c) for c in forwarded.chain] == [
        "Client Intermediate CA 2",
        "Client Intermediate CA 1",
    ]
    issuer = x509.load_der_x509_certificate(forwarded.leaf).issuer.rfc4514_string()
    assert issuer == "CN=Client Intermediate CA 2"
    assert forwarded.proxy_verified is True


@pytest.mark.parametrize(
    "value",
    [
        "foobar",
        'Cert="foobar"',
        'Hash=1234;Chain="foobar"',
        'Hash=1234;Cert="no end quote',
        'Hash=1234;Cert=no start quote"',
    ],
)
def test_keycloak_negative_xfcc(value: str) -> None:
    with pytest.raises(SourceError) as caught:
        decode_header_value("envoy", value)
    assert caught.value.reason == MALFORMED_HEADER


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("::", "empty"),
        (":Zm9_:", "'_' is not base64"),
        (":Zm9v:", "not a DER certificate"),
        (sample("keycloak_rfc9440_client_cert.txt")[1:-1], "byte sequence"),
        (sample("keycloak_rfc9440_client_cert.txt")[1:], "byte sequence"),
    ],
)
def test_keycloak_negative_rfc9440(value: str, message: str) -> None:
    with pytest.raises(SourceError) as caught:
        decode_header_value("rfc9440", value)
    assert caught.value.reason == MALFORMED_HEADER
    assert message in caught.value.message


def test_keycloak_negative_two_client_cert_fields() -> None:
    value = sample("keycloak_rfc9440_client_cert.txt")
    with pytest.raises(SourceError) as caught:
        read("rfc9440", [("Client-Cert", value), ("Client-Cert", value)])
    assert caught.value.reason == DUPLICATE_HEADER


def test_keycloak_negative_chain_longer_than_allowed() -> None:
    headers = [
        ("Client-Cert", sample("keycloak_rfc9440_client_cert.txt")),
        ("Client-Cert-Chain", sample("keycloak_rfc9440_client_chain.txt")),
    ]
    with pytest.raises(SourceError) as caught:
        read("rfc9440", headers, max_chain_length=1)
    assert caught.value.reason == CHAIN_TOO_LONG


# -- per-format details ----------------------------------------------------------------


def test_xfcc_takes_the_last_element_only() -> None:
    """Left elements may be client-written (APPEND_FORWARD); their Cert is not even decoded."""
    forged = 'By=spiffe://evil;Cert="-----BEGIN%20CERTIFICATE-----%0Agarbage"'
    value = f"{forged},{xfcc_element(LEAF_DER)}"
    forwarded = read("envoy", {"X-Forwarded-Client-Cert": value})
    assert forwarded.leaf == LEAF_DER
    assert "took the last of 2 XFCC elements (the nearest proxy's)" in forwarded.notes
    spaced = f"{xfcc_element(PLUS_DER)} , {xfcc_element(LEAF_DER)}"
    assert decode_header_value("envoy", spaced)[0] == LEAF_DER


def test_xfcc_hash_only_element_is_no_certificate() -> None:
    value = 'By=http://frontend.lyft.com;Hash=468ed33b;Subject="/C=US/CN=Test Client";URI='
    forwarded = read("envoy", {"x-forwarded-client-cert": value})
    assert forwarded.leaf is None
    assert any("carries no Cert or Chain" in note for note in forwarded.notes)


def test_xfcc_keys_are_case_insensitive_and_quotes_protect_separators() -> None:
    cert = envoy_urlencode(pem(LEAF_DER))
    value = f'SUBJECT="a,b;c=d \\"x\\" \\\\";cErT="{cert}";uri=spiffe://x/y'
    assert decode_header_value("envoy", value) == (LEAF_DER, ())


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Hash=1,,Hash=2", "empty XFCC element"),
        ("Hash=1,", "empty XFCC element"),
        ("Hash=1;;Hash=2", "empty XFCC element"),
        ('Cert="a"junk', "after a quoted value"),
        ("Cert\x01=x", "control character"),
        ("Ha sh=1", "bad key"),
        (
            f'Cert="{envoy_urlencode(pem(LEAF_DER))}";Cert="{envoy_urlencode(pem(LEAF_DER))}"',
            "two Cert keys",
        ),
        (
            f'Cert="{envoy_urlencode(pem(LEAF_DER))}";'
            f'Chain="{envoy_urlencode(pem(INTER_DER) + pem(LEAF_DER))}"',
            "does not start with the Cert",
        ),
    ],
)
def test_xfcc_malformed(value: str, message: str) -> None:
    with pytest.raises(SourceError) as caught:
        decode_header_value("envoy", value)
    assert caught.value.reason == MALFORMED_HEADER
    assert message in caught.value.message


def test_apache_null_is_absent() -> None:
    forwarded = read("apache", {"X-SSL-Client-Cert": "(null)", "X-SSL-Client-Verify": "NONE"})
    assert (forwarded.leaf, forwarded.proxy_verified) == (None, None)
    assert decode_header_value("apache", "(null)") == (None, ())
    assert decode_header_value("auto", "(null)") == (None, ())


@pytest.mark.parametrize("source", HEADER_SOURCES)
def test_empty_header_is_no_certificate(source: str) -> None:
    name = default_header_names(source)[0]
    assert name is not None
    forwarded = read(source, {name: ""})
    assert forwarded.leaf is None and forwarded.chain == ()
    assert read(source, {}).leaf is None


def test_alb_passthrough_leaf_and_chain_headers_together() -> None:
    headers = {
        "X-Amzn-Mtls-Clientcert-Leaf": alb(pem(LEAF_DER)),
        "X-Amzn-Mtls-Clientcert": alb(pem(LEAF_DER) + pem(INTER_DER)),
    }
    forwarded = read("aws-alb", headers)
    assert (forwarded.leaf, forwarded.chain) == (LEAF_DER, (INTER_DER,))


def test_rfc9440_chain_in_several_field_lines_and_without_cert() -> None:
    headers = [
        ("Client-Cert", rfc9440(LEAF_DER)),
        ("Client-Cert-Chain", rfc9440(INTER_DER)),
        ("client-cert-chain", rfc9440(ROOT_DER)),
    ]
    assert read("rfc9440", headers).chain == (INTER_DER, ROOT_DER)
    lonely = read("rfc9440", [("Client-Cert-Chain", rfc9440(INTER_DER))])
    assert (lonely.leaf, lonely.chain) == (None, ())
    assert any("came without a certificate" in note for note in lonely.notes)


def test_rfc9440_padding_may_be_omitted() -> None:
    unpadded = f":{b64(LEAF_DER).rstrip('=')}:"
    assert decode_header_value("rfc9440", unpadded) == (LEAF_DER, ())


@pytest.mark.parametrize(
    ("source", "headers", "verified", "raw"),
    [
        ("nginx", {"X-SSL-Client-Verify": "FAILED:self-signed certificate"}, False, None),
        ("haproxy", {"X-SSL-Client-Verify": "0"}, True, None),
        ("haproxy", {"X-SSL-Client-Verify": "20"}, False, None),
        ("haproxy", {"X-SSL-Client-Verify": "maybe"}, None, None),
        ("gcp", {"X-Client-Cert-Chain-Verified": "false"}, False, None),
        ("cloudflare", {"Cf-Cert-Verified": "FALSE"}, False, None),
        ("nginx", {"X-SSL-Client-Verify": "sure"}, None, None),
        ("azure", {"X-SSL-Client-Verify": "SUCCESS"}, None, None),  # azure has no verify header
        ("auto", {"X-Verify": "true"}, True, "X-Verify"),
    ],
)
def test_verify_headers(
    source: str, headers: dict[str, str], verified: bool | None, raw: str | None
) -> None:
    options: dict[str, object] = {"verify_header": raw} if raw else {}
    forwarded = read(source, headers, **options)
    assert forwarded.proxy_verified is verified
    if verified is not None:
        assert forwarded.proxy_verify == next(iter(headers.values()))


def test_verify_header_can_be_switched_off_and_renamed() -> None:
    headers = {"X-SSL-Client-Verify": "SUCCESS", "ssl-client-verify": "FAILED:x"}
    assert read("nginx", headers, verify_header="").proxy_verified is None
    assert read("nginx", headers, verify_header="ssl-client-verify").proxy_verified is False


def test_custom_header_name() -> None:
    headers = {"ssl-client-cert": nginx_escaped(LEAF_DER), "X-SSL-Client-Cert": "junk"}
    assert read("nginx", headers, header="ssl-client-cert").leaf == LEAF_DER


# -- hostile input ---------------------------------------------------------------------


def good_value(source: str) -> str:
    encoders: dict[str, Callable[[bytes], str]] = {
        "azure": b64,
        "nginx": nginx_escaped,
        "envoy": lambda d: xfcc_element(d),
        "rfc9440": rfc9440,
        "aws-alb": lambda d: alb(pem(d)),
        "gcp": rfc9440,
        "traefik": lambda d: traefik((d,)),
        "haproxy": lambda d: haproxy((d,)),
        "apache": apache,
        "cloudflare": b64,
        "caddy": b64,
        "auto": b64,
    }
    return encoders[source](LEAF_DER)


@pytest.mark.parametrize("source", HEADER_SOURCES)
def test_duplicate_certificate_header(source: str) -> None:
    name = default_header_names(source)[0]
    assert name is not None
    value = good_value(source)
    for headers in (
        [(name, value), (name, value)],
        [(name.lower(), value), (name.upper(), value)],
        {name: value, name.lower(): value},
        [(name.encode(), value.encode()), (name.lower().encode(), b"")],
        [(name, value), (name.replace("-", "_"), value)],
    ):
        with pytest.raises(SourceError) as caught:
            read(source, headers)
        assert caught.value.reason == DUPLICATE_HEADER
        assert name in caught.value.message


def test_lone_underscore_variant_is_ignored() -> None:
    forwarded = read("nginx", {"X_SSL_Client_Cert": nginx_escaped(LEAF_DER)})
    assert forwarded.leaf is None
    assert any("ignored X_SSL_Client_Cert" in note for note in forwarded.notes)


def test_duplicate_verify_header() -> None:
    headers = [
        ("X-SSL-Client-Cert", nginx_escaped(LEAF_DER)),
        ("X-SSL-Client-Verify", "SUCCESS"),
        ("X-SSL-Client-Verify", "FAILED:x"),
    ]
    with pytest.raises(SourceError) as caught:
        read("nginx", headers)
    assert caught.value.reason == DUPLICATE_HEADER


def test_instances_joined_by_the_server_are_refused() -> None:
    """gunicorn joins repeated headers with ',': a singleton value with a comma is refused."""
    for source, value in (
        ("azure", f"{b64(LEAF_DER)},{b64(LEAF_DER)}"),
        ("rfc9440", f"{rfc9440(LEAF_DER)}, {rfc9440(LEAF_DER)}"),
    ):
        with pytest.raises(SourceError) as caught:
            decode_header_value(source, value)
        assert caught.value.reason == MALFORMED_HEADER
        assert "joined" in caught.value.message


@pytest.mark.parametrize("source", HEADER_SOURCES)
def test_oversize_is_refused_before_decoding(source: str) -> None:
    name = default_header_names(source)[0]
    assert name is not None
    garbage = "%zz\x00" * 5000  # malformed too, but the size check comes first
    with pytest.raises(SourceError) as caught:
        read(source, {name: garbage})
    assert caught.value.reason == HEADER_TOO_LARGE
    assert "20000 bytes, over the 16384-byte limit" in caught.value.message
    value = good_value(source)
    with pytest.raises(SourceError) as caught:
        read(source, {name: value}, max_header_bytes=len(value) - 1)
    assert caught.value.reason == HEADER_TOO_LARGE
    with pytest.raises(SourceError) as caught:
        decode_header_value(source, value, max_header_bytes=len(value) - 1)
    assert caught.value.reason == HEADER_TOO_LARGE


def test_oversize_chain_and_verify_headers() -> None:
    big = "0" * 20000
    for headers in (
        {"X-SSL-Client-Cert": b64(LEAF_DER), "X-SSL-Client-Verify": big},
        {"X-SSL-Client-Cert": b64(LEAF_DER), "X-SSL-Client-Chain": big},
    ):
        with pytest.raises(SourceError) as caught:
            read("haproxy", headers)
        assert caught.value.reason == HEADER_TOO_LARGE
    many = [("Client-Cert", rfc9440(LEAF_DER))] + [("Client-Cert-Chain", "x" * 9000)] * 2
    with pytest.raises(SourceError) as caught:
        read("rfc9440", many)
    assert caught.value.reason == HEADER_TOO_LARGE


@pytest.mark.parametrize("source", HEADER_SOURCES)
@pytest.mark.parametrize("bad", ["\x00", "\x1b", "\x7f", "\r\n", "\n", "\x85", "é"])
def test_control_and_non_ascii_characters(source: str, bad: str) -> None:
    value = good_value(source)
    middle = len(value) // 2
    with pytest.raises(SourceError) as caught:
        decode_header_value(source, value[:middle] + bad + value[middle:])
    assert caught.value.reason == MALFORMED_HEADER
    assert "character U+" in caught.value.message or "not base64" in caught.value.message


def test_control_character_message_names_header_and_offset() -> None:
    value = nginx_escaped(LEAF_DER)
    with pytest.raises(SourceError) as caught:
        read("nginx", {"X-SSL-Client-Cert": value[:10] + "\x00" + value[10:]})
    assert caught.value.message == "X-SSL-Client-Cert: control character U+0000 at offset 10"


def test_tabs_are_allowed_where_the_format_has_whitespace() -> None:
    assert decode_header_value("apache", pem(LEAF_DER).replace("\n", "\t"))[0] == LEAF_DER
    assert decode_header_value("nginx", nginx_legacy(LEAF_DER).replace("\n", "\r\n"))[0] == LEAF_DER


@pytest.mark.parametrize(
    ("source", "value", "message"),
    [
        ("nginx", nginx_escaped(LEAF_DER)[:-1], "'%' must be followed by two hex digits"),
        ("nginx", nginx_escaped(LEAF_DER).replace("%0A", "%0G", 1), "broken percent-encoding"),
        ("aws-alb", quote(alb(pem(LEAF_DER))), "encoded twice"),
        ("nginx", "%C3%A9" + nginx_escaped(LEAF_DER), "non-ASCII"),
        ("azure", b64(LEAF_DER)[:-2], "not a multiple of 4"),
        ("azure", b64(LEAF_DER).replace("A", "-", 1), "'-' is not base64"),
        ("azure", "=" + b64(LEAF_DER)[1:], "padding"),
        ("azure", b64(LEAF_DER + b"\x00\x00\x00"), "3 trailing bytes after the certificate"),
        ("azure", b64(LEAF_DER[:-5]), "claims"),
        ("azure", b64(b"\x30\x80" + LEAF_DER[2:]), "indefinite length"),
        ("azure", b64(b"\x30\x81\x05" + b"\x30\x00\x30\x00\x03"), "non-minimal"),
        ("azure", b64(b"\x30\x06\x30\x00\x30\x00\x04\x00"), "signature has tag 0x04"),
        ("azure", b64(b"\x02\x01\x00"), "not a DER certificate"),
        ("caddy", b64(LEAF_DER + LEAF_DER), "trailing bytes"),
        ("apache", "garbage " + apache(LEAF_DER), "before the first PEM"),
        ("apache", apache(LEAF_DER) + "garbage", "after the last PEM"),
        ("apache", apache(LEAF_DER).replace("-----END", "garbage -----END"), "broken base64"),
        (
            "apache",
            apache(LEAF_DER).replace("-----END", "-----BEGIN CERTIFICATE----- -----END"),
            "not base64",
        ),
        ("apache", apache(LEAF_DER).replace("-----END CERTIFICATE-----", ""), "no -----END"),
        ("apache", apache(LEAF_DER).replace("CERTIFICATE", "PRIVATE KEY"), "no -----BEGIN"),
        ("apache", apache(LEAF_DER) + apache(LEAF_DER), "2 certificates where the proxy sends one"),
        ("traefik", f"{b64(LEAF_DER)},,{b64(INTER_DER)}", "item 2"),
        ("rfc9440", f":{b64(LEAF_DER)}:;x=1", "byte sequence"),
        ("gcp", f"{rfc9440(LEAF_DER)}:", "':' inside"),
        ("haproxy", b64(LEAF_DER + b"\x00\x00\x00"), f"byte {len(LEAF_DER)} is 0x00"),
    ],
)
def test_malformed_values(source: str, value: str, message: str) -> None:
    with pytest.raises(SourceError) as caught:
        decode_header_value(source, value)
    assert caught.value.reason == MALFORMED_HEADER
    assert message in caught.value.message, caught.value.message


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("traefik", traefik((LEAF_DER,) + (INTER_DER,) * 9)),
        ("haproxy", haproxy((LEAF_DER,) + (INTER_DER,) * 9)),
        ("aws-alb", alb(pem(LEAF_DER) + pem(INTER_DER) * 9)),
        ("envoy", xfcc_element(LEAF_DER, (INTER_DER,) * 9)),
        ("auto", rfc9440_list((LEAF_DER,) + (INTER_DER,) * 9)),
    ],
)
def test_chain_too_long(source: str, value: str) -> None:
    with pytest.raises(SourceError) as caught:
        decode_header_value(source, value)
    assert caught.value.reason == CHAIN_TOO_LONG
    assert "at most 8" in caught.value.message
    leaf, chain = decode_header_value(source, value, max_chain_length=9)
    assert leaf == LEAF_DER and len(chain) == 9


def test_chain_header_too_long() -> None:
    headers = {
        "X-SSL-Client-Cert": haproxy((LEAF_DER,)),
        "X-SSL-Client-Chain": haproxy((INTER_DER, ROOT_DER)),
    }
    with pytest.raises(SourceError) as caught:
        read("haproxy", headers, max_chain_length=1)
    assert caught.value.reason == CHAIN_TOO_LONG


@pytest.mark.parametrize(
    "headers",
    [42, "X-SSL-Client-Cert: x", [("only-a-name",)], [("X-SSL-Client-Cert", 7)], [(None, "x")]],
)
def test_unusable_header_collections_are_source_errors(headers: object) -> None:
    with pytest.raises(SourceError) as caught:
        read("nginx", headers)
    assert caught.value.reason == MALFORMED_HEADER


def test_decoders_are_linear() -> None:
    """Pathological 200 kB values finish fast: no backtracking, no rescanning."""
    size = 200_000
    hostile = [
        "-----BEGIN CERTIFICATE-----" * (size // 27),
        "-----BEGIN CERTIFICATE----- A -----END CERTIFICATE----- " * (size // 60),
        '"' * size,
        "\\" * size,
        'Cert="' + '\\"' * (size // 2),
        "a=b;" * (size // 4),
        "By=x," * (size // 5),
        "%" * size,
        "%41" * (size // 3),
        ":" * size,
        ":AAAA:," * (size // 7),
        "," * size,
        "A" * size,
        "MII" + "\t " * (size // 2),
    ]
    started = time.perf_counter()
    for value in hostile:
        for source in SOURCES:
            with contextlib.suppress(SourceError):
                decode_header_value(source, value, max_header_bytes=size + 100)
    assert time.perf_counter() - started < 10.0


# -- trusted proxies -------------------------------------------------------------------

NGINX_HEADERS = {"X-SSL-Client-Cert": nginx_escaped(LEAF_DER), "X-SSL-Client-Verify": "SUCCESS"}


@pytest.mark.parametrize(
    "peer", ["10.1.2.3", "127.0.0.1", "172.31.255.255", "192.168.0.1", "::1", "fd00::5"]
)
def test_default_trusted_peers(peer: str) -> None:
    forwarded = read("nginx", NGINX_HEADERS, peer)
    assert forwarded.leaf == LEAF_DER
    assert forwarded.notes[0].startswith(f"peer {peer} is a trusted proxy")


@pytest.mark.parametrize("peer", ["203.0.113.7", "2001:db8::1", "172.32.0.1", "100.64.0.1"])
def test_untrusted_peer_header_is_ignored(peer: str) -> None:
    forwarded = read("nginx", NGINX_HEADERS, peer)
    assert forwarded == Forwarded(
        None,
        (),
        None,
        None,
        (
            f"header ignored: peer {peer} is not a trusted proxy",
            "ignored header(s) sent by that peer: X-SSL-Client-Cert, X-SSL-Client-Verify",
        ),
    )


def test_untrusted_peer_is_not_even_parsed() -> None:
    """Garbage and duplicates from an untrusted peer are ignored, not errors it can provoke."""
    headers = [("X-SSL-Client-Cert", "\x00%zz"), ("X-SSL-Client-Cert", "x" * 100_000)]
    forwarded = read("nginx", headers, "203.0.113.7")
    assert forwarded.leaf is None
    assert read("nginx", {}, "203.0.113.7").notes == (
        "header ignored: peer 203.0.113.7 is not a trusted proxy",
    )


@pytest.mark.parametrize("peer", [None, "", "not-an-ip", "10.0.0.1:443", "999.1.1.1"])
def test_unknown_peer_is_not_trusted(peer: str | None) -> None:
    forwarded = read("nginx", NGINX_HEADERS, peer)
    assert forwarded.leaf is None
    assert forwarded.notes[0].startswith("header ignored: peer ")


def test_unix_socket_peer_when_listed() -> None:
    forwarded = read("nginx", NGINX_HEADERS, None, trusted_proxies=("unix",))
    assert forwarded.leaf == LEAF_DER
    assert read("nginx", NGINX_HEADERS, "10.0.0.1", trusted_proxies=("unix",)).leaf is None


AZURE_HEADERS = {"X-ARR-ClientCert": b64(LEAF_DER)}


@pytest.mark.parametrize("peer", ["testclient", "not-an-ip", "10.0.0.1:443"])
def test_any_peer_trusts_a_peer_that_is_not_an_ip_address(peer: str) -> None:
    """azure's default (0.0.0.0/0 and ::/0) is any peer: a server (or Starlette's
    TestClient) naming the peer by something other than an address is a peer too."""
    forwarded = read("azure", AZURE_HEADERS, peer)
    assert forwarded.leaf == LEAF_DER
    assert forwarded.notes[0] == (
        f"peer {peer} is not an IP address; trusted because trusted_proxies holds "
        "0.0.0.0/0 and ::/0, i.e. any peer"
    )
    listed = read("nginx", NGINX_HEADERS, peer, trusted_proxies=("0.0.0.0/0", "::/0"))
    assert listed.leaf == LEAF_DER


@pytest.mark.parametrize(
    "proxies", [("10.0.0.0/8",), ("0.0.0.0/0",), ("::/0",), ("0.0.0.0/0", "unix")]
)
def test_an_address_list_keeps_a_peer_that_is_not_an_ip_address_untrusted(
    proxies: tuple[str, ...],
) -> None:
    """Short of every IPv4 *and* every IPv6 address, a peer that is not an address matches
    no entry, and the header is ignored with that reason."""
    forwarded = read("azure", AZURE_HEADERS, "testclient", trusted_proxies=proxies)
    assert forwarded.leaf is None
    assert forwarded.notes[0] == (
        "header ignored: peer testclient is not a trusted proxy (not an IP address)"
    )


@pytest.mark.parametrize("peer", [None, ""])
def test_any_peer_still_needs_unix_for_a_peer_without_an_address(peer: str | None) -> None:
    assert read("azure", AZURE_HEADERS, peer).leaf is None
    assert read("azure", AZURE_HEADERS, peer, trusted_proxies=("unix",)).leaf == LEAF_DER


def test_cidr_and_address_entries() -> None:
    config = {"trusted_proxies": ("198.51.100.0/24", "2001:db8:1::7", "203.0.113.9")}
    assert read("nginx", NGINX_HEADERS, "198.51.100.200", **config).leaf == LEAF_DER
    assert read("nginx", NGINX_HEADERS, "198.51.101.1", **config).leaf is None
    assert read("nginx", NGINX_HEADERS, "203.0.113.9", **config).leaf == LEAF_DER
    assert read("nginx", NGINX_HEADERS, "2001:db8:1::7", **config).leaf == LEAF_DER
    assert read("nginx", NGINX_HEADERS, "[2001:db8:1::7]", **config).leaf == LEAF_DER
    assert read("nginx", NGINX_HEADERS, "2001:db8:1::8", **config).leaf is None
    assert read("nginx", NGINX_HEADERS, "10.0.0.1", **config).leaf is None


def test_ipv4_mapped_ipv6_peer() -> None:
    assert read("nginx", NGINX_HEADERS, "::ffff:10.0.0.1").leaf == LEAF_DER
    assert read("nginx", NGINX_HEADERS, "::ffff:203.0.113.7").leaf is None


def test_defaults_and_trusted_from_anywhere() -> None:
    assert default_trusted_proxies("azure") == ("0.0.0.0/0", "::/0")
    assert "10.0.0.0/8" in default_trusted_proxies("nginx")
    assert default_trusted_proxies("wsgi-environ") == ()
    assert trusted_from_anywhere(SourceConfig(source="azure"))
    assert not trusted_from_anywhere(SourceConfig(source="azure", trusted_proxies=("10.0.0.0/8",)))
    assert not trusted_from_anywhere(SourceConfig(source="nginx"))
    assert trusted_from_anywhere(SourceConfig(source="nginx", trusted_proxies=("::/0",)))
    assert not trusted_from_anywhere(SourceConfig(source="asgi-tls"))
    assert read("azure", {"X-ARR-ClientCert": b64(LEAF_DER)}, "203.0.113.7").leaf == LEAF_DER


@pytest.mark.parametrize(
    "options",
    [
        {"source": "iis"},
        {"trusted_proxies": ("10.0.0.1/8",)},
        {"trusted_proxies": ("example.com",)},
        {"trusted_proxies": "10.0.0.0/8"},
        {"max_header_bytes": 0},
        {"max_chain_length": -1},
        {"header": ""},
        {"header": "X Bad"},
        {"verify_header": "a:b"},
    ],
)
def test_config_is_validated(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SourceConfig(**options)  # type: ignore[arg-type]


def test_unknown_source_in_decode_header_value() -> None:
    with pytest.raises(ValueError, match="unknown certificate source"):
        decode_header_value("iis", "x")


def test_api_constants() -> None:
    assert REASONS == ("duplicate_header", "header_too_large", "malformed_header", "chain_too_long")
    assert len(SOURCES) == 14 and SOURCES[-1] == "auto"
    error = SourceError(MALFORMED_HEADER, "bad")
    assert (error.reason, error.message, str(error)) == (MALFORMED_HEADER, "bad", "bad")


# -- properties ------------------------------------------------------------------------

ENCODINGS: dict[str, tuple[str, Callable[[bytes], str]]] = {
    "azure": ("azure", b64),
    "nginx-escaped": ("nginx", nginx_escaped),
    "nginx-legacy": ("nginx", nginx_legacy),
    "nginx-unfolded": ("nginx", nginx_legacy_unfolded),
    "envoy": ("envoy", lambda d: xfcc_element(d)),
    "rfc9440": ("rfc9440", rfc9440),
    "aws-alb": ("aws-alb", lambda d: alb(pem(d))),
    "gcp": ("gcp", rfc9440),
    "traefik": ("traefik", lambda d: traefik((d,))),
    "traefik-old": ("traefik", lambda d: traefik_old((d,))),
    "haproxy": ("haproxy", lambda d: haproxy((d,))),
    "apache": ("apache", apache),
    "cloudflare": ("cloudflare", b64),
    "caddy": ("caddy", b64),
    "wsgi-environ": ("wsgi-environ", pem),
    "asgi-tls": ("asgi-tls", pem),
}

names = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_categories=("Cs",)),
    min_size=1,
    max_size=32,  # a CN is at most 64 bytes of UTF-8; these characters take up to two
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cn_value=names,
    serial=st.integers(min_value=1, max_value=2**159 - 1),
    encoding=st.sampled_from(sorted(ENCODINGS)),
    through_auto=st.booleans(),
)
def test_any_certificate_in_any_encoding_decodes_to_its_own_der(
    cn_value: str, serial: int, encoding: str, through_auto: bool
) -> None:
    der = make_certificate({"CN": cn_value}, issuer=INTERMEDIATE, serial=serial).der
    source, encode = ENCODINGS[encoding]
    assert decode_header_value(source, encode(der)) == (der, ())
    if through_auto:
        assert decode_header_value("auto", encode(der)) == (der, ())


header_text = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    st.text(alphabet='-:;,="\\% \tABCDEFGHIMNQRSTabcdefhinorstu0123456789+/()', max_size=300),
)


def mutate(value: str, position: int, replacement: str, delete: int) -> str:
    position %= len(value) + 1
    return value[:position] + replacement + value[position + delete :]


@settings(max_examples=500, deadline=None)
@given(source=st.sampled_from(SOURCES), value=st.one_of(header_text, st.binary(max_size=300)))
def test_any_value_raises_only_source_error(source: str, value: str | bytes) -> None:
    try:
        leaf, chain = decode_header_value(source, value)
    except SourceError as exc:
        assert exc.reason in REASONS
    else:
        assert leaf is None or leaf[0] == 0x30
        assert all(der[0] == 0x30 for der in chain)


@settings(max_examples=500, deadline=None)
@given(
    encoding=st.sampled_from(sorted(ENCODINGS)),
    position=st.integers(min_value=0),
    replacement=st.text(alphabet='-:;,="\\%0A \t\n+/ZzM', max_size=3),
    delete=st.integers(min_value=0, max_value=3),
)
def test_mutated_real_values_raise_only_source_error(
    encoding: str, position: int, replacement: str, delete: int
) -> None:
    source, encode = ENCODINGS[encoding]
    value = mutate(encode(LEAF_DER), position, replacement, delete)
    for target in (source, "auto"):
        try:
            decode_header_value(target, value)
        except SourceError as exc:
            assert exc.reason in REASONS


header_names = st.sampled_from(
    [
        "X-SSL-Client-Cert",
        "x-ssl-client-cert",
        "X_SSL_Client_Cert",
        "X-SSL-Client-Verify",
        "X-SSL-Client-Chain",
        "Client-Cert",
        "Client-Cert-Chain",
        "X-Forwarded-Client-Cert",
        "X-ARR-ClientCert",
        "X-Amzn-Mtls-Clientcert",
        "X-Client-Cert-Chain-Verified",
        "X-Client-Cert-Present",
        "Cf-Cert-Verified",
        "Other",
    ]
)
peers = st.sampled_from([PROXY, "::1", None, "", "junk", "203.0.113.7", "[::1]", "::ffff:10.0.0.1"])
header_values = st.one_of(
    header_text,
    st.binary(max_size=200),
    st.sampled_from([good_value(s) for s in HEADER_SOURCES] + [rfc9440_list((INTER_DER,))]),
)


@settings(max_examples=500, deadline=None)
@given(
    source=st.sampled_from(SOURCES),
    pairs=st.lists(st.tuples(header_names, header_values), max_size=5),
    peer=peers,
    as_mapping=st.booleans(),
    scope_chain=st.lists(st.one_of(header_text, st.just(pem(LEAF_DER))), max_size=3),
)
def test_read_forwarded_raises_only_source_error(
    source: str,
    pairs: list[tuple[str, str | bytes]],
    peer: str | None,
    as_mapping: bool,
    scope_chain: list[str],
) -> None:
    headers: object = dict(pairs) if as_mapping else pairs
    environ: dict[str, object] = {"SSL_CLIENT_CERT": scope_chain[0] if scope_chain else ""}
    if source == "asgi-tls":
        environ = {"extensions": {"tls": {"client_cert_chain": scope_chain}}}
    try:
        forwarded = read_forwarded(SourceConfig(source=source), headers, peer, environ)  # type: ignore[arg-type]
    except SourceError as exc:
        assert exc.reason in REASONS
    else:
        assert isinstance(forwarded, Forwarded)
        assert all(isinstance(note, str) for note in forwarded.notes)


def _framing_certificates() -> list[bytes]:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    keys = [
        ec.generate_private_key(ec.SECP256R1()),  # signature: short length
        rsa.generate_private_key(public_exponent=65537, key_size=1024),  # 0x81 length
        rsa.generate_private_key(public_exponent=65537, key_size=2048),  # 0x82 length
        ed25519.Ed25519PrivateKey.generate(),
    ]
    return [make_certificate({"CN": "framing"}, key=key).der for key in keys]


FRAMING_CERTIFICATES = _framing_certificates()


def _framing(data: bytes, read: Callable[[bytes, str], bytes]) -> bytes | str:
    try:
        return read(data, "the value")
    except SourceError as exc:
        return exc.message


def _framing_headers(der: bytes) -> list[int]:
    """Where the certificate's framing is: its first bytes, the signatureAlgorithm's and
    the signature's headers."""
    from policyengine.request.der import read_tlv as _read_tlv

    _, inside, _ = _read_tlv(der, 0, "")
    _, _, algorithm = _read_tlv(der, inside, "")
    _, _, signature = _read_tlv(der, algorithm, "")
    return [*range(12), *range(algorithm - 1, algorithm + 3), *range(signature - 1, signature + 5)]


@settings(max_examples=500, deadline=None)
@given(
    which=st.integers(0, len(FRAMING_CERTIFICATES) - 1),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=2),
    cut=st.integers(0, 3),
    extra=st.binary(max_size=3),
)
def test_the_inline_framing_check_equals_the_general_one(
    which: int, flips: list[tuple[int, int]], cut: int, extra: bytes
) -> None:
    """Each certificate as it is, then with its framing bytes changed, cut short or
    extended: the same answer, the same error."""
    from policyengine.request.der import single_der as _single_der
    from policyengine.request.der import single_der_framed as _single_der_framed

    der = FRAMING_CERTIFICATES[which]
    assert _single_der(der, "the value") is der
    headers = _framing_headers(der)
    data = bytearray(der)
    for pick, byte in flips:
        data[headers[pick % len(headers)]] = byte
    mutated = bytes(data[: len(data) - cut]) + extra
    assert _framing(mutated, _single_der) == _framing(mutated, _single_der_framed)


def _reframed(der: bytes, forms: tuple[int, int, int, int]) -> bytes:
    """``der`` with the lengths of the whole, the tbsCertificate, the signatureAlgorithm
    and the signature written in the given forms (0: one byte, 0x81, 0x82), minimal or not."""
    from policyengine.request.der import read_tlv as _read_tlv

    def element(tag: int, content: bytes, form: int) -> bytes:
        size = len(content)
        if form == 0:
            head = bytes([size & 0x7F])  # wrong when it does not fit: framing must say so
        elif form == 0x81:
            head = bytes([0x81, size & 0xFF])
        else:
            head = bytes([0x82]) + (size & 0xFFFF).to_bytes(2, "big")
        return bytes([tag]) + head + content

    _, inside, _ = _read_tlv(der, 0, "")
    parts = []
    pos = inside
    for tag in (0x30, 0x30, 0x03):
        _, start, pos = _read_tlv(der, pos, "")
        parts.append((tag, der[start:pos]))
    inner = b"".join(element(t, c, f) for (t, c), f in zip(parts, forms[1:], strict=True))
    return element(0x30, inner, forms[0])


@pytest.mark.parametrize("which", range(len(FRAMING_CERTIFICATES)))
def test_the_inline_framing_check_equals_the_general_one_for_every_length_form(
    which: int,
) -> None:
    from policyengine.request.der import single_der as _single_der
    from policyengine.request.der import single_der_framed as _single_der_framed

    small = make_certificate({"CN": "s"}, key_identifiers=False, client_auth=False).der
    for der in (FRAMING_CERTIFICATES[which], small):
        answers = set()
        for forms in itertools.product((0, 0x81, 0x82), repeat=4):
            data = _reframed(der, forms)
            answer = _framing(data, _single_der)
            assert answer == _framing(data, _single_der_framed), forms
            answers.add(answer == data)
        assert answers == {True, False}  # some forms are sound, some are refused
