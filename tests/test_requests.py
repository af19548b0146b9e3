"""Policy.evaluate_request end to end: every source, its wire encoding, trust, hostile input.

The encoders are test_sources.py's, which reproduce what each proxy puts on the wire; here
the forwarded values go through the whole engine (source -> facts -> rules -> Decision).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from functools import cache
from types import MappingProxyType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sources import (
    alb,
    apache,
    b64,
    haproxy,
    mutate,
    nginx_escaped,
    nginx_legacy,
    nginx_legacy_unfolded,
    pem,
    rfc9440,
    rfc9440_list,
    traefik,
    traefik_old,
    xfcc_element,
)

from policyengine import REASONS, Decision, Policy, PolicyError, policy_from_text
from policyengine.errors import SourceError
from policyengine.load.loader import WARNING_CODES
from policyengine.request.sources import SOURCES, decode_header_value, default_header_names
from policyengine.testing import make_certificate

PEER = "10.0.0.5"
"""Inside every header source's default trusted ranges (loopback and private networks)."""
OUTSIDER = "203.0.113.7"

ROOT = make_certificate({"CN": "Requests Root CA"}, ca=True)
INTERMEDIATE = make_certificate({"CN": "Requests Intermediate CA"}, issuer=ROOT, ca=True)
CLIENT = make_certificate({"CN": "api-client", "O": "Contoso Ltd"}, issuer=INTERMEDIATE)
IMPOSTOR = make_certificate({"CN": "api-client", "O": "Contoso Ltd"}, issuer=INTERMEDIATE)
"""Same names and issuer as CLIENT, another key: only the pinned fingerprint tells them apart."""
CLIENT_DER, INTER_DER, ROOT_DER = CLIENT.der, INTERMEDIATE.der, ROOT.der

HEADER_SOURCES = tuple(s for s in SOURCES if s not in ("wsgi-environ", "asgi-tls"))
CHAIN_SOURCES = (
    "envoy",
    "rfc9440",
    "aws-alb",
    "gcp",
    "traefik",
    "haproxy",
    "auto",
    "wsgi-environ",
    "asgi-tls",
)
"""Sources that can forward intermediates (the others send the leaf only)."""


# -- what each source hands the app ----------------------------------------------------


def header_name(source: str) -> str:
    name = default_header_names(source)[0]
    assert name is not None, source
    return name


def asgi_scope(pems: list[str], error: str | None = None) -> dict[str, object]:
    tls = {"client_cert_chain": pems, "client_cert_error": error}
    return {"type": "http", "extensions": {"tls": tls}}


def source_headers(source: str, der: bytes, chain: tuple[bytes, ...] = ()) -> dict[str, str]:
    """The headers ``source`` sets for a client certificate and its intermediates."""
    if source == "envoy":
        return {"X-Forwarded-Client-Cert": xfcc_element(der, chain)}
    if source in ("rfc9440", "gcp"):
        cert, chain_header, _ = default_header_names(source)
        assert cert is not None and chain_header is not None
        headers = {cert: rfc9440(der)}
        if chain:
            headers[chain_header] = rfc9440_list(chain)
        return headers
    if source == "aws-alb":
        headers = {"X-Amzn-Mtls-Clientcert-Leaf": alb(pem(der))}
        if chain:
            headers["X-Amzn-Mtls-Clientcert"] = alb("".join(pem(d) for d in (der, *chain)))
        return headers
    if source == "traefik":
        return {"X-Forwarded-Tls-Client-Cert": traefik((der, *chain))}
    if source == "haproxy":
        headers = {"X-SSL-Client-Cert": haproxy((der,))}
        if chain:
            headers["X-SSL-Client-Chain"] = haproxy(chain)
        return headers
    if source == "auto":
        return {"X-Client-Cert": rfc9440_list((der, *chain))}
    assert not chain, f"{source} forwards no intermediates"
    encode: dict[str, Callable[[bytes], str]] = {
        "azure": b64,
        "nginx": nginx_escaped,
        "apache": apache,
        "cloudflare": b64,
        "caddy": b64,
    }
    return {header_name(source): encode[source](der)}


def forwarded(source: str, der: bytes, chain: tuple[bytes, ...] = ()) -> dict[str, object]:
    """``evaluate_request`` keyword arguments carrying ``der`` as ``source`` delivers it."""
    if source == "wsgi-environ":
        environ = {"SSL_CLIENT_CERT": pem(der)}
        environ |= {f"SSL_CLIENT_CERT_CHAIN_{n}": pem(c) for n, c in enumerate(chain)}
        return {"environ": environ}
    if source == "asgi-tls":
        return {"scope": asgi_scope([pem(d) for d in (der, *chain)])}
    return {"headers": source_headers(source, der, chain)}


def nothing_forwarded(source: str) -> dict[str, object]:
    if source == "wsgi-environ":
        return {"environ": {"REQUEST_METHOD": "GET"}}
    if source == "asgi-tls":
        return {"scope": asgi_scope([])}
    return {"headers": {"Accept": "*/*"}}


# -- policies ----------------------------------------------------------------------------


def compile_text(text: str, **options: int) -> Policy:
    return policy_from_text(textwrap.dedent(text).lstrip("\n"), "test.yaml", **options)


def pinned_text(source: str, mode: str = "required", certificate: str = "") -> str:
    return f"""
        policy: pinned-{source}
        mode: {mode}
        exclusion_paths: [/health]
        certificate:
          source: {source}
          {certificate}
        sets:
          clients: [{CLIENT.sha256}]
        rules:
          - id: pinned-client
            effect: allow
            when: fingerprint.sha256 in clients
          - id: anonymous-read
            effect: allow
            when: not present and request.method == "GET"
        """


@cache
def pinned(source: str, mode: str = "required", certificate: str = "") -> Policy:
    """Allows CLIENT's fingerprint only (and, in an optional mode, anonymous GETs)."""
    return compile_text(pinned_text(source, mode, certificate))


def evaluate(
    policy: Policy, request: dict[str, object], remote_addr: str | None = PEER, **extra: object
) -> Decision:
    options: dict[str, object] = {"remote_addr": remote_addr, "path": "/orders", **extra}
    return policy.evaluate_request(**request, **options)  # type: ignore[arg-type]


