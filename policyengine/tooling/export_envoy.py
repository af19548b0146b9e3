"""The ``envoy`` target: a bootstrap whose ``ext_authz`` filter asks the server over gRPC.

Envoy terminates TLS (``DownstreamTlsContext``: the certificate demanded as the policy's
mode says, verified against the trust anchors), sends every request to the server's
``envoy.service.auth.v3.Authorization`` with the peer certificate
(``include_peer_certificate``) and the policy's name in the context extensions, and fails
closed (``failure_mode_allow: false``). A ``header_mutation`` filter ahead of
``ext_authz`` removes a client's identity headers: a route's ``request_headers_to_remove``
would run after ``ext_authz`` and remove the server's too. For a policy whose source is
``envoy`` the server reads a front Envoy's XFCC instead of the peer certificate, which this
Envoy removes: the opening comment warns that such a policy refuses everyone here.

Owns the Envoy writer. Must not import ``integrations/`` or ``cli/``.
"""

from __future__ import annotations

from policyengine.evaluation.engine import Policy
from policyengine.tooling.export_proxies import (
    Address,
    Plan,
    ProxyOptions,
    believed_headers,
    comments,
    header_lines,
    yaml_string,
)

__all__ = ["envoy"]

_TYPES = "type.googleapis.com/envoy.extensions"
_XFCC_WARNING = (
    "Warning: the policy reads source {source}, so the server decides on the"
    " X-Forwarded-Client-Cert header of the check request (a front Envoy's, believed from"
    " certificate.trusted_proxies), not on the peer certificate; this Envoy terminates TLS"
    " itself and removes that header (forward_client_cert_details: SANITIZE), so the server"
    " finds no certificate and refuses every request that needs one. Give the policy the"
    " source of another proxy (nginx, say) for this configuration: the server then reads"
    " the peer certificate Envoy sends (include_peer_certificate)."
)


def envoy(policy: Policy, plan: Plan, options: ProxyOptions) -> str:
    lines = header_lines(policy, plan, "#", what="Envoy bootstrap")
    if "envoy" in policy.source.record.native_to:
        # the server reads a front Envoy's XFCC for such a policy, not the peer certificate
        lines += comments([_XFCC_WARNING.format(source=policy.source.source)])
    else:
        lines += [
            "# The server reads the certificate from the check request (include_peer_certificate),",
            "# never from a header, so certificate.trusted_proxies plays no part here.",
        ]
    lines += [
        "# Identity headers: the header_mutation filter removes a client's copies (and of the",
        "# certificate headers the policy reads, which the app may read too) before",
        "# ext_authz runs; on an allow the server sets each header it has a value for",
        "# (overwriting) and names the others in headers_to_remove. Envoy applies a route's",
        "# request_headers_to_remove after ext_authz, so it must not list these names.",
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
        *(f"                {line}" for line in _connection_manager(policy, plan)),
        "  clusters:",
        *(
            f"    {line}"
            for line in _cluster("policyengine_authorizer", plan.authorizer, http2=True)
        ),
        *(f"    {line}" for line in _cluster("policyengine_app", options.upstream, http2=False)),
    ]
    return "\n".join(lines) + "\n"


def _stripped(policy: Policy, plan: Plan) -> list[str]:
    """What a client sent that must reach neither the server nor the app: its identity
    headers, and its copies of the certificate headers the policy's source reads (the
    server reads the peer certificate here, but the app behind may read them too)."""
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


def _connection_manager(policy: Policy, plan: Plan) -> list[str]:
    return [
        f'"@type": {_TYPES}.filters.network.http_connection_manager.v3.HttpConnectionManager',
        "stat_prefix: policyengine",
        "forward_client_cert_details: SANITIZE",
        "# X_Client_Principal would reach a CGI or WSGI app as X-Client-Principal does.",
        "common_http_protocol_options:",
        "  headers_with_underscores_action: DROP_HEADER",
        "route_config:",
        "  name: policyengine",
        "  virtual_hosts:",
        "    - name: app",
        '      domains: ["*"]',
        "      typed_per_filter_config:",
        "        envoy.filters.http.ext_authz:",
        f'          "@type": {_TYPES}.filters.http.ext_authz.v3.ExtAuthzPerRoute',
        "          check_settings:",
        "            context_extensions:",
        f"              policy: {yaml_string(policy.name)}",
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
        "  - name: envoy.filters.http.ext_authz",
        "    typed_config:",
        f'      "@type": {_TYPES}.filters.http.ext_authz.v3.ExtAuthz',
        "      transport_api_version: V3",
        "      grpc_service:",
        "        envoy_grpc:",
        "          cluster_name: policyengine_authorizer",
        "        timeout: 2s",
        "      include_peer_certificate: true",
        "      failure_mode_allow: false",
        "  - name: envoy.filters.http.router",
        "    typed_config:",
        f'      "@type": {_TYPES}.filters.http.router.v3.Router',
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
