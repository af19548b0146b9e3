"""The ``envoy`` target: a bootstrap whose ``ext_authz`` filter asks the server, over gRPC
(the default) or HTTP (``ext_authz="http"``).

Envoy terminates TLS (``DownstreamTlsContext``: the certificate demanded as the policy's
mode says, verified against the trust anchors), asks the server about every request, and
fails closed (``failure_mode_allow: false``). A ``header_mutation`` filter ahead of
``ext_authz`` removes a client's identity headers: a route's ``request_headers_to_remove``
would run after ``ext_authz`` and remove the server's too.

* gRPC: the check carries the peer certificate (``include_peer_certificate``) and the
  policy's name in the context extensions. For a policy whose source is ``envoy`` the
  server reads a front Envoy's XFCC instead of the peer certificate, which this Envoy
  removes: the opening comment warns that such a policy refuses everyone here.
* HTTP: Envoy asks ``/authorize/<policy>`` with the original path appended and the
  original method, and the certificate in a header the policy's source reads: for an
  ``envoy`` source the XFCC Envoy sets itself (``SANITIZE_SET``, the ``Cert`` element),
  else the source's header set by the ``header_mutation`` filter from
  ``%DOWNSTREAM_PEER_CERT%`` (percent-encoded PEM, nginx's format). The server believes
  that header from ``certificate.trusted_proxies`` only, so they must name this Envoy.
  The allow's identity headers overwrite the request's (``allowed_upstream_headers``);
  a second ``header_mutation`` after ``ext_authz`` removes the certificate header, so the
  app gets none, as over gRPC.

Owns the Envoy writer. Must not import ``integrations/`` or ``cli/``.
"""

from __future__ import annotations

from dataclasses import dataclass

from policyengine.evaluation.engine import Policy
from policyengine.tooling.export_proxies import (
    Address,
    Plan,
    ProxyOptions,
    authorize_path,
    believed_headers,
    comments,
    header_lines,
    trusted_proxies_note,
    yaml_string,
)

__all__ = ["envoy"]

_TYPES = "type.googleapis.com/envoy.extensions"
_PEER_CERT = "%DOWNSTREAM_PEER_CERT%"
_HTTP_FEED_WARNING = (
    "Warning: the policy reads source {source}, a format Envoy cannot make from the peer"
    " certificate (it has percent-encoded PEM, %DOWNSTREAM_PEER_CERT%, and its own XFCC):"
    " this sends the PEM in {header}, which the server does not read for this policy. Set"
    " `certificate: source: nginx` (or envoy), or export with --ext-authz grpc, where the"
    " server reads the peer certificate whatever the source."
)
_XFCC_WARNING = (
    "Warning: the policy reads source {source}, so the server decides on the"
    " X-Forwarded-Client-Cert header of the check request (a front Envoy's, believed from"
    " certificate.trusted_proxies), not on the peer certificate; this Envoy terminates TLS"
    " itself and removes that header (forward_client_cert_details: SANITIZE), so the server"
    " finds no certificate and refuses every request that needs one. Give the policy the"
    " source of another proxy (nginx, say) for this configuration: the server then reads"
    " the peer certificate Envoy sends (include_peer_certificate)."
)


@dataclass(frozen=True, slots=True)
class _Feed:
    """How the certificate reaches the server: ``header`` None for the peer certificate in
    a gRPC check; else the header, and whether Envoy's XFCC carries it."""

    header: str | None
    xfcc: bool = False


def _feed(policy: Policy, options: ProxyOptions) -> tuple[_Feed, list[str]]:
    source = policy.source
    if options.ext_authz == "grpc":
        if "envoy" in source.record.native_to:
            # the server reads a front Envoy's XFCC for such a policy, not the peer certificate
            return _Feed(None), [_XFCC_WARNING.format(source=source.source)]
        return _Feed(None), [
            "The server reads the certificate from the check request (include_peer_certificate),"
            " never from a header, so certificate.trusted_proxies plays no part here."
        ]
    proxies = trusted_proxies_note(policy, "this Envoy")
    if "envoy" in source.record.native_to:
        header = source.header_name or "X-Forwarded-Client-Cert"
        return _Feed(header, xfcc=True), [
            f"The server reads the certificate from {header}, which this Envoy sets itself"
            " (forward_client_cert_details: SANITIZE_SET, the Cert element) in place of any"
            " a client sent.",
            *proxies,
        ]
    header = source.header_name or "X-SSL-Client-Cert"
    notes = [
        f"The server reads the certificate from {header}, which the header_mutation filter"
        f" sets from the peer certificate ({_PEER_CERT}) in place of any a client sent.",
        *proxies,
    ]
    if "nginx" not in source.record.fed_by:
        notes.append(_HTTP_FEED_WARNING.format(source=source.source, header=header))
    return _Feed(header), notes