def step(decision: Decision, name: str) -> str:
    assert decision.trace is not None
    found = [s for s in decision.trace.steps if s.name == name]
    assert len(found) == 1, decision.trace.steps
    return found[0].detail


def sha256(decision: Decision) -> str:
    assert decision.certificate is not None
    return decision.certificate.summary()["fingerprint.sha256"]


# -- every source: its encoding reaches the rules ----------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_every_source_allows_the_pinned_certificate(source: str) -> None:
    decision = evaluate(pinned(source), forwarded(source, CLIENT_DER), method="POST")
    assert (decision.allowed, decision.reason, decision.rule) == (
        True,
        "allowed_by_rule",
        "pinned-client",
    )
    assert decision.message == "Allowed by rule pinned-client."
    assert sha256(decision) == CLIENT.sha256


@pytest.mark.parametrize("source", SOURCES)
def test_every_source_denies_another_certificate(source: str) -> None:
    decision = evaluate(pinned(source), forwarded(source, IMPOSTOR.der), method="POST")
    assert (decision.allowed, decision.reason) == (False, "no_matching_rule")
    assert decision.failed_condition == "fingerprint.sha256 in clients"
    assert sha256(decision) == IMPOSTOR.sha256


@pytest.mark.parametrize("source", SOURCES)
def test_every_source_without_a_certificate_is_missing(source: str) -> None:
    decision = evaluate(pinned(source), nothing_forwarded(source), method="POST", explain=True)
    assert (decision.allowed, decision.reason) == (False, "missing_certificate")
    assert decision.message.startswith(
        f"No client certificate was presented, and policy pinned-{source} requires one"
    )
    assert decision.certificate is None
    assert step(decision, "mode") == "required: a certificate is needed"


@pytest.mark.parametrize(
    ("source", "note"),
    [
        ("wsgi-environ", "no SSL_CLIENT_CERT in the WSGI environ (SSLOptions +ExportCertData?)"),
        ("asgi-tls", "no client certificate in the TLS extension"),
    ],
)
def test_direct_sources_say_why_there_is_no_certificate(source: str, note: str) -> None:
    decision = evaluate(pinned(source), nothing_forwarded(source))
    assert decision.message == (
        f"No client certificate was presented, and policy pinned-{source} requires one ({note})."
    )


def test_direct_sources_without_environ_or_scope() -> None:
    for source, note in (
        ("wsgi-environ", "no WSGI environ was given"),
        ("asgi-tls", "no ASGI scope was given"),
    ):
        decision = evaluate(pinned(source), {})
        assert decision.reason == "missing_certificate"
        assert decision.message.endswith(f"({note}).")
    no_tls = evaluate(pinned("asgi-tls"), {"scope": {"type": "http", "extensions": {}}})
    assert no_tls.reason == "missing_certificate"
    assert "provides no 'tls' extension" in no_tls.message


def test_direct_sources_ignore_headers_and_the_peer() -> None:
    """wsgi-environ and asgi-tls read the server's TLS state: headers cannot inject one."""
    spoofed = {"X-SSL-Client-Cert": nginx_escaped(CLIENT_DER), "X-ARR-ClientCert": b64(CLIENT_DER)}
    for source in ("wsgi-environ", "asgi-tls"):
        request = {**nothing_forwarded(source), "headers": spoofed}
        assert evaluate(pinned(source), request, OUTSIDER).reason == "missing_certificate"
        genuine = {**forwarded(source, CLIENT_DER), "headers": spoofed}
        assert evaluate(pinned(source), genuine, OUTSIDER).reason == "allowed_by_rule"
        assert evaluate(pinned(source), genuine, None).reason == "allowed_by_rule"


ALTERNATIVE_ENCODINGS: list[tuple[str, str, Callable[[bytes], str]]] = [
    ("azure", "X-ARR-ClientCert", lambda d: pem(d).replace("\n", " ")),
    ("azure", "X-ARR-ClientCert", nginx_escaped),
    ("nginx", "X-SSL-Client-Cert", nginx_legacy),
    ("nginx", "X-SSL-Client-Cert", nginx_legacy_unfolded),
    ("traefik", "X-Forwarded-Tls-Client-Cert", lambda d: traefik_old((d,))),
    ("auto", "X-Client-Cert", b64),
    ("auto", "X-Client-Cert", rfc9440),
    ("auto", "X-Client-Cert", nginx_escaped),
    ("auto", "X-Client-Cert", nginx_legacy),
    ("auto", "X-Client-Cert", apache),
    ("auto", "X-Client-Cert", lambda d: alb(pem(d))),
    ("auto", "X-Client-Cert", lambda d: xfcc_element(d)),
    ("auto", "X-Client-Cert", lambda d: haproxy((d,))),
]


@pytest.mark.parametrize(
    ("source", "name", "encode"),
    ALTERNATIVE_ENCODINGS,
    ids=[f"{case[0]}-{n}" for n, case in enumerate(ALTERNATIVE_ENCODINGS)],
)
def test_other_encodings_a_source_accepts(
    source: str, name: str, encode: Callable[[bytes], str]
) -> None:
    policy = pinned(source)
    allowed = evaluate(policy, {"headers": [(name, encode(CLIENT_DER))]})
    assert allowed.reason == "allowed_by_rule"
    assert sha256(allowed) == CLIENT.sha256
    assert evaluate(policy, {"headers": [(name, encode(IMPOSTOR.der))]}).reason == (
        "no_matching_rule"
    )


def test_renamed_headers_in_the_certificate_section() -> None:
    policy = pinned(
        "nginx",
        certificate="header: SSL-Client-Cert\n          verify_header: SSL-Client-Verify",
    )
    value = nginx_escaped(CLIENT_DER)
    assert evaluate(policy, {"headers": {"ssl-client-cert": value}}).reason == "allowed_by_rule"
    # the default name is no longer read at all
    assert evaluate(policy, {"headers": {"X-SSL-Client-Cert": value}}).reason == (
        "missing_certificate"
    )


# -- headers in every shape a framework hands them over -----------------------------------

