"""The speed layers never change a decision: every source, with its caches and without.

Between a request and its decision a policy keeps the header memo (what a peer and a
header value came to, and the lane through which a returning client's request skips the
header scan), the facts cache, and the decision memo (a certificate-only policy's outcome,
kept for the span of time it holds). Every request below is decided by a policy with all
of them, twice (the second time through the returning client's lane when it applies),
after its memos have been fed both leaves and, half the time, this very request (at the
same instant or another: else it is a first sighting among known values); then once
with an explanation (which reads no memo); and once by the same policy text compiled
with every cache, memo and the rule index off. The four decisions, their messages and the
certificate they read must be the same.

This holds for every source in ``SOURCES``, fed what that proxy really sends (URL-encoded
PEM, base64 DER, RFC 9440 byte sequences, XFCC, HAProxy's concatenated DER, the keycloak
samples), and what a client or a broken proxy may send instead: duplicates, underscore
variants, other cases, bytes names, garbage, values at and over the size limit, chains too
long, every verdict the verify header can carry, and untrusted peers. The direct sources
(``wsgi-environ``, ``asgi-tls``) are fed their environ and scope.

Only the public API and ``compile_document``'s switches (``facts_cache_size=0``,
``memo=False``, ``index=False``) are used: no test here knows how the caches are built.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_sources import (
    alb,
    apache,
    b64,
    haproxy,
    nginx_escaped,
    nginx_legacy,
    nginx_legacy_unfolded,
    pem,
    rfc9440,
    rfc9440_list,
    sample,
    traefik,
    traefik_old,
    xfcc_element,
)

from policyengine import Decision, Policy
from policyengine.load.document import Document, parse_document
from policyengine.load.loader import compile_document
from policyengine.request.sources import SOURCES, default_header_names, source_named
from policyengine.request.sources.record import ANY, BOOLEAN, INTEGER, STATUS
from policyengine.testing import make_certificate

# -- certificates and times -----------------------------------------------------------

NOT_BEFORE = datetime(2026, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2027, 1, 1, tzinfo=UTC)
OTHER_AFTER = NOT_AFTER + timedelta(days=45)
ROOT = make_certificate({"CN": "Lanes Root CA"}, ca=True)
INTER = make_certificate({"CN": "Lanes Intermediate CA"}, issuer=ROOT, ca=True)
CERT = make_certificate(
    {"CN": "api-client", "O": "Contoso Ltd"},
    issuer=INTER,
    not_before=NOT_BEFORE,
    not_after=NOT_AFTER,
)
OTHER = make_certificate(
    {"CN": "someone-else", "O": "Contoso Ltd"},
    issuer=INTER,
    not_before=NOT_BEFORE,
    not_after=OTHER_AFTER,
)
LEAVES = {"cert": CERT.der, "other": OTHER.der}

SECOND = timedelta(seconds=1)
BOUNDARIES = (
    NOT_BEFORE,
    NOT_AFTER,
    NOT_AFTER - timedelta(days=30),
    NOT_AFTER - timedelta(days=7),
    OTHER_AFTER,
    OTHER_AFTER - timedelta(days=7),
)
TIMES = sorted({b + d for b in BOUNDARIES for d in (-SECOND, timedelta(0), SECOND)})
"""Either side of every validity boundary of both leaves and every window of the rules."""

ENVOY_CERT = sample("keycloak_envoy_xfcc_cert.txt")
ENVOY_CHAIN = sample("keycloak_envoy_xfcc_chain.txt")
RFC9440_CERT = sample("keycloak_rfc9440_client_cert.txt")
RFC9440_CHAIN = sample("keycloak_rfc9440_client_chain.txt")
HAPROXY_CERT = sample("keycloak_haproxy_client_cert.txt")
HAPROXY_CHAIN = sample("keycloak_haproxy_client_chain.txt")

# -- what each proxy sends ------------------------------------------------------------

Encode = Callable[[bytes, tuple[bytes, ...]], str]
"""A certificate header's value as the proxy writes it, from the leaf and the chain (which
an encoding that has no room for it leaves out)."""


def alone(encode: Callable[[bytes], str]) -> Encode:
    return lambda der, chain: encode(der)


def pems(ders: tuple[bytes, ...]) -> str:
    return "".join(pem(der) for der in ders)


@dataclass(frozen=True)
class Wire:
    """What one source's proxy puts on the wire (``cert``: every form it takes)."""

    cert: tuple[Encode, ...]
    chain: Callable[[tuple[bytes, ...]], str] | None = None
    """The chain header's encoding, for the sources that have one."""
    samples: tuple[str, ...] = ()
    """Certificate-header values from a real deployment (keycloak's tests)."""
    chain_samples: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    """Other headers the source reads (for its notes)."""