def envoy(policy: Policy, plan: Plan, options: ProxyOptions) -> str:
    feed, notes = _feed(policy, options)
    lines = header_lines(policy, plan, "#", what="Envoy bootstrap")
    lines += comments(notes)
    lines += [
        "# Identity headers: the header_mutation filter removes a client's copies (and of the",
        "# certificate headers the policy reads, which the app may read too) before",
        "# ext_authz runs; on an allow the server's identity headers are set on the request",
        "# (overwriting). Envoy applies a route's request_headers_to_remove after ext_authz,",
        "# so it must not list these names.",
        "# Check it with: envoy --mode validate -c FILE",
        "static_resources:",
        "  listeners:",
        "    - name: policyengine",
        "      address:",
        "        socket_address:",
        "          address: 0.0.0.0",
        f"          port_value: {options.listen}",
        "      filter_chains:",
        "        - transport_socket:",
        *(f"            {line}" for line in _tls(plan)),
        "          filters:",
        "            - name: envoy.filters.network.http_connection_manager",
        "              typed_config:",
        *(f"                {line}" for line in _connection_manager(policy, plan, feed)),
        "  clusters:",
        *(
            f"    {line}"
            for line in _cluster(
                "policyengine_authorizer", plan.authorizer, http2=feed.header is None
            )
        ),
        *(f"    {line}" for line in _cluster("policyengine_app", options.upstream, http2=False)),
    ]
    return "\n".join(lines) + "\n"


def _stripped(policy: Policy, plan: Plan) -> list[str]:
    """What a client sent that must reach neither the server nor the app: its identity
    headers, and its copies of the certificate headers the policy's source reads (over
    gRPC the server reads the peer certificate, but the app behind may read them too).
    Never the XFCC Envoy itself sets (the connection manager has replaced a client's)."""
    believed = [] if "envoy" in policy.source.record.native_to else believed_headers(policy)
    names = [*plan.identity_headers, *believed]
    return [
        name
        for index, name in enumerate(names)
        if name.lower() not in {n.lower() for n in names[:index]}
    ]


def _tls(plan: Plan) -> list[str]:
    assert plan.client_ca is not None  # the plan for gRPC always has one, or a placeholder
    return [
        "name: envoy.transport_sockets.tls",
        "typed_config:",
        f'  "@type": {_TYPES}.transport_sockets.tls.v3.DownstreamTlsContext',
        f"  require_client_certificate: {'true' if plan.require else 'false'}",
        "  common_tls_context:",
        "    tls_certificates:",
        "      - certificate_chain:",
        f"          filename: {yaml_string(plan.server_cert)}",
        "        private_key:",
        f"          filename: {yaml_string(plan.server_key)}",
        "    validation_context:",
        "      trusted_ca:",
        f"        filename: {yaml_string(plan.client_ca)}",
    ]