NGINX_VALUE = nginx_escaped(CLIENT_DER)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-SSL-Client-Cert": NGINX_VALUE, "X-SSL-Client-Verify": "SUCCESS"},
        MappingProxyType({"X-SSL-Client-Cert": NGINX_VALUE}),
        [("Host", "api.contoso.com"), ("X-SSL-Client-Cert", NGINX_VALUE)],
        (("X-SSL-Client-Cert", NGINX_VALUE),),
        {"x-ssl-client-cert": NGINX_VALUE},
        {"X-SSL-CLIENT-CERT": NGINX_VALUE},
        [("x-SsL-cLiEnT-cErT", NGINX_VALUE), ("X-SSL-CLIENT-VERIFY", "SUCCESS")],
        [(b"X-SSL-Client-Cert", NGINX_VALUE.encode("latin-1"))],
        [("X-SSL-Client-Cert", NGINX_VALUE.encode("latin-1"))],
        # Starlette's request.headers.raw / an ASGI scope["headers"]: lower-case bytes pairs
        [
            (b"host", b"api.contoso.com"),
            (b"x-ssl-client-cert", NGINX_VALUE.encode("latin-1")),
            (b"x-ssl-client-verify", b"SUCCESS"),
        ],
    ],
    ids=[
        "dict",
        "mapping-proxy",
        "list-of-pairs",
        "tuple-of-pairs",
        "lower-case",
        "upper-case",
        "mixed-case",
        "bytes-pairs",
        "bytes-value",
        "starlette-raw",
    ],
)
def test_header_collections(headers: object) -> None:
    decision = evaluate(pinned("nginx"), {"headers": headers})
    assert (decision.allowed, decision.reason) == (True, "allowed_by_rule")


def test_header_pairs_from_a_generator() -> None:
    pairs = [("Host", "api.contoso.com"), ("X-SSL-Client-Cert", NGINX_VALUE)]
    decision = evaluate(pinned("nginx"), {"headers": (pair for pair in pairs)})
    assert decision.reason == "allowed_by_rule"


def test_header_name_that_is_not_a_token_is_a_schema_error() -> None:
    with pytest.raises(PolicyError) as caught:
        policy_from_text("policy: p\ncertificate:\n  header: X SSL\n" + RULES, "test.yaml")
    (found,) = caught.value.diagnostics
    assert (found.span.line, found.span.column, found.code) == (3, 11, "schema")
    assert found.message == 'certificate.header "X SSL" is not an HTTP header name'
    assert found.hint == "use letters, digits and `-`, e.g. X-SSL-Client-Cert"


def test_bytes_are_latin_1_and_non_ascii_is_refused() -> None:
    headers = [(b"x-ssl-client-cert", b"\xe9" + NGINX_VALUE.encode())]
    decision = evaluate(pinned("nginx"), {"headers": headers})
    assert (decision.allowed, decision.reason) == (False, "malformed_header")
    assert decision.message == (
        "The forwarded certificate cannot be used: "
        "X-SSL-Client-Cert: non-ASCII character U+00E9 at offset 0."
    )


def test_headers_that_are_not_a_collection() -> None:
    for headers in ("X-SSL-Client-Cert: x", 42, [("X-SSL-Client-Cert",)]):
        decision = evaluate(pinned("nginx"), {"headers": headers})
        assert (decision.allowed, decision.reason) == (False, "malformed_header")
        assert decision.message.startswith(
            "The forwarded certificate cannot be used: headers must be a mapping or an "
            "iterable of (name, value) pairs"
        )


def test_headers_none_is_no_certificate() -> None:
    assert evaluate(pinned("nginx"), {"headers": None}).reason == "missing_certificate"


# -- trusted proxies ---------------------------------------------------------------------

IGNORED = "header ignored: peer 203.0.113.7 is not a trusted proxy"


@pytest.mark.parametrize("source", HEADER_SOURCES)
def test_header_from_an_untrusted_peer_is_no_certificate(source: str) -> None:
    if source == "azure":
        policy = pinned(source, certificate="trusted_proxies: [10.0.0.0/8]")
    else:
        policy = pinned(source)
    decision = evaluate(policy, forwarded(source, CLIENT_DER), OUTSIDER, explain=True)
    assert (decision.allowed, decision.reason) == (False, "missing_certificate")
    assert decision.message == (
        f"No client certificate was presented, and policy {policy.name} requires one ({IGNORED})."
    )
    assert decision.certificate is None
    assert step(decision, "source") == (
        f"{IGNORED}\nignored header(s) sent by that peer: {header_name(source)}"
    )
    assert step(decision, "certificate") == "no certificate was presented"


@pytest.mark.parametrize(
    ("peer", "note"),
    [
        (None, "header ignored: peer <unknown> is not a trusted proxy (no peer address)"),
        ("", "header ignored: peer <unknown> is not a trusted proxy (no peer address)"),
        ("not-an-ip", "header ignored: peer not-an-ip is not a trusted proxy (not an IP address)"),
        (
            "10.0.0.5:443",
            "header ignored: peer 10.0.0.5:443 is not a trusted proxy (not an IP address)",
        ),
        ("2001:db8::1", "header ignored: peer 2001:db8::1 is not a trusted proxy"),
    ],
)
def test_unknown_and_unparseable_peers(peer: str | None, note: str) -> None:
    decision = evaluate(pinned("nginx"), forwarded("nginx", CLIENT_DER), peer, explain=True)
    assert decision.reason == "missing_certificate"
    assert decision.message.endswith(f"requires one ({note}).")
    assert step(decision, "source").split("\n")[0] == note


def test_untrusted_peer_in_optional_mode_runs_the_rules_without_a_certificate() -> None:
    policy = pinned("nginx", mode="optional")
    request = forwarded("nginx", CLIENT_DER)
    anonymous = evaluate(policy, request, OUTSIDER, method="GET", explain=True)
    assert (anonymous.allowed, anonymous.reason, anonymous.rule) == (
        True,
        "allowed_by_rule",
        "anonymous-read",
    )
    assert anonymous.certificate is None
    assert IGNORED in step(anonymous, "source")
    assert step(anonymous, "mode") == "optional: the rules run without a certificate"
    assert anonymous.trace is not None
    present = anonymous.trace.rules[1].node.children[0].children[0]
    assert (present.text, present.outcome, present.detail) == (
        "present",
        "false",
        "no certificate was presented",
    )
    # without a certificate the pinned rule cannot hold: a POST is denied
    post = evaluate(policy, request, OUTSIDER, method="POST")
    assert (post.allowed, post.reason) == (False, "no_matching_rule")
    # from the proxy the same request is the pinned client
    trusted = evaluate(policy, request, PEER, method="POST")
    assert (trusted.reason, trusted.rule) == ("allowed_by_rule", "pinned-client")