WIRES: dict[str, Wire] = {
    "azure": Wire(
        (alone(b64), alone(lambda d: pem(d).replace("\n", " ")), alone(nginx_escaped)),
        samples=(HAPROXY_CERT,),
    ),
    "nginx": Wire((alone(nginx_escaped), alone(nginx_legacy), alone(nginx_legacy_unfolded))),
    "envoy": Wire(
        (
            lambda d, c: xfcc_element(d, c),
            lambda d, c: f"{xfcc_element(OTHER.der, by='spiffe://far')},{xfcc_element(d, c)}",
        ),
        samples=(ENVOY_CERT, ENVOY_CHAIN),
    ),
    "rfc9440": Wire(
        (alone(rfc9440), alone(lambda d: rfc9440(d).replace("=", ""))),
        chain=rfc9440_list,
        samples=(RFC9440_CERT,),
        chain_samples=(RFC9440_CHAIN,),
    ),
    "aws-alb": Wire((alone(lambda d: alb(pem(d))),), chain=lambda ders: alb(pems(ders))),
    "gcp": Wire(
        (alone(rfc9440),),
        chain=rfc9440_list,
        samples=(RFC9440_CERT,),
        chain_samples=(RFC9440_CHAIN,),
        extra=("X-Client-Cert-Present", "X-Client-Cert-Error"),
    ),
    "traefik": Wire((lambda d, c: traefik((d, *c)), lambda d, c: traefik_old((d, *c)))),
    "haproxy": Wire(
        (alone(lambda d: haproxy((d,))), lambda d, c: haproxy((d, *c))),
        chain=haproxy,
        samples=(HAPROXY_CERT,),
        chain_samples=(HAPROXY_CHAIN,),
    ),
    "apache": Wire((alone(apache), alone(lambda d: pem(d).replace("\n", "\t")))),
    "cloudflare": Wire((alone(b64),), samples=(HAPROXY_CERT,)),
    "caddy": Wire((alone(b64),), samples=(HAPROXY_CERT,)),
    "wsgi-environ": Wire((alone(pem), lambda d, c: pems((d, *c)))),
    "asgi-tls": Wire((alone(pem), lambda d, c: pems((d, *c)))),
    "auto": Wire(
        (
            alone(b64),
            alone(rfc9440),
            alone(nginx_escaped),
            alone(nginx_legacy),
            alone(apache),
            alone(pem),
            alone(lambda d: alb(pem(d))),
            lambda d, c: xfcc_element(d, c),
            lambda d, c: traefik_old((d, *c)),
            lambda d, c: rfc9440_list((d, *c)),
            lambda d, c: haproxy((d, *c)),
        ),
        samples=(ENVOY_CERT, RFC9440_CERT, HAPROXY_CERT, HAPROXY_CHAIN),
    ),
}
DIRECT = ("wsgi-environ", "asgi-tls")
HEADER_SOURCES = tuple(s for s in SOURCES if s not in DIRECT)

VERDICTS = {
    STATUS: ("SUCCESS", "FAILED:certificate has expired", "NONE", "GENEROUS", "success", "sure"),
    INTEGER: ("0", "20", "00", "-1", "maybe"),
    BOOLEAN: ("true", "false", "TRUE", "1", "0", "maybe"),
    ANY: ("SUCCESS", "true", "FALSE", "FAILED:x", "NONE", "GENEROUS", "0"),
}
"""Every verdict a verify header of each dialect can carry, and some it cannot."""