def _connection_manager(policy: Policy, plan: Plan, feed: _Feed) -> list[str]:
    if feed.xfcc:
        xfcc = [
            "forward_client_cert_details: SANITIZE_SET",
            "set_current_client_cert_details:",
            "  cert: true",
        ]
    else:
        xfcc = ["forward_client_cert_details: SANITIZE"]
    per_route = []
    if feed.header is None:  # gRPC: the policy's name; HTTP: the path prefix says it
        per_route = [
            "      typed_per_filter_config:",
            "        envoy.filters.http.ext_authz:",
            f'          "@type": {_TYPES}.filters.http.ext_authz.v3.ExtAuthzPerRoute',
            "          check_settings:",
            "            context_extensions:",
            f"              policy: {yaml_string(policy.name)}",
        ]
    return [
        f'"@type": {_TYPES}.filters.network.http_connection_manager.v3.HttpConnectionManager',
        "stat_prefix: policyengine",
        *xfcc,
        "# X_Client_Principal would reach a CGI or WSGI app as X-Client-Principal does.",
        "common_http_protocol_options:",
        "  headers_with_underscores_action: DROP_HEADER",
        "route_config:",
        "  name: policyengine",
        "  virtual_hosts:",
        "    - name: app",
        '      domains: ["*"]',
        *per_route,
        "      routes:",
        "        - match:",
        '            prefix: "/"',
        "          route:",
        "            cluster: policyengine_app",
        "http_filters:",
        "  - name: policyengine.strip_identity_headers",
        "    typed_config:",
        f'      "@type": {_TYPES}.filters.http.header_mutation.v3.HeaderMutation',
        "      mutations:",
        "        request_mutations:",
        *(f"          - remove: {yaml_string(name)}" for name in _stripped(policy, plan)),
        *_set_certificate(feed),
        "  - name: envoy.filters.http.ext_authz",
        "    typed_config:",
        f'      "@type": {_TYPES}.filters.http.ext_authz.v3.ExtAuthz',
        "      transport_api_version: V3",
        *(f"      {line}" for line in _service(policy, plan, feed)),
        "      failure_mode_allow: false",
        *_unset_certificate(feed),
        "  - name: envoy.filters.http.router",
        "    typed_config:",
        f'      "@type": {_TYPES}.filters.http.router.v3.Router',
    ]


def _set_certificate(feed: _Feed) -> list[str]:
    """The header_mutation step that writes the peer certificate into the header the
    server reads (HTTP ext_authz with a PEM-reading source)."""
    if feed.header is None or feed.xfcc:
        return []
    return [
        "          - append:",
        "              header:",
        f"                key: {yaml_string(feed.header.lower())}",
        f'                value: "{_PEER_CERT}"',
        "              append_action: OVERWRITE_IF_EXISTS_OR_ADD",
    ]


def _unset_certificate(feed: _Feed) -> list[str]:
    """After the check, the header that carried the certificate to the server is removed:
    the app gets none from this Envoy, as over gRPC (and from the other proxy targets)."""
    if feed.header is None:
        return []
    return [
        "  - name: policyengine.strip_certificate_header",
        "    typed_config:",
        f'      "@type": {_TYPES}.filters.http.header_mutation.v3.HeaderMutation',
        "      mutations:",
        "        request_mutations:",
        f"          - remove: {yaml_string(feed.header.lower())}",
    ]


def _service(policy: Policy, plan: Plan, feed: _Feed) -> list[str]:
    if feed.header is None:
        return [
            "grpc_service:",
            "  envoy_grpc:",
            "    cluster_name: policyengine_authorizer",
            "  timeout: 2s",
            "include_peer_certificate: true",
        ]
    return [
        "http_service:",
        "  server_uri:",
        f"    uri: {yaml_string('http://' + plan.authorizer.netloc)}",
        "    cluster: policyengine_authorizer",
        "    timeout: 2s",
        f"  path_prefix: {yaml_string(authorize_path(policy))}",
        "  authorization_response:",
        "    allowed_upstream_headers:",
        "      patterns:",
        *(f"        - exact: {yaml_string(name.lower())}" for name in plan.identity_headers),
        "allowed_headers:",
        "  patterns:",
        f"    - exact: {yaml_string(feed.header.lower())}",
    ]


def _cluster(name: str, address: Address, *, http2: bool) -> list[str]:
    lines = [
        f"- name: {name}",
        f"  type: {'STATIC' if address.is_ip else 'STRICT_DNS'}",
        "  connect_timeout: 2s",
    ]
    if http2:
        lines += [
            "  typed_extension_protocol_options:",
            "    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:",
            f'      "@type": {_TYPES}.upstreams.http.v3.HttpProtocolOptions',
            "      explicit_http_config:",
            "        http2_protocol_options: {}",
        ]
    return [
        *lines,
        "  load_assignment:",
        f"    cluster_name: {name}",
        "    endpoints:",
        "      - lb_endpoints:",
        "          - endpoint:",
        "              address:",
        "                socket_address:",
        f"                  address: {yaml_string(address.host)}",
        f"                  port_value: {address.port}",
    ]
