"""The proxies that ask the HTTP authorizer: ``nginx-auth-request``, ``caddy``, ``traefik``.

Each sends the server the original path, method and host in the headers the server reads
(nginx: ``X-Original-URI``, ``X-Original-Method``, ``X-Forwarded-Host``; Caddy and Traefik
send ``X-Forwarded-Uri``, ``X-Forwarded-Method`` and ``X-Forwarded-Host`` themselves), the
client certificate in the header the policy's ``certificate:`` source reads, and copies
the identity headers of the server's 200 into the request to the app. A client's own
copies of the identity headers and of every certificate header are removed first.

Owns the three writers and nginx's certificate forwarding (which the ``nginx`` snippet
shares). Must not import ``integrations/`` or ``cli/``.
"""

from __future__ import annotations

from policyengine.evaluation.engine import Policy
from policyengine.request.sources import default_header_names, trusted_from_anywhere
from policyengine.tooling.export_proxies import (
    Plan,
    ProxyOptions,
    authorize_path,
    believed_headers,
    certificate_feed,
    comments,
    header_lines,
    trusted_proxies_note,
    with_underscores,
    yaml_string,
)

__all__ = ["caddy", "nginx_auth_request", "nginx_certificate_headers", "traefik"]

_AUTH_LOCATION = "/.policyengine/authorize"


def nginx_quote(shown: str) -> str:
    """A path or value as one nginx token: quoted when it holds a special character."""
    if any(ch in shown for ch in " ;{}'\"#\\$"):
        shown = '"' + shown.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return shown


def nginx_certificate_headers(
    policy: Policy, *, reader: str = "The app"
) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """``(header, nginx variable)`` pairs that forward the certificate as the policy's
    source reads it, the other headers that source believes (to clear), and the comment
    lines saying how the two fit. ``reader`` names who believes the headers."""
    config = policy.source
    source = config.source
    reads = [
        name
        for name in (config.header_name, config.chain_header_name, config.verify_header_name)
        if name
    ]
    notes: list[str] = []
    nginx_cert, _, nginx_verify = default_header_names("nginx")
    cert_header = nginx_cert or "X-SSL-Client-Cert"
    verify_header = nginx_verify
    if "nginx" in config.record.fed_by:
        cert_header = config.header_name or cert_header
        verify_fed = "nginx" in config.record.verify_fed_by
        verify_header = config.verify_header_name if verify_fed else None
        if "nginx" not in config.record.native_to:
            notes += [
                f"# The policy reads source {source} ({cert_header}); nginx fills it with its",
                "# percent-encoded PEM, which that source also reads. `certificate: source: nginx`",
                "# would say what really sends it.",
            ]
    else:
        what = f"source {source}" + (f" ({', '.join(reads)})" if reads else "")
        notes += [
            f"# The policy reads {what}, a format plain nginx cannot produce;",
            "# these lines forward nginx's own format: change the policy to",
            "# `certificate: source: nginx` to read it.",
        ]
    proxies = ", ".join(config.effective_trusted_proxies) or "none"
    notes.append(f"# {reader} believes them only from certificate.trusted_proxies: {proxies}.")
    if trusted_from_anywhere(config):
        notes += [
            f"# Warning: that is any peer, so whoever reaches {reader.lower()} without nginx"
            " can set them:",
            "# list nginx's addresses in certificate.trusted_proxies.",
        ]
    forwarded = [(cert_header, "$ssl_client_escaped_cert")]
    if verify_header:
        forwarded.append((verify_header, "$ssl_client_verify"))
    sent = {name.lower() for name, _ in forwarded}
    cleared = [name for name in reads if name.lower() not in sent]
    return forwarded, cleared, notes


# -- nginx -----------------------------------------------------------------------------