def test_trusted_peer_note() -> None:
    decision = evaluate(pinned("nginx"), forwarded("nginx", CLIENT_DER), explain=True)
    assert step(decision, "source") == "peer 10.0.0.5 is a trusted proxy (10.0.0.0/8)"


@pytest.mark.parametrize(
    ("peer", "trusted"),
    [
        ("2001:db8:1::5", True),
        ("[2001:db8:1::5]", True),
        ("2001:db8:1:ffff::1", True),
        ("2001:db8:2::5", False),
        ("198.51.100.7", True),
        ("::ffff:198.51.100.7", True),
        ("198.51.100.8", False),
        ("::1", False),  # an explicit list replaces the loopback/private defaults
        ("10.0.0.5", False),
        ("fd00::1", False),
    ],
)
def test_ipv6_peers_and_cidrs(peer: str, trusted: bool) -> None:
    policy = pinned("nginx", certificate='trusted_proxies: ["2001:db8:1::/48", 198.51.100.7]')
    decision = evaluate(policy, forwarded("nginx", CLIENT_DER), peer, explain=True)
    assert decision.reason == ("allowed_by_rule" if trusted else "missing_certificate")
    if trusted:
        assert step(decision, "source").startswith(f"peer {peer} is a trusted proxy (")


def test_default_trusted_ranges_include_ipv6_loopback_and_ula() -> None:
    for peer in ("::1", "fd12:3456::9", "127.0.0.1", "172.16.0.1", "192.168.1.1"):
        assert evaluate(pinned("nginx"), forwarded("nginx", CLIENT_DER), peer).reason == (
            "allowed_by_rule"
        ), peer
    for peer in ("2001:db8::1", "172.32.0.1", "100.64.0.1", "8.8.8.8"):
        assert evaluate(pinned("nginx"), forwarded("nginx", CLIENT_DER), peer).reason == (
            "missing_certificate"
        ), peer


def test_unix_entry_trusts_a_peer_without_an_address() -> None:
    policy = pinned("nginx", certificate="trusted_proxies: [unix]")
    request = forwarded("nginx", CLIENT_DER)
    for peer in (None, ""):
        decision = evaluate(policy, request, peer, explain=True)
        assert decision.reason == "allowed_by_rule"
        assert step(decision, "source") == (
            "peer has no address (a Unix socket); trusted because of 'unix'"
        )
    assert evaluate(policy, request, PEER).reason == "missing_certificate"
    assert evaluate(policy, request, "127.0.0.1").reason == "missing_certificate"


def test_azure_default_trusts_any_peer() -> None:
    request = forwarded("azure", CLIENT_DER)
    for peer in (OUTSIDER, "8.8.8.8", "2001:db8::1", PEER):
        decision = evaluate(pinned("azure"), request, peer, explain=True)
        assert decision.reason == "allowed_by_rule", peer
        network = "::/0" if ":" in peer else "0.0.0.0/0"
        assert (
            step(decision, "source") == f"peer {peer} is a trusted proxy ({network}, i.e. any peer)"
        )
    # an address is still needed: "any peer" is any address
    assert evaluate(pinned("azure"), request, None).reason == "missing_certificate"
    narrowed = pinned("azure", certificate="trusted_proxies: [10.0.0.0/8]")
    assert evaluate(narrowed, request, OUTSIDER).reason == "missing_certificate"
    assert evaluate(narrowed, request, PEER).reason == "allowed_by_rule"


def test_hostile_headers_from_an_untrusted_peer_are_not_even_read() -> None:
    """An outsider cannot turn its garbage into a malformed_header or duplicate_header deny."""
    hostile = [("X-SSL-Client-Cert", "\x00%zz"), ("X-SSL-Client-Cert", "x" * 100_000)]
    decision = evaluate(pinned("nginx"), {"headers": hostile}, OUTSIDER)
    assert decision.reason == "missing_certificate"


# -- what the proxy says of its own verification -----------------------------------------

VERIFIED_TEXT = f"""
    policy: verified
    certificate:
      source: SOURCE
    sets:
      clients: [{CLIENT.sha256}]
    rules:
      - id: verified-client
        effect: allow
        when: proxy.verified and fingerprint.sha256 in clients
    """


@cache
def verified_policy(source: str) -> Policy:
    return compile_text(VERIFIED_TEXT.replace("SOURCE", source))


def with_verify(source: str, raw: str | None) -> dict[str, object]:
    if source == "asgi-tls":
        return {"scope": asgi_scope([pem(CLIENT_DER)], raw)}
    request = forwarded(source, CLIENT_DER)
    if source == "wsgi-environ":
        if raw is not None:
            request["environ"]["SSL_CLIENT_VERIFY"] = raw  # type: ignore[index]
        return request
    verify = default_header_names(source)[2]
    if raw is not None:
        assert verify is not None
        request["headers"][verify] = raw  # type: ignore[index]
    return request


@pytest.mark.parametrize(
    ("source", "raw", "verified"),
    [
        ("nginx", "SUCCESS", True),
        ("nginx", "FAILED:certificate has expired", False),
        ("nginx", "NONE", None),
        ("nginx", None, None),
        ("haproxy", "0", True),
        ("haproxy", "20", False),
        ("haproxy", "maybe", None),
        ("gcp", "true", True),
        ("gcp", "false", False),
        ("cloudflare", "true", True),
        ("cloudflare", "false", False),
        ("apache", "SUCCESS", True),
        ("apache", "GENEROUS", False),
        ("apache", "FAILED:unable to get local issuer certificate", False),
        ("wsgi-environ", "SUCCESS", True),
        ("wsgi-environ", "FAILED:expired", False),
        ("wsgi-environ", None, None),
        ("asgi-tls", None, True),
        ("asgi-tls", "certificate verify failed", False),
    ],
)
def test_proxy_verified_per_source(source: str, raw: str | None, verified: bool | None) -> None:
    decision = evaluate(verified_policy(source), with_verify(source, raw), explain=True)
    assert decision.trace is not None
    test = decision.trace.rules[0].node.children[0]
    assert test.text == "proxy.verified"
    if verified is True:
        assert (decision.allowed, decision.reason) == (True, "allowed_by_rule")
        assert test.outcome == "true"
        return
    assert (decision.allowed, decision.reason) == (False, "no_matching_rule")
    assert decision.failed_condition == "proxy.verified"
    if verified is False:
        assert test.outcome == "false"
        assert decision.message == (
            "No allow rule holds; the closest is verified-client, where `proxy.verified` is false."
        )
        assert test.detail == f"the proxy sent {raw!r}"
    else:
        assert test.outcome == "undefined"
        assert decision.message == (
            "No allow rule holds; the closest is verified-client, where `proxy.verified` "
            "is undefined."
        )
        assert test.detail == "the proxy did not say whether it verified the certificate"