GARBAGE = (
    "not a certificate",
    "SUCCESS",
    "(null)",
    "",
    "   ",
    "%zz",
    "Zm9v",
    ":Zm9v:",
    "::",
    ",",
    "-----BEGIN CERTIFICATE-----",
    'Hash=1234;Cert="no end quote',
    'Hash=1234;Chain="foobar"',
    "é",
    "a\x00b",
    "=" + b64(CERT.der)[1:],
    b64(CERT.der)[:-2],
    b64(CERT.der + b"\x00"),
)
CHAINS = ((), (INTER.der,), (INTER.der, ROOT.der), (CERT.der, INTER.der), (INTER.der,) * 3)
"""Intermediates a proxy may forward: none, one, two, the leaf repeated, one too many for
``max_chain_length: 2``."""
TRUSTED = "10.0.0.1"
PEERS = (TRUSTED, "10.9.8.7", "::ffff:10.0.0.1", "::1", "192.0.2.7", "2001:db8::1", "", None)
LIMITS = (5000, 16384)
NOISE = (
    "Host",
    "Accept",
    "X-Forwarded-For",
    "Cookie",
    *sorted({n for s in HEADER_SOURCES for n in default_header_names(s) if n}),
)
"""Headers a request carries besides the source's: ordinary ones, and other proxies'."""
VERIFY_HEADER = "X-Client-Verify"
"""Configured for the proxy-verdict policy where a source has no verify header of its own."""


def test_every_source_has_its_wire_forms() -> None:
    assert set(WIRES) == set(SOURCES)


# -- policies -------------------------------------------------------------------------

CERTIFICATE_RULES = """\
  - id: client
    effect: allow
    when: valid and subject.CN == "api-client"
  - id: renewing
    effect: deny
    when: subject.CN == "someone-else" and expires within 7d
  - id: soon
    effect: allow
    when: expires within 30d
"""
"""Rules that read the certificate and the time only: the decision memo keeps their outcome."""

REQUEST_RULES = """\
  - id: verified-admin
    effect: allow
    when: >-
      valid and subject.CN == "api-client" and proxy.verified
      and request.path startswith "/admin"
  - id: orders
    effect: allow
    when: valid and request.method == "GET" and request.path startswith "/orders"
  - id: said-failed
    effect: deny
    when: proxy.verify startswith "FAILED"
  - id: spoofed-host
    effect: deny
    when: request.host == "evil.example"
  - id: verified
    effect: allow
    when: proxy.verified and subject.O == "Contoso Ltd"
"""
"""Rules that read the request and the proxy's verdict: no memo may answer for them."""


@dataclass(frozen=True)
class Setting:
    source: str
    mode: str
    limit: int
    chain_length: int
    verify: bool
    """Give the source a verify header when it has none of its own."""

    @property
    def names(self) -> tuple[str | None, str | None, str | None]:
        cert, chain, verify = default_header_names(self.source)
        if verify is None and self.verify and self.source not in DIRECT:
            verify = VERIFY_HEADER
        return cert, chain, verify

    def text(self, rules: str) -> str:
        extra = f"  verify_header: {VERIFY_HEADER}\n" if self.names[2] == VERIFY_HEADER else ""
        return (
            f"policy: lanes\ncertificate:\n  source: {self.source}\n"
            f'  trusted_proxies: [10.0.0.0/8, "::1"]\n'
            f"  max_header_bytes: {self.limit}\n  max_chain_length: {self.chain_length}\n{extra}"
            f"mode: {self.mode}\nexclusion_paths: /public\nrules:\n{rules}"
        )


def settings_for(source: str, *, verify: bool) -> st.SearchStrategy[Setting]:
    return st.builds(
        Setting,
        st.just(source),
        st.sampled_from(("optional", "required")),
        st.sampled_from(LIMITS),
        st.sampled_from((2, 8)),
        st.just(verify),
    )