def nginx_auth_request(policy: Policy, plan: Plan, options: ProxyOptions) -> str:
    lines = header_lines(policy, plan, "#", what="nginx.conf")
    lines += [
        "# nginx drops a header with an underscore in its name (ignore_invalid_headers, on by",
        "# default: keep it on), so a client's X_Client_Principal never becomes the app's",
        "# HTTP_X_CLIENT_PRINCIPAL.",
        "# nginx answers a refusal with its own 403 page (the server's JSON reason stays in",
        "# the server's log), and any other answer or no answer with 500.",
        "# Check it with: nginx -t -c FILE -p DIR (DIR: where relative paths are read from)",
        "",
        "events {}",
        "",
        "http {",
        "    server {",
        f"        listen {options.listen} ssl;",
        f"        ssl_certificate     {nginx_quote(plan.server_cert)};",
        f"        ssl_certificate_key {nginx_quote(plan.server_key)};",
        *(f"        {line}" for line in _nginx_client_tls(plan)),
        "",
        *(f"        {line}" for line in _nginx_auth_location(policy, plan)),
        "",
        *(f"        {line}" for line in _nginx_app_location(policy, plan, options)),
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _nginx_client_tls(plan: Plan) -> list[str]:
    if plan.client_ca is None:
        return ["ssl_verify_client optional_no_ca;"]
    return [
        f"ssl_verify_client {'on' if plan.require else 'optional'};",
        f"ssl_client_certificate {nginx_quote(plan.client_ca)};",
    ]


def _nginx_auth_location(policy: Policy, plan: Plan) -> list[str]:
    forwarded, cleared, notes = nginx_certificate_headers(policy, reader="The server")
    sent = [
        ("X-Original-URI", "$request_uri"),
        ("X-Original-Method", "$request_method"),
        ("X-Forwarded-Host", "$host"),
        *forwarded,
        *((name, '""') for name in [*cleared, *plan.identity_headers]),
    ]
    width = max(len(name) for name, _ in sent)
    return [
        "# The subrequest to the server: no body; the certificate as the policy's source",
        "# reads it, and an empty value (which drops the header) for what nginx does not send.",
        *notes,
        f"location = {_AUTH_LOCATION} {{",
        "    internal;",
        f"    proxy_pass http://{plan.authorizer.netloc}{authorize_path(policy)};",
        "    proxy_pass_request_body off;",
        '    proxy_set_header Content-Length "";',
        *(f"    proxy_set_header {name:<{width}} {value};" for name, value in sent),
        "}",
    ]


def _nginx_variable(header: str) -> str:
    return "$policyengine_" + header.lower().replace("-", "_")


def _nginx_app_location(policy: Policy, plan: Plan, options: ProxyOptions) -> list[str]:
    identity = [
        f"auth_request_set {_nginx_variable(name)} $upstream_http_{name.lower().replace('-', '_')};"
        for name in plan.identity_headers
    ]
    forwarded, cleared, _ = nginx_certificate_headers(policy)
    sent = [
        ("Host", "$host"),
        *((name, _nginx_variable(name)) for name in plan.identity_headers),
        *((name, '""') for name in [*(n for n, _ in forwarded), *cleared]),
    ]
    width = max(len(name) for name, _ in sent)
    return [
        "# Every request asks the server first. The identity headers come from its answer:",
        "# proxy_set_header replaces a client's copy, and an empty value drops the header.",
        "location / {",
        f"    auth_request {_AUTH_LOCATION};",
        *(f"    {line}" for line in identity),
        f"    proxy_pass http://{options.upstream.netloc};",
        *(f"    proxy_set_header {name:<{width}} {value};" for name, value in sent),
        "}",
    ]


# -- Caddy -----------------------------------------------------------------------------


def _caddy_quote(text: str) -> str:
    if text and not any(ch.isspace() or ch in '"{}#\\`' for ch in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def caddy(policy: Policy, plan: Plan, options: ProxyOptions) -> str:
    native, _, _ = default_header_names("caddy")
    header, feed_notes = certificate_feed(policy, "caddy", native or "X-Client-Cert")
    stripped = with_underscores([*plan.identity_headers, header, *believed_headers(policy)])
    lines = header_lines(policy, plan, "#", what="Caddyfile")
    lines += comments([*feed_notes, *trusted_proxies_note(policy, "Caddy")])
    lines += [
        "# A refusal reaches the client as the server wrote it (403 and the JSON reason); no",
        "# answer from the server is Caddy's 502. With client_auth, Caddy answers 421 to a",
        "# request whose Host is not the name the client asked for in TLS (SNI): clients",
        "# must reach it by name, not by IP address.",
        "# For Caddy 2.8 or later (trust_pool; checked with 2.11). Caddy 2.6, Debian 12's, also",
        "# copies an identity header the server did not send as the text",
        "# {http.reverse_proxy.header.NAME}.",
        "# Check it with: caddy validate --adapter caddyfile --config FILE",
        "",
        f":{options.listen} {{",
        f"\ttls {_caddy_quote(plan.server_cert)} {_caddy_quote(plan.server_key)} {{",
        "\t\tclient_auth {",
        *(f"\t\t\t{line}" for line in _caddy_client_auth(plan)),
        "\t\t}",
        "\t}",
        "\t# route keeps this order: remove the client's copies (the underscore spellings too,",
        "\t# which CGI and WSGI servers read as the same header), ask the server, proxy.",
        "\troute {",
        *(f"\t\trequest_header -{name}" for name in stripped),
        f"\t\tforward_auth {plan.authorizer.netloc} {{",
        f"\t\t\turi {authorize_path(policy)}",
        f"\t\t\theader_up {header} {{http.request.tls.client.certificate_der_base64}}",
        f"\t\t\tcopy_headers {' '.join(plan.identity_headers)}",
        "\t\t}",
        f"\t\treverse_proxy {options.upstream.netloc}",
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _caddy_client_auth(plan: Plan) -> list[str]:
    if plan.client_ca is None:
        return [f"mode {'require' if plan.require else 'request'}"]
    return [
        f"mode {'require_and_verify' if plan.require else 'verify_if_given'}",
        f"trust_pool file {_caddy_quote(plan.client_ca)}",
    ]


# -- Traefik ---------------------------------------------------------------------------


def traefik(policy: Policy, plan: Plan, options: ProxyOptions) -> str:
    native, _, _ = default_header_names("traefik")
    header, feed_notes = certificate_feed(policy, "traefik", native or "")
    stripped = with_underscores([*plan.identity_headers, header, *believed_headers(policy)])
    name = yaml_string(policy.name)
    lines = header_lines(policy, plan, "#", what="Traefik dynamic configuration")
    lines += comments([*feed_notes, *trusted_proxies_note(policy, "Traefik")])
    lines += [
        "# Load it with the file provider; the static configuration needs the entry point:",
        "#   entryPoints:",
        "#     policyengine:",
        f'#       address: ":{options.listen}"',
        "#   providers:",
        "#     file:",
        "#       filename: /etc/traefik/policyengine.yaml",
        "# The middlewares run in order: remove the client's copies of the identity and",
        "# certificate headers (the underscore spellings too, which CGI and WSGI servers read",
        "# as the same header), put the certificate in the header, ask the server.",
        "http:",
        "  routers:",
        f"    {name}:",
        "      entryPoints: [policyengine]",
        '      rule: "PathPrefix(`/`)"',
        "      middlewares: [policyengine-strip, policyengine-client-cert, policyengine-authorize]",
        "      service: policyengine-app",
        "      tls:",
        "        options: policyengine",
        "  middlewares:",
        "    policyengine-strip:",
        "      headers:",
        "        customRequestHeaders:",
        *(f'          {yaml_string(header_name)}: ""' for header_name in stripped),
        "    policyengine-client-cert:",
        "      passTLSClientCert:",
        "        pem: true",
        "    policyengine-authorize:",
        "      forwardAuth:",
        f"        address: {yaml_string(f'http://{plan.authorizer.netloc}{authorize_path(policy)}')}",
        "        trustForwardHeader: false",
        "        authResponseHeaders:",
        *(f"          - {yaml_string(header_name)}" for header_name in plan.identity_headers),
        "  services:",
        "    policyengine-app:",
        "      loadBalancer:",
        "        servers:",
        f"          - url: {yaml_string(f'http://{options.upstream.netloc}')}",
        *_traefik_tls(plan),
    ]
    return "\n".join(lines) + "\n"


def _traefik_tls(plan: Plan) -> list[str]:
    if plan.client_ca is None:
        client_auth = ["RequireAnyClientCert" if plan.require else "RequestClientCert"]
        files: list[str] = []
    else:
        client_auth = ["RequireAndVerifyClientCert" if plan.require else "VerifyClientCertIfGiven"]
        files = ["        caFiles:", f"          - {yaml_string(plan.client_ca)}"]
    return [
        "tls:",
        "  stores:",
        "    default:",
        "      defaultCertificate:",
        f"        certFile: {yaml_string(plan.server_cert)}",
        f"        keyFile: {yaml_string(plan.server_key)}",
        "  options:",
        "    policyengine:",
        "      clientAuth:",
        *files,
        f"        clientAuthType: {client_auth[0]}",
    ]