@pytest.mark.parametrize("source", ["azure", "envoy", "traefik", "rfc9440", "caddy", "aws-alb"])
def test_proxy_verified_is_undefined_where_the_proxy_says_nothing(source: str) -> None:
    request = forwarded(source, CLIENT_DER)
    # a verify header a client might add is not read by these sources
    request["headers"]["X-SSL-Client-Verify"] = "SUCCESS"  # type: ignore[index]
    decision = evaluate(verified_policy(source), request, explain=True)
    assert (decision.allowed, decision.reason) == (False, "no_matching_rule")
    assert decision.trace is not None
    test = decision.trace.rules[0].node.children[0]
    assert (test.outcome, test.detail) == (
        "undefined",
        "the proxy did not say whether it verified the certificate",
    )
    assert "is undefined" in decision.message


def test_proxy_verified_is_undefined_without_a_proxy() -> None:
    policy = verified_policy("nginx")
    decision = policy.evaluate(CLIENT.pem, path="/orders", explain=True)
    assert (decision.allowed, decision.reason) == (False, "no_matching_rule")
    assert decision.trace is not None
    test = decision.trace.rules[0].node.children[0]
    assert (test.outcome, test.detail) == (
        "undefined",
        "the certificate did not come through a proxy source",
    )


PROXY_VERIFY_TEXT = f"""
    policy: verify-text
    certificate: {{source: SOURCE}}
    sets:
      clients: [{CLIENT.sha256}]
    rules:
      - id: failed-verification
        effect: deny
        when: proxy.verify startswith "FAILED"
      - id: haproxy-ok
        effect: allow
        when: proxy.verify == "0"
      - id: pinned
        effect: allow
        when: fingerprint.sha256 in clients
    """


def test_proxy_verify_is_the_raw_value() -> None:
    nginx = compile_text(PROXY_VERIFY_TEXT.replace("SOURCE", "nginx"))
    failed = evaluate(nginx, with_verify("nginx", "FAILED:certificate has expired"), explain=True)
    assert (failed.reason, failed.rule) == ("denied_by_rule", "failed-verification")
    assert failed.trace is not None
    assert failed.trace.rules[0].node.detail == 'got "FAILED:certificate has expired"'
    assert "X-SSL-Client-Verify says FAILED:certificate has expired" in step(failed, "source")
    ok = evaluate(nginx, with_verify("nginx", "SUCCESS"))
    assert (ok.reason, ok.rule) == ("allowed_by_rule", "pinned")
    haproxy_policy = compile_text(PROXY_VERIFY_TEXT.replace("SOURCE", "haproxy"))
    decision = evaluate(haproxy_policy, with_verify("haproxy", "0"))
    assert (decision.reason, decision.rule) == ("allowed_by_rule", "haproxy-ok")
    # no verify header: proxy.verify is undefined, so neither proxy rule holds
    silent = evaluate(nginx, with_verify("nginx", None), explain=True)
    assert (silent.reason, silent.rule) == ("allowed_by_rule", "pinned")
    assert silent.trace is not None
    assert silent.trace.rules[0].node.detail == "undefined: the proxy sent no verification header"


def test_verify_header_from_an_untrusted_peer_is_ignored_too() -> None:
    decision = evaluate(verified_policy("nginx"), with_verify("nginx", "SUCCESS"), OUTSIDER)
    assert decision.reason == "missing_certificate"
    assert decision.message.endswith(f"({IGNORED}).")


# -- hostile headers through the engine --------------------------------------------------


def hostile_cases() -> list[tuple[str, str, dict[str, object], str]]:
    value = NGINX_VALUE
    return [
        (
            "nginx",
            "duplicate_header",
            {"headers": [("X-SSL-Client-Cert", value), ("x-ssl-client-cert", value)]},
            "X-SSL-Client-Cert: sent 2 times; the proxy sets it once, so a client-sent copy "
            "got through",
        ),
        (
            "nginx",
            "duplicate_header",
            {"headers": [("X-SSL-Client-Cert", value), ("X_SSL_Client_Cert", value)]},
            "X-SSL-Client-Cert: also sent as X_SSL_Client_Cert, which WSGI servers merge into "
            "the same variable; a client-sent copy got through",
        ),
        (
            "nginx",
            "duplicate_header",
            {
                "headers": [
                    ("X-SSL-Client-Cert", value),
                    ("X-SSL-Client-Verify", "SUCCESS"),
                    ("X-SSL-Client-Verify", "SUCCESS"),
                ]
            },
            "X-SSL-Client-Verify: sent 2 times; the proxy sets it once, so a client-sent copy "
            "got through",
        ),
        (
            "nginx",
            "header_too_large",
            {"headers": {"X-SSL-Client-Cert": "%zz" * 6000}},
            "X-SSL-Client-Cert: 18000 bytes, over the 16384-byte limit",
        ),
        (
            "nginx",
            "malformed_header",
            {"headers": {"X-SSL-Client-Cert": value[:10] + "\x00" + value[10:]}},
            "X-SSL-Client-Cert: control character U+0000 at offset 10",
        ),
        (
            "azure",
            "malformed_header",
            {"headers": {"X-ARR-ClientCert": "not base64!"}},
            "X-ARR-ClientCert: broken base64 in the value: character '!' is not base64",
        ),
        (
            "traefik",
            "chain_too_long",
            {"headers": source_headers("traefik", CLIENT_DER, (INTER_DER,) * 9)},
            "X-Forwarded-Tls-Client-Cert: more than 8 intermediate certificates forwarded; at "
            "most 8 are accepted",
        ),
        (
            "haproxy",
            "chain_too_long",
            {"headers": source_headers("haproxy", CLIENT_DER, (INTER_DER,) * 9)},
            "9 intermediate certificates forwarded; at most 8 are accepted",
        ),
        (
            "asgi-tls",
            "malformed_header",
            {"scope": asgi_scope([pem(CLIENT_DER) + "junk"])},
            "client_cert_chain[0]: text after the last PEM certificate block: 'junk'",
        ),
    ]