def compiled(text: str) -> tuple[Policy, Policy]:
    """The policy with its caches and memos (compiled afresh: nothing remembered from an
    earlier example), and the same text with all of them and the rule index off."""
    document, plain = _plain(text)
    return compile_document(document), plain


@functools.cache
def _plain(text: str) -> tuple[Document, Policy]:
    document = parse_document(text, "lanes.yaml")
    plain = compile_document(
        document,
        facts_cache_size=0,
        memo=False,
        index=False,
        recall=False,
        second_sighting=False,
        der_names=False,  # cryptography's reading of the names, not the DER name reader's
    )
    return document, plain


def der_of(decision: Decision) -> bytes | None:
    return None if decision.certificate is None else decision.certificate.der


# -- what a request sends -------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """One request as a framework hands it over. Its containers are built anew for each
    call (an iterator is used up; nothing a decision does may leak into the next)."""

    pairs: tuple[tuple[object, object], ...]
    shape: str
    remote_addr: object
    path: str | None
    method: str | None
    host: str | None
    now: datetime
    environ: object = None
    scope: object = None

    def kwargs(self) -> dict[str, Any]:
        pairs = list(self.pairs)
        headers: object = {
            "list": lambda: pairs,
            "tuple": lambda: tuple(pairs),
            "dict": lambda: dict(pairs),
            "mapping": lambda: MappingProxyType(dict(pairs)),
            "iterator": lambda: iter(pairs),
            "none": lambda: None,
        }[self.shape]()
        out: dict[str, Any] = {
            "headers": headers,
            "remote_addr": self.remote_addr,
            "path": self.path,
            "method": self.method,
            "host": self.host,
            "now": self.now,
        }
        if self.environ is not None:
            out["environ"] = _environ(copy.deepcopy(self.environ))
        if self.scope is not None:
            out["scope"] = copy.deepcopy(self.scope)
        return out


def _environ(environ: object) -> object:
    """``("var_lookup", variables)`` stands for mod_wsgi's lookup callable over them."""
    if isinstance(environ, tuple) and environ[0] == "var_lookup":
        variables: dict[str, object] = environ[1]
        return {"wsgi.version": (1, 0), "mod_ssl.var_lookup": lambda n: variables.get(n, "")}
    return environ


def oversized(draw: st.DrawFn, value: str, limit: int) -> str:
    """``value`` padded to the size limit, or one byte over it, or a long run of junk."""
    kind = draw(st.sampled_from(("at", "over", "junk")))
    if kind == "junk":
        return draw(st.sampled_from(("A", "%zz\x00", '"'))) * (limit + 1)
    size = limit + (kind == "over")
    return value + " " * max(size - len(value), 0)


def certificate_value(draw: st.DrawFn, source: str, limit: int) -> str:
    """A certificate-header value: mostly a leaf the way the proxy sends it."""
    wire = WIRES[source]
    kind = draw(st.sampled_from(("leaf",) * 6 + ("sample", "garbage", "cut", "big", "foreign")))
    if kind == "sample" and wire.samples:
        return draw(st.sampled_from(wire.samples))
    if kind == "garbage":
        return draw(st.sampled_from(GARBAGE))
    if kind == "foreign":  # what another proxy sends
        other = WIRES[draw(st.sampled_from(sorted(WIRES)))]
        return draw(st.sampled_from(other.cert))(CERT.der, ())
    encode = draw(st.sampled_from(wire.cert))
    value = encode(LEAVES[draw(st.sampled_from(("cert", "cert", "other")))], draw_chain(draw))
    if kind == "cut":
        return value[: draw(st.integers(0, len(value)))]
    if kind == "big":
        return oversized(draw, value, limit)
    return value


def draw_chain(draw: st.DrawFn) -> tuple[bytes, ...]:
    return draw(st.sampled_from(((),) * 3 + CHAINS))


