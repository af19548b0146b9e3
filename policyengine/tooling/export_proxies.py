"""Proxy configurations that ask ``policyengine serve`` about every request.

Each target is a complete configuration file for one proxy: it terminates TLS (asking for
the client certificate as the policy's mode wants it), hands every request to the
decision server, and passes what the server allows to the app with the identity headers
(:mod:`policyengine.integrations.headers` names them):

* ``nginx-auth-request``: an ``nginx.conf`` with ``auth_request`` to the HTTP authorizer.
* ``caddy``: a Caddyfile with ``forward_auth``.
* ``traefik``: a dynamic configuration (file provider) with ``forwardAuth``; the static
  settings it needs are in its opening comment.
* ``envoy``: a bootstrap with the ``ext_authz`` filter over gRPC.

The proxy never decides a path itself (no location skips the authorizer for an exclusion
path): the server applies the whole policy. The functions are pure: text in, text out;
the YAML is written by hand (the yaml package stays in ``load/``).

Owns ProxyOptions, Address, parse_address, the Plan every proxy target starts from and
the helpers they share (the targets are in export_http_proxies and export_envoy). May import
``evaluation/`` and the source records of ``request/``; must not import ``integrations/``
(the CLI hands over the identity headers' names, from ``integrations.headers``), ``cli/``
or any proxy's or web framework's library.
"""

from __future__ import annotations

import ipaddress
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from policyengine.evaluation.engine import Policy
from policyengine.request.der import PEM_BEGIN
from policyengine.request.sources import default_header_names, trusted_from_anywhere

__all__ = ["PROXY_TARGETS", "Address", "ProxyOptions", "parse_address", "plan"]

PROXY_TARGETS = ("envoy", "nginx-auth-request", "caddy", "traefik")

HTTP_AUTHORIZER = "127.0.0.1:9000"
GRPC_AUTHORIZER = "127.0.0.1:9001"
SERVER_CERT = "/etc/policyengine/server.pem"
SERVER_KEY = "/etc/policyengine/server.key"
CLIENT_CA = "/etc/policyengine/client-ca.pem"


@dataclass(frozen=True, slots=True)
class Address:
    """A host (a name, an IPv4 or an IPv6 address, without brackets) and a port."""

    host: str
    port: int

    @property
    def netloc(self) -> str:
        """``host:port``, an IPv6 address in brackets."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


def parse_address(text: str) -> Address:
    """``HOST:PORT`` (``[::1]:9001`` for IPv6) as an :class:`Address`; ``ValueError`` else."""
    host, colon, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, [::1]:9001")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT")
    if any(ch.isspace() or ch in "/;{}'\"#$`\\" for ch in host):
        raise ValueError(f"{text!r}: {host!r} is not a host name or address")
    return Address(host, int(port))


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyOptions:
    """Where the proxy listens, where the server and the app are, and the TLS files.

    ``identity_headers``: the names the server answers with (``IdentityHeaders().names``
    of :mod:`policyengine.integrations.headers`), passed to the app and stripped from
    what the client sends. ``authorizer`` None takes the server's default (HTTP
    127.0.0.1:9000; Envoy's gRPC 127.0.0.1:9001). A TLS file left None is written as a
    placeholder path with a comment; ``client_ca`` None takes the policy's trust anchors
    when it has a ``trust:`` section.
    """

    identity_headers: tuple[str, ...]
    authorizer: Address | None = None
    upstream: Address = Address("127.0.0.1", 8080)
    listen: int = 8443
    server_cert: str | None = None
    server_key: str | None = None
    client_ca: str | None = None
    ext_authz: str = "grpc"
    """The envoy target's ext_authz transport: ``grpc`` (the server reads the peer
    certificate Envoy sends in the check) or ``http`` (Envoy's HTTP ext_authz: the server
    reads a header Envoy sets, and the authorizer is the HTTP one)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What every target derives from the policy and the options, once."""

    authorizer: Address
    server_cert: str
    server_key: str
    client_ca: str | None
    require: bool
    notes: tuple[str, ...]
    identity_headers: tuple[str, ...]


def plan(
    policy: Policy,
    options: ProxyOptions,
    base: Path | None,
    *,
    grpc: bool,
    placeholder: bool | None = None,
) -> Plan:
    """``grpc``: the authorizer's default is the gRPC one; ``placeholder`` (default: as
    ``grpc``): a client CA file is written as a placeholder when none is known (Envoy
    cannot ask for a certificate without one)."""
    authorizer = options.authorizer or parse_address(GRPC_AUTHORIZER if grpc else HTTP_AUTHORIZER)
    notes: list[str] = []
    if options.server_cert is None or options.server_key is None:
        notes.append(
            "The server certificate and key paths are placeholders (--server-cert, --server-key)."
        )
    placeholder = grpc if placeholder is None else placeholder
    client_ca, ca_notes = _client_ca(policy, options, base, placeholder=placeholder)
    notes += ca_notes
    require = policy.mode == "required" and not policy.exclusion_paths and client_ca is not None
    if policy.mode == "required" and not require:
        why = (
            f"its exclusion paths ({';'.join(policy.exclusion_paths)}) must stay reachable "
            "without one"
            if policy.exclusion_paths
            else "the proxy cannot demand one without a CA to verify it"
        )
        notes.append(
            f"The policy's mode is required, yet the proxy only asks for a certificate: {why}."
            " The server refuses a request without one (reason missing_certificate)."
        )
    elif not require:
        notes.append(f"The policy's mode is {policy.mode}: the proxy asks for a certificate.")
    else:
        notes.append("The policy's mode is required: the TLS handshake demands a certificate.")
    return Plan(
        authorizer=authorizer,
        server_cert=options.server_cert or SERVER_CERT,
        server_key=options.server_key or SERVER_KEY,
        client_ca=client_ca,
        require=require,
        notes=tuple(notes),
        identity_headers=options.identity_headers,
    )


def _client_ca(
    policy: Policy, options: ProxyOptions, base: Path | None, *, placeholder: bool
) -> tuple[str | None, list[str]]:
    """The CA file the proxy verifies clients against (None: it verifies none), and notes."""
    if options.client_ca is not None:
        return options.client_ca, ["The proxy verifies client certificates against --client-ca."]
    if policy.trust is not None:
        anchors = policy.trust.settings.anchors
        found = anchor_file(anchors)
        if found is not None:
            return display_path(found, base), [
                "The proxy verifies client certificates against the policy's trust anchors"
                " (a relative path is read from the proxy's working directory; nginx's from"
                " its prefix, -p); the server checks the chain, revocation and the rules"
                " again."
            ]
        shown = " ".join(display_path(path, base) for path in anchors)
        return "policyengine-anchors.pem", [
            f"The policy's trust anchors ({shown}) are several files, a folder or DER:"
            " concatenate them as PEM into policyengine-anchors.pem."
        ]
    if placeholder:
        return CLIENT_CA, [
            f"The policy has no trust: section; {CLIENT_CA} is a placeholder for the CA"
            " that issues the clients' certificates (--client-ca): this proxy asks for a"
            " certificate only when it has a CA to verify it against."
        ]
    return None, [
        "The policy has no trust: section: the proxy accepts any client certificate"
        " without verifying it, and the policy's rules decide (--client-ca to verify)."
    ]


def authorize_path(policy: Policy) -> str:
    """The HTTP authorizer's path for this policy."""
    return "/authorize/" + quote(policy.name, safe="-._~")