@pytest.mark.parametrize(
    ("source", "reason", "request_", "detail"),
    hostile_cases(),
    ids=[f"{case[1]}-{n}" for n, case in enumerate(hostile_cases())],
)
def test_hostile_headers_deny_with_their_reason(
    source: str, reason: str, request_: dict[str, object], detail: str
) -> None:
    policy = pinned(source)
    decision = evaluate(policy, request_, explain=True)
    assert (decision.allowed, decision.reason) == (False, reason)
    assert decision.message == f"The forwarded certificate cannot be used: {detail}."
    assert decision.certificate is None
    assert decision.trace is not None
    assert decision.trace.steps[-1].name == "source"
    assert (decision.trace.steps[-1].outcome, decision.trace.steps[-1].detail) == ("deny", detail)
    assert decision.trace.rules == ()
    # even in an optional mode, where a missing certificate would run the rules
    optional = pinned(source, mode="optional")
    assert evaluate(optional, request_, method="GET").reason == reason


def test_limits_from_the_certificate_section_apply() -> None:
    policy = pinned("traefik", certificate="max_chain_length: 1\n          max_header_bytes: 2048")
    one = evaluate(policy, forwarded("traefik", CLIENT_DER, (INTER_DER,)))
    assert one.reason == "allowed_by_rule"
    two = evaluate(policy, forwarded("traefik", CLIENT_DER, (INTER_DER, ROOT_DER)))
    assert two.reason == "chain_too_long"
    big = evaluate(policy, {"headers": {"X-Forwarded-Tls-Client-Cert": "A" * 2049}})
    assert big.reason == "header_too_large"
    assert big.message == (
        "The forwarded certificate cannot be used: X-Forwarded-Tls-Client-Cert: 2049 bytes, "
        "over the 2048-byte limit."
    )


@pytest.mark.parametrize("source", CHAIN_SOURCES)
def test_chain_too_long_for_every_chain_source(source: str) -> None:
    policy = pinned(source, certificate="max_chain_length: 1")
    assert evaluate(policy, forwarded(source, CLIENT_DER, (INTER_DER,))).reason == (
        "allowed_by_rule"
    )
    decision = evaluate(policy, forwarded(source, CLIENT_DER, (INTER_DER, ROOT_DER)))
    assert (decision.allowed, decision.reason) == (False, "chain_too_long")
    assert "at most 1 are accepted" in decision.message


def test_excluded_path_never_reads_the_headers() -> None:
    hostile = [("X-SSL-Client-Cert", "\x00" * 50_000), ("X-SSL-Client-Cert", "%zz")]
    policy = pinned("nginx")
    decision = evaluate(policy, {"headers": hostile}, path="/health/live", explain=True)
    assert (decision.allowed, decision.reason) == (True, "excluded_path")
    assert decision.message == (
        "The path /health/live is excluded from client-certificate checks by /health."
    )
    assert decision.trace is not None
    assert [s.name for s in decision.trace.steps] == ["path"]
    # a path that only looks excluded is not, and then the header is read
    sneaky = evaluate(policy, {"headers": hostile}, path="/health/../orders")
    assert sneaky.reason == "duplicate_header"
    asgi = pinned("asgi-tls")
    garbage = {"scope": asgi_scope(["garbage"])}
    assert evaluate(asgi, garbage, path="/health").reason == "excluded_path"
    assert evaluate(asgi, garbage).reason == "malformed_header"


# -- properties: whatever is sent, a decision, and never the wrong allow ------------------

header_text = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=300),
    st.text(alphabet='-:;,="\\% \tABCDEFGHIMNQRSTabcdefhinorstu0123456789+/()', max_size=300),
)


def carrying(source: str, value: str | bytes) -> dict[str, object]:
    """``value`` where ``source`` looks for the client certificate."""
    if source == "wsgi-environ":
        return {"environ": {"SSL_CLIENT_CERT": value}}
    if source == "asgi-tls":
        return {"scope": asgi_scope([value])}  # type: ignore[list-item]
    name = header_name(source)
    return {"headers": [(name.encode() if isinstance(value, bytes) else name, value)]}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=st.sampled_from(SOURCES), value=header_text, peer=st.sampled_from([PEER, None]))
def test_any_header_value_is_decided_and_never_allowed(
    source: str, value: str | bytes, peer: str | None
) -> None:
    decision = evaluate(pinned(source), carrying(source, value), peer, method="POST")
    assert isinstance(decision, Decision)
    assert not decision.allowed
    assert decision.reason in REASONS
    assert decision.reason != "evaluation_error", decision.message


def encoded(source: str) -> str:
    """The pinned certificate as ``source`` sends it (PEM for the direct-TLS sources)."""
    if source in ("wsgi-environ", "asgi-tls"):
        return pem(CLIENT_DER)
    return source_headers(source, CLIENT_DER)[header_name(source)]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    source=st.sampled_from(SOURCES),
    position=st.integers(min_value=0),
    replacement=st.text(alphabet='-:;,="\\%0A \t\n+/ZzM', max_size=3),
    delete=st.integers(min_value=0, max_value=3),
)
def test_mutated_values_allow_only_as_the_pinned_certificate(
    source: str, position: int, replacement: str, delete: int
) -> None:
    value = mutate(encoded(source), position, replacement, delete)
    decision = evaluate(pinned(source), carrying(source, value), method="POST")
    assert decision.reason in REASONS
    assert decision.reason != "evaluation_error", decision.message
    if decision.allowed:
        # a harmless edit (whitespace the format allows): it must still be exactly CLIENT
        assert decode_header_value(source, value)[0] == CLIENT_DER
        assert sha256(decision) == CLIENT.sha256
    else:
        try:
            leaf = decode_header_value(source, value)[0]
        except SourceError:
            return
        assert leaf != CLIENT_DER, decision.message


# -- intermediates -----------------------------------------------------------------------