def chain_value(draw: st.DrawFn, source: str, limit: int) -> str:
    wire = WIRES[source]
    assert wire.chain is not None
    kind = draw(st.sampled_from(("chain",) * 4 + ("sample", "garbage", "big")))
    value = wire.chain(draw(st.sampled_from(CHAINS)))
    if kind == "sample" and wire.chain_samples:
        return draw(st.sampled_from(wire.chain_samples))
    if kind == "garbage":
        return draw(st.sampled_from(GARBAGE))
    if kind == "big":
        return oversized(draw, value, limit)
    return value


def verify_value(draw: st.DrawFn, source: str, limit: int) -> str:
    kind = draw(st.sampled_from(("verdict",) * 5 + ("garbage", "big")))
    value = draw(st.sampled_from(VERDICTS[source_named(source).verify_dialect]))
    if kind == "garbage":
        return draw(st.sampled_from(GARBAGE))
    if kind == "big":
        return oversized(draw, value, limit)
    return value


def spellings(name: str) -> list[str]:
    """How a client, a framework or a WSGI server may spell a header name."""
    under = name.replace("-", "_")
    return [name, name, name.lower(), name.upper(), name.swapcase(), under, under.lower()]


def extra_value(draw: st.DrawFn, source: str, limit: int) -> str:
    return draw(st.sampled_from(("true", "false", "x" * 600, "", "é")))


PATHS = (None, None, "/orders", "/orders/7", "/admin/x", "/admin/x", "/ADMIN", "/public/x")
PATHS += ("/PUBLIC", "/public/../admin")
METHODS = (None, "GET", "get", "POST")
HOSTS = (None, "api.contoso.com", "evil.example")


def header_pairs(draw: st.DrawFn, setting: Setting) -> list[tuple[object, object]]:
    """The usual request (the certificate header, and the chain and verify headers the
    proxy adds), or any mix of the source's headers, their spellings and other headers."""
    source, limit = setting.source, setting.limit
    wire = WIRES[source]
    cert, chain, verify = setting.names
    assert cert is not None
    if draw(st.booleans()):  # the usual request
        leaf = LEAVES[draw(st.sampled_from(("cert", "cert", "other")))]
        pairs: list[tuple[object, object]] = [("Host", "api.contoso.com")]
        pairs.append((cert, draw(st.sampled_from(wire.cert))(leaf, draw_chain(draw))))
        if not draw(st.booleans()):  # the certificate header alone: the lane's request
            return pairs
        if chain and wire.chain and draw(st.booleans()):
            pairs.append((chain, wire.chain(draw(st.sampled_from(CHAINS)))))
        if verify and draw(st.booleans()):
            verdicts = VERDICTS[source_named(source).verify_dialect]
            pairs.append((verify, draw(st.sampled_from((verdicts[0],) * 3 + verdicts))))
        return pairs
    makers: dict[str, Callable[[st.DrawFn, str, int], str]] = {cert.lower(): certificate_value}
    if chain:
        makers[chain.lower()] = chain_value
    if verify:
        makers[verify.lower()] = verify_value
    for extra in wire.extra:
        makers[extra.lower()] = extra_value
    names = [s for n in (cert, chain, verify, *wire.extra) if n for s in spellings(n)]
    pairs = []
    for _ in range(draw(st.integers(0, 5))):
        name = draw(st.sampled_from(names + list(NOISE)))
        make = makers.get(name.lower().replace("_", "-"))
        if make is None or draw(st.integers(0, 5)) == 0:
            value = draw(st.sampled_from((*GARBAGE, "api.contoso.com")))
        else:
            value = make(draw, source, limit)
        pairs.append((name, value))
    return pairs


def as_bytes(draw: st.DrawFn, text: object) -> object:
    """Now and then a name or value as bytes, as some servers hand them over."""
    if isinstance(text, str) and draw(st.integers(0, 7)) == 0:
        return text.encode("latin-1")
    return text


