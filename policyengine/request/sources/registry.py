"""The registry of sources: every :class:`Source` record, by the name a policy gives it.

Owns :data:`SOURCES` (the names, in the order the docs list them), :func:`source_named`
(the record, or ``ValueError`` naming the choices), and the defaults read from a record
(:func:`default_header_names`, :func:`default_trusted_proxies`). Adding a proxy is one
module with its record and one line here.

Must not import ``config``, ``read`` or ``memo`` (they import this), nor ``language/`` or
``evaluation/``.
"""

from __future__ import annotations

from collections.abc import Mapping

from policyengine.request.sources.auto import AUTO
from policyengine.request.sources.aws import AWS_ALB
from policyengine.request.sources.azure import AZURE
from policyengine.request.sources.cloudflare import CADDY, CLOUDFLARE
from policyengine.request.sources.direct import ASGI_TLS, WSGI_ENVIRON
from policyengine.request.sources.envoy import ENVOY
from policyengine.request.sources.haproxy import HAPROXY
from policyengine.request.sources.nginx import APACHE, NGINX
from policyengine.request.sources.record import Source
from policyengine.request.sources.rfc9440 import GCP, RFC9440
from policyengine.request.sources.traefik import TRAEFIK

_RECORDS: Mapping[str, Source] = {
    record.name: record
    for record in (
        AZURE,
        NGINX,
        ENVOY,
        RFC9440,
        AWS_ALB,
        GCP,
        TRAEFIK,
        HAPROXY,
        APACHE,
        CLOUDFLARE,
        CADDY,
        WSGI_ENVIRON,
        ASGI_TLS,
        AUTO,
    )
}

SOURCES: tuple[str, ...] = tuple(_RECORDS)


def source_named(source: str) -> Source:
    """The record of the source a policy names; ``ValueError`` on an unknown name."""
    try:
        return _RECORDS[source]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown certificate source {source!r}; expected one of {', '.join(SOURCES)}"
        ) from None


def default_header_names(source: str) -> tuple[str | None, str | None, str | None]:
    """``(certificate header, chain header, verify header)`` a source reads by default.

    ==========  ===========================  ======================  ============================
    source      certificate                  chain                   verify
    ==========  ===========================  ======================  ============================
    azure       X-ARR-ClientCert             -                       -
    nginx       X-SSL-Client-Cert            -                       X-SSL-Client-Verify
    envoy       X-Forwarded-Client-Cert      (XFCC ``Chain=``)       -
    rfc9440     Client-Cert                  Client-Cert-Chain       -
    aws-alb     X-Amzn-Mtls-Clientcert-Leaf  X-Amzn-Mtls-Clientcert  -
    gcp         X-Client-Cert                X-Client-Cert-Chain     X-Client-Cert-Chain-Verified
    traefik     X-Forwarded-Tls-Client-Cert  (same header)           -
    haproxy     X-SSL-Client-Cert            X-SSL-Client-Chain      X-SSL-Client-Verify
    apache      X-SSL-Client-Cert            -                       X-SSL-Client-Verify
    cloudflare  Cf-Client-Cert-Der-Base64    -                       Cf-Cert-Verified
    caddy       X-Client-Cert                -                       -
    auto        X-Client-Cert                -                       -
    ==========  ===========================  ======================  ============================

    Where the vendor fixes the name (Azure App Service, Envoy, RFC 9440, AWS ALB,
    Traefik, Cloudflare Access) this is that name; where the admin chooses it (nginx,
    HAProxy, Apache, Caddy, GCP custom headers) it is the name the vendor's own examples
    use; ``auto`` uses ASP.NET Core's ``CertificateForwardingOptions`` default.
    ``X-SSL-Client-Chain`` for HAProxy is this library's choice (HAProxy has no example).
    """
    record = source_named(source)
    return record.header, record.chain_header, record.verify_header


def default_trusted_proxies(source: str) -> tuple[str, ...]:
    """The peers a source accepts forwarded headers from when the config names none.

    * Header sources except ``azure``: loopback and private ranges, ``127.0.0.0/8``,
      ``10.0.0.0/8``, ``172.16.0.0/12``, ``192.168.0.0/16``, ``::1/128``, ``fc00::/7``.
      A proxy on the same host, in the same VPC/VNet/pod network, reaches the app from
      these. A proxy that reaches the app from public addresses (Cloudflare without a
      tunnel, Google's global external load balancer) must be listed explicitly: with this
      default its headers are ignored, which fails closed.
    * ``azure``: ``0.0.0.0/0`` and ``::/0``, i.e. any peer. App Service terminates TLS in
      a front end whose addresses the app can neither list nor configure, and the app's
      own endpoint is only reachable through that front end, which sets
      ``X-ARR-ClientCert``. A narrower default would make the source useless out of the
      box; instead :func:`trusted_from_anywhere` flags it so ``policyengine check`` warns,
      and a deployment that is also reachable otherwise (VNet integration, a private
      endpoint, a container port) must set ``trusted_proxies``.
    * ``wsgi-environ`` and ``asgi-tls``: ``()``. They read the server's own TLS state,
      not headers, so no proxy is involved and the list is never consulted.

    A ``trusted_proxies`` entry ``"unix"`` (never a default) trusts a peer without an
    address, which is how servers report a Unix-socket connection from a local proxy.
    """
    return source_named(source).trusted_proxies