def header_lines(policy: Policy, plan: Plan, comment: str, *, what: str) -> list[str]:
    """The opening comment every target shares: where it came from and what it does."""
    notes = [
        f"A complete {what}: it terminates TLS, asks policyengine serve at"
        f" {plan.authorizer.netloc} about every request (the proxy never skips it, not even"
        " for an exclusion path: the server applies the whole policy), and fails closed when"
        " the server cannot be reached.",
        *plan.notes,
        "Client-sent copies of the identity headers"
        f" ({', '.join(plan.identity_headers)}) never reach the server or the app.",
    ]
    return [f"{comment} {generated(policy)}", *comments(notes, comment)]


def comments(notes: list[str], comment: str = "#") -> list[str]:
    """Each note wrapped into comment lines."""
    return [
        f"{comment} {line}"
        for note in notes
        for line in textwrap.wrap(note, width=88, break_on_hyphens=False, break_long_words=False)
    ]


def certificate_feed(policy: Policy, family: str, header: str) -> tuple[str, list[str]]:
    """The header the proxy fills with the certificate for the server, and notes.

    ``family`` is the proxy (``caddy``, ``traefik``); ``header`` is where it writes the
    certificate when the policy's source does not read its format.
    """
    config = policy.source
    if family in config.record.fed_by:
        name = config.header_name or header
        notes = []
        if family not in config.record.native_to:
            notes = [
                f"The policy reads source {config.source} ({name}), whose format {family}"
                f" sends; `certificate: source: {family}` would say what really sends it."
            ]
        return name, notes
    native, _, _ = default_header_names(family)
    return native or header, [
        f"Warning: the policy reads source {config.source}, a format {family} cannot"
        f" produce; this sends {family}'s own: set `certificate: source: {family}`."
    ]


def believed_headers(policy: Policy) -> list[str]:
    """Every header the policy's source reads: a client's copies must not get through."""
    config = policy.source
    names = (config.header_name, config.chain_header_name, config.verify_header_name)
    return [name for name in names if name]


def with_underscores(names: list[str]) -> list[str]:
    """The names and their underscore spellings, each once: CGI and WSGI servers map
    ``X_Client_Principal`` and ``X-Client-Principal`` to the same ``HTTP_X_CLIENT_PRINCIPAL``,
    so a proxy that removes only the first lets a client's copy through under the second."""
    seen: set[str] = set()
    kept = []
    for name in [*names, *(n.replace("-", "_") for n in names)]:
        if name.lower() not in seen:
            seen.add(name.lower())
            kept.append(name)
    return kept


def trusted_proxies_note(policy: Policy, proxy: str) -> list[str]:
    proxies = ", ".join(policy.source.effective_trusted_proxies) or "none"
    notes = [
        f"The server believes the certificate header only from {proxy}'s address, which"
        f" must be in the policy's certificate.trusted_proxies: {proxies}."
    ]
    if trusted_from_anywhere(policy.source):
        notes.append(
            f"Warning: that is any peer, so whoever reaches the server without {proxy} can"
            f" set it: list {proxy}'s addresses in certificate.trusted_proxies."
        )
    return notes


def yaml_string(text: str) -> str:
    """A YAML double-quoted scalar (a JSON string is one)."""
    return json.dumps(text, ensure_ascii=False)


def generated(policy: Policy) -> str:
    return f"Generated by policyengine export from {policy.file} (policy {policy.name})."


def anchor_file(anchors: tuple[Path, ...]) -> Path | None:
    """The one PEM file of the anchors, or None when a proxy cannot take them as they are."""
    if len(anchors) == 1 and anchors[0].is_file() and _is_pem(anchors[0]):
        return anchors[0]
    return None


def _is_pem(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return PEM_BEGIN in handle.read(65536)
    except OSError:
        return False


def display_path(path: Path, base: Path | None) -> str:
    """The path relative to ``base`` when under it, else absolute."""
    if base is None:
        return str(path)
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path.resolve())