def wsgi_environ(draw: st.DrawFn, setting: Setting) -> object:
    """mod_ssl's variables in the environ, or through mod_wsgi's lookup, or no environ."""
    form = draw(st.sampled_from(("environ",) * 4 + ("var_lookup", "absent", "not a mapping")))
    if form == "absent":
        return None
    if form == "not a mapping":
        return ["SSL_CLIENT_CERT"]
    leaf = LEAVES[draw(st.sampled_from(("cert", "cert", "other")))]
    variables: dict[str, object] = {}
    kind = draw(st.sampled_from(("pem",) * 4 + ("absent", "garbage", "big", "two", "bytes")))
    value = {
        "pem": pem(leaf),
        "garbage": draw(st.sampled_from(GARBAGE)),
        "big": oversized(draw, pem(leaf), setting.limit),
        "two": pems((leaf, INTER.der)),
        "bytes": pem(leaf).encode(),
    }.get(kind)
    if value is not None:
        variables["SSL_CLIENT_CERT"] = value
    for index, der in enumerate(draw(st.sampled_from(CHAINS))):
        variables[f"SSL_CLIENT_CERT_CHAIN_{index}"] = pem(der)
    if draw(st.integers(0, 3)):
        variables["SSL_CLIENT_VERIFY"] = verify_value(draw, setting.source, setting.limit)
    variables["HTTP_X_SSL_CLIENT_CERT"] = nginx_escaped(OTHER.der)  # a header: not read
    return ("var_lookup", variables) if form == "var_lookup" else variables


def asgi_scope(draw: st.DrawFn, setting: Setting) -> object:
    """The ASGI TLS extension's client_cert_chain and client_cert_error, or no such thing."""
    form = draw(
        st.sampled_from(
            ("tls",) * 6
            + ("absent", "not a mapping", "no extensions", "no tls", "tls not a mapping")
        )
    )
    if form == "absent":
        return None
    if form == "not a mapping":
        return ["extensions"]
    if form == "no extensions":
        return {"type": "http"}
    if form in ("no tls", "tls not a mapping"):
        return {"type": "http", "extensions": {"tls": "yes"} if form == "tls not a mapping" else {}}
    leaf = LEAVES[draw(st.sampled_from(("cert", "cert", "other")))]
    entries: object = [pem(der) for der in (leaf, *draw(st.sampled_from(CHAINS)))]
    kind = draw(st.sampled_from(("chain",) * 4 + ("empty", "one string", "odd entry", "big")))
    if kind == "empty":
        entries = draw(st.sampled_from(([], None, ())))
    elif kind == "one string":
        entries = pem(leaf)
    elif kind == "odd entry":
        entries = [draw(st.sampled_from((*GARBAGE, 42, pem(leaf).encode())))]
    elif kind == "big":
        entries = [oversized(draw, pem(leaf), setting.limit)]
    tls: dict[str, object] = {"client_cert_chain": entries}
    error = draw(st.sampled_from(("unset", None, None, "expired", "", 20)))
    if error != "unset":
        tls["client_cert_error"] = error
    return {"type": "http", "extensions": {"tls": tls}}


@st.composite
def logged(draw: st.DrawFn, source: str, limit: int) -> object:
    """A certificate-header value copied from a log, for evaluate_header."""
    return as_bytes(draw, certificate_value(draw, source, limit))


@st.composite
def requests(draw: st.DrawFn, setting: Setting) -> Sent:
    """A request for the setting's source: its headers, or its environ or scope."""
    environ = scope = None
    if setting.source == "wsgi-environ":
        environ = wsgi_environ(draw, setting)
        pairs: list[tuple[object, object]] = [("X-SSL-Client-Cert", nginx_escaped(OTHER.der))]
    elif setting.source == "asgi-tls":
        scope = asgi_scope(draw, setting)
        pairs = [("X-SSL-Client-Cert", nginx_escaped(OTHER.der))]
    else:
        pairs = header_pairs(draw, setting)
    return Sent(
        tuple((as_bytes(draw, n), as_bytes(draw, v)) for n, v in pairs),
        draw(st.sampled_from(("list",) * 4 + ("tuple", "dict", "mapping", "iterator", "none"))),
        draw(st.sampled_from((TRUSTED,) * 12 + PEERS + (b"10.0.0.1",))),
        draw(st.sampled_from(PATHS)),
        draw(st.sampled_from(METHODS)),
        draw(st.sampled_from(HOSTS)),
        draw(st.sampled_from(TIMES)),
        environ,
        scope,
    )


