"""The platform settings that match a policy: ``policyengine export``.

A policy says whether a client certificate is required and which paths are excluded; the
platform in front of the app must be configured to match, or the app never sees the
certificate it expects (App Service with client certificates off forwards nothing; nginx
without ``ssl_verify_client`` never asks for one). Writing those settings by hand from the
policy is where they drift apart, so this module derives them from the compiled
:class:`Policy`:

* ``azure-cli``, ``bicep``, ``arm``: App Service's ``clientCertEnabled``,
  ``clientCertMode`` (from the policy's mode) and ``clientCertExclusionPaths`` (joined
  with ``;``), as an ``az webapp update`` command, a Bicep file and an ARM template.
* ``nginx``: a snippet for the ``server`` block that terminates TLS: ``ssl_verify_client``
  (with the policy's trust anchors when it has them) and the ``proxy_set_header`` lines
  that forward the certificate the way the policy's ``certificate:`` source reads it.
* ``envoy``, ``nginx-auth-request``, ``caddy``, ``traefik``: a whole proxy configuration
  that asks the decision server (``policyengine serve``) about every request
  (:mod:`policyengine.tooling.export_proxies`).

Every output starts with a comment naming the policy file it came from (the ARM template,
being JSON, carries it in its ``metadata``). The functions are pure: text in, text out.

Owns the export targets. May import ``load/``, ``evaluation/`` and the source records of
``request/``; must not import ``integrations/`` or ``cli/`` (the CLI writes what this
returns).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from policyengine.evaluation.engine import Policy
from policyengine.tooling import export_envoy, export_http_proxies
from policyengine.tooling.export_http_proxies import nginx_certificate_headers, nginx_quote
from policyengine.tooling.export_proxies import (
    PROXY_TARGETS,
    ProxyOptions,
    anchor_file,
    display_path,
    generated,
    plan,
)

__all__ = ["APP_SERVICE_MODES", "TARGETS", "ProxyOptions", "export"]

TARGETS = ("azure-cli", "bicep", "arm", "nginx", *PROXY_TARGETS)

APP_SERVICE_MODES = {
    "required": "Required",
    "optional": "Optional",
    "optional_interactive_user": "OptionalInteractiveUser",
}
"""The policy's mode -> App Service's ``clientCertMode`` (the ARM enum spelling)."""

SITES_API_VERSION = "2023-12-01"
"""A ``Microsoft.Web/sites`` API version that has all three client-certificate properties."""

_LOCATION_DESCRIPTION = "The region of the app: an existing app must keep its own"


def export(
    policy: Policy,
    target: str,
    *,
    app: str | None = None,
    resource_group: str | None = None,
    base: Path | None = None,
    proxy: ProxyOptions | None = None,
) -> str:
    """The ``target``'s settings for ``policy``, as text ending in a newline.

    ``app`` and ``resource_group`` name the App Service app; without them the outputs use
    a shell variable (``$APP_NAME``, ``$RESOURCE_GROUP``) or a template parameter. File
    paths (nginx's trust anchors) are shown relative to ``base`` when under it. ``proxy``
    says where the proxy targets (``PROXY_TARGETS``) listen and send requests.
    Raises ``ValueError`` on an unknown target.
    """
    if target == "azure-cli":
        return _azure_cli(policy, app, resource_group)
    if target == "bicep":
        return _bicep(policy, app, resource_group)
    if target == "arm":
        return _arm(policy, app)
    if target == "nginx":
        return _nginx(policy, base)
    if target in PROXY_TARGETS and proxy is None:
        raise ValueError(f"the {target} target needs ProxyOptions (proxy=)")
    options = proxy or ProxyOptions(identity_headers=())
    if target == "envoy":
        if options.ext_authz not in ("grpc", "http"):
            raise ValueError(f"ext_authz is grpc or http, not {options.ext_authz!r}")
        grpc = options.ext_authz == "grpc"
        planned = plan(policy, options, base, grpc=grpc, placeholder=True)
        return export_envoy.envoy(policy, planned, options)
    http_writers = {
        "nginx-auth-request": export_http_proxies.nginx_auth_request,
        "caddy": export_http_proxies.caddy,
        "traefik": export_http_proxies.traefik,
    }
    if target in http_writers:
        return http_writers[target](policy, plan(policy, options, base, grpc=False), options)
    raise ValueError(f"unknown export target {target!r}; expected one of {', '.join(TARGETS)}")


def _app_service_properties(policy: Policy) -> dict[str, object]:
    """The three site properties, in the order App Service's documentation gives them.

    The exclusion paths are always set, to ``""`` when the policy has none, so applying
    the output also clears exclusions left over from an earlier configuration.
    """
    return {
        "clientCertEnabled": True,
        "clientCertMode": APP_SERVICE_MODES[policy.mode],
        "clientCertExclusionPaths": ";".join(policy.exclusion_paths),
    }


def _app_service_notes(policy: Policy) -> list[str]:
    """Comment lines on what the settings do, and where the platform and policy differ."""
    mode = APP_SERVICE_MODES[policy.mode]
    notes = [
        f"The policy's mode {policy.mode} is clientCertMode {mode}; App Service only asks for",
        "the certificate and forwards it in X-ARR-ClientCert: the app still checks every",
        "request against the policy.",
    ]
    if policy.exclusion_paths or policy.mode == "optional_interactive_user":
        notes += [
            "These settings make App Service renegotiate TLS: TLS 1.3 and HTTP/2 clients cannot",
            "present a certificate, and POST/PUT bodies over 100 KB are refused with 403.",
        ]
    config = policy.source
    header = config.header_name or ""
    if "app-service" not in config.record.native_to or header.lower() != "x-arr-clientcert":
        notes += [
            f"Warning: the policy reads source {config.source} ({header or 'no header'}), but",
            "App Service sends X-ARR-ClientCert (base64 DER): set `certificate: source: azure`.",
        ]
    return notes


def _azure_cli(policy: Policy, app: str | None, resource_group: str | None) -> str:
    properties = _app_service_properties(policy)
    assignments = " ".join(
        shlex.quote(f"{key}={_cli_value(value)}") for key, value in properties.items()
    )
    group = shlex.quote(resource_group) if resource_group else '"$RESOURCE_GROUP"'
    name = shlex.quote(app) if app else '"$APP_NAME"'
    lines = [f"# {generated(policy)}", *(f"# {note}" for note in _app_service_notes(policy))]
    lines += [
        "az webapp update \\",
        f"  --resource-group {group} \\",
        f"  --name {name} \\",
        f"  --set {assignments}",
    ]
    return "\n".join(lines) + "\n"


def _cli_value(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _bicep(policy: Policy, app: str | None, resource_group: str | None) -> str:
    group = resource_group or "RESOURCE_GROUP"
    lines = [f"// {generated(policy)}", *(f"// {note}" for note in _app_service_notes(policy))]
    lines += [
        "// Merge the properties into the app's own Microsoft.Web/sites declaration if you have",
        f"// one; or deploy this file: az deployment group create -g {group} -f site.bicep",
        "",
        "@description('The App Service app the policy protects')",
        f"param siteName string{f' = {_bicep_string(app)}' if app else ''}",
        "",
        f"@description({_bicep_string(_LOCATION_DESCRIPTION)})",
        "param location string = resourceGroup().location",
        "",
        f"resource site 'Microsoft.Web/sites@{SITES_API_VERSION}' = {{",
        "  name: siteName",
        "  location: location",
        "  properties: {",
    ]
    for key, value in _app_service_properties(policy).items():
        shown = ("true" if value else "false") if isinstance(value, bool) else _bicep_string(value)
        lines.append(f"    {key}: {shown}")
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def _bicep_string(value: object) -> str:
    """A Bicep string literal: single quotes, with ``\\``, ``'`` and ``${`` escaped."""
    text = str(value).replace("\\", "\\\\").replace("'", "\\'").replace("${", "\\${")
    text = text.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f"'{text}'"


def _arm(policy: Policy, app: str | None) -> str:
    site_name: dict[str, object] = {
        "type": "string",
        "metadata": {"description": "The App Service app the policy protects"},
    }
    if app:
        site_name["defaultValue"] = app
    template = {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "metadata": {"comments": " ".join([generated(policy), *_app_service_notes(policy)])},
        "parameters": {
            "siteName": site_name,
            "location": {
                "type": "string",
                "defaultValue": "[resourceGroup().location]",
                "metadata": {"description": _LOCATION_DESCRIPTION},
            },
        },
        "resources": [
            {
                "type": "Microsoft.Web/sites",
                "apiVersion": SITES_API_VERSION,
                "name": "[parameters('siteName')]",
                "location": "[parameters('location')]",
                "properties": _app_service_properties(policy),
            }
        ],
    }
    return json.dumps(template, indent=2, ensure_ascii=False) + "\n"


def _nginx(policy: Policy, base: Path | None) -> str:
    lines = [
        f"# {generated(policy)}",
        "# Include inside the server block that terminates TLS for the app.",
        "",
    ]
    required = policy.mode == "required"
    lines += [
        "# nginx only asks for a certificate; the app decides. "
        + (
            "The policy's mode is required, yet a"
            if required
            else f"The policy's mode is {policy.mode}: a"
        ),
        "# request without one still reaches the app, which answers with its own 403 (reason",
        "# missing_certificate) and its explain trace, not nginx's bare 400."
        if required
        else "# request without one still reaches the app, and the policy's rules decide it.",
    ]
    if policy.exclusion_paths:
        lines.append(
            f"# The app applies the exclusion paths ({';'.join(policy.exclusion_paths)}) itself."
        )
    trust = policy.trust
    if trust is None:
        lines.append("ssl_verify_client optional_no_ca;")
    else:
        lines += _nginx_trust(policy, base)
    lines.append("")
    lines += _nginx_headers(policy)
    return "\n".join(lines) + "\n"


def _nginx_trust(policy: Policy, base: Path | None) -> list[str]:
    trust = policy.trust
    assert trust is not None
    settings = trust.settings
    lines = [
        "# The policy has trust anchors: nginx verifies the chain to them too, and says so in",
        "# $ssl_client_verify. A certificate that fails nginx's check gets nginx's 400 (495)",
        "# before the app sees it. Revocation is left to the app (nginx's ssl_crl needs a CRL",
        "# for every CA in the chain).",
        "ssl_verify_client optional;",
    ]
    anchors = settings.anchors
    found = anchor_file(anchors)
    if found is not None:
        lines.append(f"ssl_client_certificate {_nginx_path(found, base)};")
    else:
        shown = " ".join(_nginx_path(path, base) for path in anchors)
        lines += [
            "# nginx takes the anchors as one PEM file; the policy lists several files, a folder",
            f"# or DER ({shown}): concatenate them as PEM into policyengine-anchors.pem.",
            "ssl_client_certificate policyengine-anchors.pem;",
        ]
    if settings.intermediates:
        lines.append(
            "# The policy's known intermediates are not given to nginx: clients must send theirs."
        )
    lines += [
        "# Up to the policy's max_chain_depth intermediates between the leaf and the anchor.",
        f"ssl_verify_depth {settings.max_chain_depth};",
    ]
    return lines


def _nginx_path(path: Path, base: Path | None) -> str:
    """The path relative to ``base`` when under it, else absolute; quoted for nginx."""
    return nginx_quote(display_path(path, base))


def _nginx_headers(policy: Policy) -> list[str]:
    """Forward the certificate as the policy's source reads it, and overwrite every other
    header that source would believe, so a client-sent copy never reaches the app."""
    lines = [
        "# proxy_set_header lines reach a location only if it sets none of its own: repeat",
        "# them in any location that does. They replace what the client sent under the name.",
    ]
    forwarded, cleared, notes = nginx_certificate_headers(policy)
    lines += notes
    width = max(len(name) for name, _ in forwarded)
    lines += [f"proxy_set_header {name:<{width}} {value};" for name, value in forwarded]
    if cleared:
        lines.append("# nginx has nothing to send under these; an empty value drops the header.")
        lines += [f'proxy_set_header {name} "";' for name in cleared]
    return lines