@pytest.mark.parametrize("source", CHAIN_SOURCES)
def test_forwarded_intermediates_reach_the_decision(source: str) -> None:
    request = forwarded(source, CLIENT_DER, (INTER_DER, ROOT_DER))
    decision = evaluate(pinned(source), request, explain=True)
    assert (decision.allowed, decision.reason) == (True, "allowed_by_rule")
    # the leaf is evaluated, never an intermediate
    assert sha256(decision) == CLIENT.sha256
    if source not in ("wsgi-environ", "asgi-tls"):  # direct TLS has no such note (yet)
        assert "2 intermediate certificate(s) forwarded" in step(decision, "source").split("\n")


def test_intermediates_notes_per_format() -> None:
    rfc = evaluate(pinned("rfc9440"), forwarded("rfc9440", CLIENT_DER, (INTER_DER,)), explain=True)
    assert step(rfc, "source") == (
        "peer 10.0.0.5 is a trusted proxy (10.0.0.0/8)\n1 intermediate certificate(s) forwarded"
    )
    # XFCC Chain repeats the leaf first: it is dropped, one intermediate remains
    envoy = evaluate(pinned("envoy"), forwarded("envoy", CLIENT_DER, (INTER_DER,)), explain=True)
    assert "1 intermediate certificate(s) forwarded" in step(envoy, "source")
    # a chain header without a certificate is not a certificate
    lonely = {"headers": {"Client-Cert-Chain": rfc9440_list((INTER_DER,))}}
    decision = evaluate(pinned("rfc9440"), lonely, explain=True)
    assert decision.reason == "missing_certificate"
    assert "Client-Cert-Chain ignored: it came without a certificate" in step(decision, "source")
    # ALB passthrough mode: only the whole chain, leaf first
    passthrough = {"headers": {"X-Amzn-Mtls-Clientcert": alb(pem(CLIENT_DER) + pem(INTER_DER))}}
    alb_decision = evaluate(pinned("aws-alb"), passthrough, explain=True)
    assert alb_decision.reason == "allowed_by_rule"
    assert "took the leaf from X-Amzn-Mtls-Clientcert (ALB passthrough mode)" in step(
        alb_decision, "source"
    )


# -- the facts cache ---------------------------------------------------------------------


def test_facts_are_cached_across_requests() -> None:
    policy = compile_text(pinned_text("nginx"))
    request = forwarded("nginx", CLIENT_DER)
    evaluate(policy, request)  # the first sighting is noted; from the second on, kept
    first = evaluate(policy, request)
    second = evaluate(policy, request)
    assert first.certificate is not None
    assert second.certificate is first.certificate
    # another encoding of the same certificate is the same DER: the same facts
    legacy = evaluate(policy, {"headers": {"X-SSL-Client-Cert": nginx_legacy(CLIENT_DER)}})
    assert legacy.certificate is first.certificate
    other = evaluate(policy, forwarded("nginx", IMPOSTOR.der))
    assert other.certificate is not first.certificate


def test_facts_cache_can_be_turned_off() -> None:
    policy = compile_text(pinned_text("nginx"), facts_cache_size=0)
    request = forwarded("nginx", CLIENT_DER)
    first = evaluate(policy, request)
    second = evaluate(policy, request)
    assert first.certificate is not None and second.certificate is not None
    assert second.certificate is not first.certificate
    assert sha256(first) == sha256(second) == CLIENT.sha256
    assert (first.reason, second.reason) == ("allowed_by_rule", "allowed_by_rule")


# -- the certificate: section, silence:, and the trusted-anywhere warning -----------------

# a rule lint has nothing to say about, so the warnings under test stand alone
RULES = (
    "rules:\n  - id: a\n    effect: allow\n"
    "    silence: [any-certificate]\n"  # an issuer check is no guard; not the topic here
    '    when: present and valid and issuer.O == "C"\n'
)


def schema_error(text: str) -> tuple[int, int, str, str]:
    with pytest.raises(PolicyError) as caught:
        policy_from_text(text + RULES, "test.yaml")
    diagnostics = caught.value.diagnostics
    assert len(diagnostics) == 1, [d.message for d in diagnostics]
    found = diagnostics[0]
    assert (found.severity, found.code) == ("error", "schema")
    return found.span.line, found.span.column, found.message, found.hint


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "policy: p\ncertificate:\n  source: ngnix\n",
            (
                3,
                11,
                'certificate.source is "ngnix"; it must be one of ' + ", ".join(SOURCES),
                "did you mean `nginx`?",
            ),
        ),
        (
            "policy: p\ncertificate:\n  source: iis\n",
            (3, 11, 'certificate.source is "iis"; it must be one of ' + ", ".join(SOURCES), ""),
        ),
        (
            "policy: p\ncertificate:\n  source: nginx\n"
            "  trusted_proxies: [127.0.0.1, 10.0.0.1/8]\n",
            (
                4,
                32,
                'trusted proxy "10.0.0.1/8" is not an address or network: 10.0.0.1/8 has host '
                "bits set",
                "write an address (10.0.0.4, ::1) or a network (10.0.0.0/8), or unix",
            ),
        ),
        (
            "policy: p\ncertificate:\n  trusted_proxies:\n    - ::1\n    - proxy.internal\n",
            (
                5,
                7,
                "trusted proxy \"proxy.internal\" is not an address or network: 'proxy.internal' "
                "does not appear to be an IPv4 or IPv6 network",
                "write an address (10.0.0.4, ::1) or a network (10.0.0.0/8), or unix",
            ),
        ),
        (
            "policy: p\ncertificate:\n  trusted_proxies: 10.0.0.0/8\n",
            (3, 20, "certificate.trusted_proxies must be a list, not a string", ""),
        ),
        (
            "policy: p\ncertificate:\n  max_header_bytes: 100\n",
            (3, 21, "certificate.max_header_bytes: 100 is less than the minimum of 256", ""),
        ),
        (
            "policy: p\ncertificate:\n  max_header_bytes: 2000000\n",
            (
                3,
                21,
                "certificate.max_header_bytes: 2000000 is greater than the maximum of 1048576",
                "",
            ),
        ),
        (
            "policy: p\ncertificate:\n  max_chain_length: 33\n",
            (3, 21, "certificate.max_chain_length: 33 is greater than the maximum of 32", ""),
        ),
        (
            "policy: p\ncertificate:\n  source: nginx\n  verfy_header: X-Verify\n",
            (4, 3, "unknown key `verfy_header` in certificate", "did you mean `verify_header`?"),
        ),
        (
            "policy: p\nsilence: [unused-set, trusted-anywere]\n",
            (
                2,
                23,
                "unknown warning code `trusted-anywere`",
                "did you mean `trusted-anywhere`?",
            ),
        ),
        (
            "policy: p\nsilence: [everything]\n",
            (
                2,
                11,
                "unknown warning code `everything`",
                "codes: " + ", ".join(WARNING_CODES),
            ),
        ),
    ],
)
def test_certificate_section_errors(text: str, expected: tuple[int, int, str, str]) -> None:
    assert schema_error(text) == expected