@st.composite
def returning(draw: st.DrawFn, setting: Setting, sent: Sent, seen: bool) -> list[dict[str, Any]]:
    """Requests a returning client sent before: both leaves, the certificate header alone
    from the trusted proxy (the header memo's lane), and when ``seen`` this request's own
    certificate header values (and else none of them: then this request is a first one)."""
    source = setting.source
    if source == "wsgi-environ":
        return [{"environ": {"SSL_CLIENT_CERT": pem(der)}} for der in LEAVES.values()]
    if source == "asgi-tls":
        tls = [
            {"client_cert_chain": [pem(der)], "client_cert_error": None} for der in LEAVES.values()
        ]
        return [{"scope": {"type": "http", "extensions": {"tls": t}}} for t in tls]
    cert = setting.names[0]
    assert cert is not None
    encode = draw(st.sampled_from(WIRES[source].cert))
    values = [encode(der, draw_chain(draw)) for der in LEAVES.values()]
    own = [v for n, v in sent.pairs if isinstance(n, str) and n.lower() == cert.lower()]
    values = values + own if seen else [v for v in values if v not in own]
    return [{"headers": [(cert, v)], "remote_addr": TRUSTED} for v in values]


def decide_alike(remembering: Policy, plain: Policy, data: st.DataObject, setting: Setting) -> None:
    """Feed the memos (with this very request too, half the time, at another time), then
    decide one drawn request with them, explained, and without."""
    sent = data.draw(requests(setting))
    before = data.draw(st.sampled_from((sent.now,) * len(TIMES) + tuple(TIMES)))
    seen = data.draw(st.booleans())
    fed = data.draw(returning(setting, sent, seen))
    for _ in range(2):  # the second sighting is the one the memos keep
        for earlier in fed:
            remembering.evaluate_request(**earlier, now=before)
        if seen:
            remembering.evaluate_request(**{**sent.kwargs(), "now": before})
    request = sent.kwargs()
    first = remembering.evaluate_request(**request)
    again = remembering.evaluate_request(**sent.kwargs())
    expected = plain.evaluate_request(**sent.kwargs())
    assert first == again == expected, request
    assert again.message == expected.message
    assert remembering.evaluate_request(**sent.kwargs(), explain=True) == expected, request
    assert der_of(first) == der_of(again) == der_of(expected), request


# -- the differential tests -----------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_returning_clients_request_is_decided_as_a_first_one(
    source: str, data: st.DataObject
) -> None:
    """A certificate-only policy: the decision memo keeps its outcomes."""
    setting = data.draw(settings_for(source, verify=False))
    remembering, plain = compiled(setting.text(CERTIFICATE_RULES))
    for _ in range(4):
        decide_alike(remembering, plain, data, setting)


@pytest.mark.parametrize("source", SOURCES)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_policy_that_reads_the_request_or_the_proxy_is_not_answered_by_a_memo(
    source: str, data: st.DataObject
) -> None:
    """Rules on the path, method, host and the proxy's verdict: only the header memo and
    the facts cache may serve, and neither may change what the request decides."""
    setting = data.draw(settings_for(source, verify=True))
    remembering, plain = compiled(setting.text(REQUEST_RULES))
    for _ in range(4):
        decide_alike(remembering, plain, data, setting)


