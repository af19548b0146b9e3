"""Envoy's external authorization over gRPC: ``envoy.service.auth.v3.Authorization/Check``.

Envoy sends a ``CheckRequest`` per request (its ``ext_authz`` HTTP filter with
``grpc_service``); the answer is a ``CheckResponse``:

* the policy: the ``context_extensions["policy"]`` the route or virtual host sets (with one
  policy loaded, it may be left out);
* the certificate: ``attributes.source.certificate``, the URL-encoded PEM of the peer
  certificate that Envoy's own TLS verified, sent with ``include_peer_certificate: true``.
  It is not a header, so no trusted-proxy check applies. A policy whose source is
  ``envoy`` reads the ``X-Forwarded-Client-Cert`` header of the check request instead (a
  front Envoy's XFCC, believed from a trusted peer as always);
* the path (without the query), method and host from ``attributes.request.http``; the
  peer is ``attributes.source.address``: the host that sent the request, and so its
  headers, to the Envoy asking (a front proxy's XFCC is believed only when that host is
  among the policy's trusted proxies; never the Envoy asking, which would vouch for
  whatever a client sent it);
* allow: ``OkHttpResponse`` setting each identity header it has a value for, overwriting a
  client's copy (``OVERWRITE_IF_EXISTS_OR_ADD``), and naming the others in
  ``headers_to_remove``; never a header in both, since Envoy removes after it sets;
* refusal: ``DeniedHttpResponse``, 403, a JSON body with the reason code and its sentence,
  and gRPC status ``PERMISSION_DENIED``.

The protobuf classes are the ``xds-protos`` package's (generated from Envoy's own API by
the gRPC project, released with grpcio), so no ``.proto`` is vendored or compiled here.

Owns: ExtAuthz, grpc_server, check_view, check_response. grpcio and xds-protos are
imported here alone (the ``server`` extra).
"""

from __future__ import annotations

from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.rpc import code_pb2, status_pb2

from policyengine.request.answers import off_the_loop
from policyengine.server.authorizer import BAD_REQUEST, Authorizer, Verdict

__all__ = ["ExtAuthz", "check_response", "check_view", "grpc_server"]

GIVEN_BY = "Envoy ext_authz check request: attributes.source.certificate"
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def source_address(attributes: Any) -> str | None:
    """The address of the host that sent the request to Envoy (``unix`` for a pipe, as
    the trusted proxies name it; None when Envoy did not say)."""
    address = attributes.source.address
    if address.HasField("socket_address"):
        return address.socket_address.address or None
    if address.HasField("pipe"):
        return "unix"
    return None


def _headers(http: Any) -> list[tuple[str, str]]:
    """The request's headers: ``headers``, or ``header_map`` when Envoy sends raw headers
    (``encode_raw_headers: true``), each field line on its own."""
    if http.headers or not http.HasField("header_map"):
        return list(http.headers.items())
    return [
        (item.key, item.raw_value.decode("latin-1") if item.raw_value else item.value)
        for item in http.header_map.headers
    ]


def check_view(request: Any) -> dict[str, Any]:
    """A ``CheckRequest`` as ``evaluate_request`` keywords."""
    http = request.attributes.request.http
    return {
        "headers": _headers(http),
        "remote_addr": source_address(request.attributes),
        "path": http.path.partition("?")[0] or "/",
        "method": http.method or None,
        "host": http.host or None,
    }


def check_response(verdict: Verdict) -> Any:
    """The ``CheckResponse`` that tells Envoy the verdict."""
    if verdict.allowed:
        ok = external_auth_pb2.OkHttpResponse(
            headers=[
                base_pb2.HeaderValueOption(
                    header=base_pb2.HeaderValue(key=name.lower(), value=value),
                    append_action=_OVERWRITE,
                )
                for name, value in verdict.set_headers
            ],
            headers_to_remove=[name.lower() for name in verdict.remove_headers],
        )
        return external_auth_pb2.CheckResponse(
            status=status_pb2.Status(code=code_pb2.OK), ok_response=ok
        )
    denied = external_auth_pb2.DeniedHttpResponse(
        status=http_status_pb2.HttpStatus(code=verdict.status),
        headers=[
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key="content-type", value="application/json"),
                append_action=_OVERWRITE,
            ),
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key="cache-control", value="no-store"),
                append_action=_OVERWRITE,
            ),
        ],
        body=verdict.body.decode(),
    )
    return external_auth_pb2.CheckResponse(
        status=status_pb2.Status(code=code_pb2.PERMISSION_DENIED, message=verdict.reason),
        denied_response=denied,
    )


class ExtAuthz(external_auth_pb2_grpc.AuthorizationServicer):  # type: ignore[misc]
    """The Authorization service, deciding with ``authorizer``."""

    def __init__(self, authorizer: Authorizer) -> None:
        self.authorizer = authorizer

    def decide(self, request: Any) -> Verdict:
        name = request.attributes.context_extensions.get("policy") or None
        try:
            view = check_view(request)
        except Exception as exc:  # a request this cannot read is refused
            message = f"The check request could not be read, so it is refused: {exc}"
            return self.authorizer.refuse(name, BAD_REQUEST, message, {})
        provider = self.authorizer.provider(name)
        if provider is None:
            return self.authorizer.authorize(name, view)  # unknown_policy
        policy = provider.current()  # once: a reload now must not split the source from it
        if "envoy" in policy.source.record.native_to:
            return self.authorizer.authorize(name, view, policy=policy)
        certificate = request.attributes.source.certificate
        return self.authorizer.authorize_certificate(
            name, certificate, view, given_by=GIVEN_BY, policy=policy
        )

    async def Check(self, request: Any, context: Any) -> Any:
        return check_response(await off_the_loop(lambda: self.decide(request)))


def grpc_server(authorizer: Authorizer, address: str) -> Any:
    """A grpcio asyncio server with the Authorization service on ``address``
    (``HOST:PORT``), not started. Several worker processes may bind the same address
    (``SO_REUSEPORT``, grpcio's default on Linux)."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(ExtAuthz(authorizer), server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpcio raises (older releases returned 0)
        raise OSError(f"cannot listen on {address} for gRPC: {exc}") from None
    if port == 0:
        raise OSError(f"cannot listen on {address} for gRPC")
    return server