def test_every_bad_trusted_proxy_is_reported() -> None:
    text = "policy: p\ncertificate:\n  trusted_proxies: [nope, 10.0.0.0/8, 300.1.1.1, unix]\n"
    with pytest.raises(PolicyError) as caught:
        policy_from_text(text + RULES, "test.yaml")
    spans = [(d.span.line, d.span.column, d.span.length) for d in caught.value.diagnostics]
    assert spans == [(3, 21, 4), (3, 39, 9)]


AZURE_MESSAGE = "the azure source believes X-ARR-ClientCert from any peer by default"
AZURE_HINT = (
    "App Service's front end can be anywhere, so this is the azure default: make sure the app "
    "is reachable only through App Service (no private endpoint, VNet route or open container "
    "port that skips it)"
)
OPEN_HINT = (
    "that is safe only if nothing but the proxy can reach the app; otherwise list the proxy's "
    "addresses in certificate.trusted_proxies"
)


def warnings_of(text: str) -> list[tuple[int, int, str, str]]:
    policy = policy_from_text(text + RULES, "test.yaml")
    out = []
    for warning in policy.warnings:
        assert (warning.severity, warning.code) == ("warning", "trusted-anywhere")
        out.append((warning.span.line, warning.span.column, warning.message, warning.hint))
    return out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("policy: p\n", [(1, 1, AZURE_MESSAGE, AZURE_HINT)]),
        ("description: d\npolicy: p\n", [(2, 1, AZURE_MESSAGE, AZURE_HINT)]),
        (
            "policy: p\nmode: optional\ncertificate:\n  source: azure\n",
            [(3, 1, AZURE_MESSAGE, AZURE_HINT)],
        ),
        (
            'policy: p\ncertificate:\n  source: nginx\n  trusted_proxies: ["0.0.0.0/0"]\n',
            [(2, 1, "trusted_proxies lets any peer set X-SSL-Client-Cert", OPEN_HINT)],
        ),
        (
            'policy: p\ncertificate:\n  source: envoy\n  trusted_proxies: [10.0.0.0/8, "::/0"]\n',
            [(2, 1, "trusted_proxies lets any peer set X-Forwarded-Client-Cert", OPEN_HINT)],
        ),
        (
            'policy: p\ncertificate:\n  source: azure\n  trusted_proxies: ["0.0.0.0/0"]\n',
            [(2, 1, "trusted_proxies lets any peer set X-ARR-ClientCert", AZURE_HINT)],
        ),
        (
            "policy: p\ncertificate:\n  source: caddy\n  header: X-Cert\n"
            '  trusted_proxies: ["::/0"]\n',
            [(2, 1, "trusted_proxies lets any peer set X-Cert", OPEN_HINT)],
        ),
        ("policy: p\ncertificate:\n  source: azure\n  trusted_proxies: [10.0.0.0/8]\n", []),
        ("policy: p\ncertificate:\n  source: nginx\n", []),
        ("policy: p\ncertificate:\n  source: nginx\n  trusted_proxies: [0.0.0.0/1]\n", []),
        # direct TLS reads no header: a /0 list is never consulted
        ('policy: p\ncertificate:\n  source: asgi-tls\n  trusted_proxies: ["0.0.0.0/0"]\n', []),
        ("policy: p\nsilence: [trusted-anywhere]\n", []),
        (
            "policy: p\nsilence: [trusted-anywhere]\ncertificate:\n  source: nginx\n"
            '  trusted_proxies: ["0.0.0.0/0"]\n',
            [],
        ),
    ],
)
def test_trusted_anywhere_warning(text: str, expected: list[tuple[int, int, str, str]]) -> None:
    assert warnings_of(text) == expected


def test_silence_keeps_other_warnings() -> None:
    text = "policy: p\nsilence: [trusted-anywhere]\nsets:\n  unused: [a]\n"
    policy = policy_from_text(text + RULES, "test.yaml")
    assert [w.code for w in policy.warnings] == ["unused-set"]
    both = policy_from_text(text.replace("]", ", unused-set]", 1) + RULES, "test.yaml")
    assert both.warnings == ()


def test_trusted_anywhere_warning_renders_at_the_certificate_key() -> None:
    text = 'policy: p\ncertificate:\n  source: nginx\n  trusted_proxies: ["0.0.0.0/0"]\n'
    policy = policy_from_text(text + RULES, "test.yaml")
    assert policy.warnings[0].render() == (
        "test.yaml:2:1: warning: trusted_proxies lets any peer set X-SSL-Client-Cert\n"
        "    2 | certificate:\n"
        "      | ^^^^^^^^^^^\n"
        f"hint: {OPEN_HINT}"
    )


def test_certificate_section_becomes_the_policy_source() -> None:
    text = (
        "policy: p\ncertificate:\n  source: haproxy\n  header: X-Client-DER\n"
        '  chain_header: ""\n  verify_header: X-Verify\n  trusted_proxies: [unix, 10.1.0.0/16]\n'
        "  max_header_bytes: 4096\n  max_chain_length: 2\n"
    )
    config = policy_from_text(text + RULES, "test.yaml").source
    assert (config.source, config.header_name, config.chain_header_name) == (
        "haproxy",
        "X-Client-DER",
        None,
    )
    assert config.verify_header_name == "X-Verify"
    assert config.effective_trusted_proxies == ("unix", "10.1.0.0/16")
    assert (config.max_header_bytes, config.max_chain_length) == (4096, 2)
    default = policy_from_text("policy: p\n" + RULES, "test.yaml").source
    assert (default.source, default.header_name, default.trusted_proxies) == (
        "azure",
        "X-ARR-ClientCert",
        None,
    )