@pytest.mark.parametrize("source", SOURCES)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_header_value_from_a_log_is_decided_alike(source: str, data: st.DataObject) -> None:
    """evaluate_header: the value as the proxy logged it, decoded as the policy's source or
    another, offline or checked against a peer."""
    setting = data.draw(settings_for(source, verify=False))
    rules = data.draw(st.sampled_from((CERTIFICATE_RULES, REQUEST_RULES)))
    remembering, plain = compiled(setting.text(rules))
    wire = WIRES[source]
    for _ in range(4):
        value = data.draw(logged(source, setting.limit))
        options: dict[str, Any] = {
            "source": data.draw(st.sampled_from((None,) * 6 + (*SOURCES, "no-such-source"))),
            "peer": data.draw(st.sampled_from((None,) * 3 + PEERS)),
            "path": data.draw(st.sampled_from(PATHS)),
            "method": data.draw(st.sampled_from(METHODS)),
            "host": data.draw(st.sampled_from(HOSTS)),
            "now": data.draw(st.sampled_from(TIMES)),
        }
        before = data.draw(st.sampled_from(TIMES))
        encode = data.draw(st.sampled_from(wire.cert))
        for _ in range(2):
            for der in LEAVES.values():
                remembering.evaluate_header(encode(der, ()), now=before)
            remembering.evaluate_header(value, **{**options, "now": before})  # type: ignore[arg-type]
        first = remembering.evaluate_header(value, **options)  # type: ignore[arg-type]
        again = remembering.evaluate_header(value, **options)  # type: ignore[arg-type]
        expected = plain.evaluate_header(value, **options)  # type: ignore[arg-type]
        assert first == again == expected, (value, options)
        assert again.message == expected.message
        explained = remembering.evaluate_header(value, **options, explain=True)  # type: ignore[arg-type]
        assert explained == expected, (value, options)
        assert der_of(first) == der_of(again) == der_of(expected)


# -- the forms above are what the sources read ----------------------------------------

MIDDLE = NOT_BEFORE + timedelta(days=100)


@pytest.mark.parametrize("source", SOURCES)
def test_every_wire_form_here_is_read_as_the_leaf(source: str) -> None:
    """Each encoder above gives the leaf to its source (else the differential tests would
    compare refusals only), through the lane and without it."""
    setting = Setting(source, "required", 16384, 8, verify=False)
    for remembering_or_plain in compiled(setting.text(CERTIFICATE_RULES)):
        for encode in WIRES[source].cert:
            for chain in ((), (INTER.der,)):
                value = encode(CERT.der, chain)
                if source in DIRECT:
                    decision = remembering_or_plain.evaluate_header(value, now=MIDDLE)
                else:
                    cert = setting.names[0]
                    for _ in range(3):
                        decision = remembering_or_plain.evaluate_request(
                            headers=[(cert, value)], remote_addr=TRUSTED, now=MIDDLE
                        )
                assert (decision.reason, decision.rule) == ("allowed_by_rule", "client"), value
                assert der_of(decision) == CERT.der


@pytest.mark.parametrize("source", HEADER_SOURCES)
def test_a_returning_clients_oversized_value_is_refused_as_on_the_full_path(source: str) -> None:
    """A known peer sends the certificate header alone, one byte over the limit (or at
    it): refused (or read) as the full path does, with the same message."""
    setting = Setting(source, "optional", 5000, 8, verify=False)
    cert = setting.names[0]
    assert cert is not None
    remembering, plain = compiled(setting.text(CERTIFICATE_RULES))
    value = WIRES[source].cert[0](CERT.der, ())
    for _ in range(2):
        remembering.evaluate_request(headers=[(cert, value)], remote_addr=TRUSTED, now=MIDDLE)
    for size, reason in ((5001, "header_too_large"), (5000, "allowed_by_rule")):
        padded = [(cert, value + " " * (size - len(value)))]
        for _ in range(2):
            lane = remembering.evaluate_request(headers=padded, remote_addr=TRUSTED, now=MIDDLE)
            full = plain.evaluate_request(headers=padded, remote_addr=TRUSTED, now=MIDDLE)
            assert lane == full and lane.message == full.message
            assert lane.reason == reason
        if reason == "header_too_large":
            assert cert in lane.message
