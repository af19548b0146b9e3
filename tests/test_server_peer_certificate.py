"""The decision server's one speed layer: a peer certificate (Envoy's
``attributes.source.certificate``) decoded once and decided from its DER afterwards must
decide exactly as the plain path, ``Policy.evaluate_header``, decides the same value."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from policyengine.server.authorizer import PEER_SOURCE, Authorizer

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ["nginx-partner", "partner-roles", "partner-pki", "appservice-python"]
CERTS = ["partner", "partner-client", "partner-revoked", "fabrikam", "expired", "partner-issuing"]
PATHS = ["/orders/1", "/health", "/public/x", "/"]


def _escaped(name: str) -> str:
    return quote((ROOT / "policies" / "certs" / f"{name}.pem").read_text(), safe="")


@pytest.mark.parametrize("policy_name", POLICIES)
def test_peer_certificates_decide_as_the_plain_path(policy_name: str) -> None:
    authorizer = Authorizer([ROOT / "policies" / f"{policy_name}.yaml"])
    policy = authorizer.provider(None).current()  # type: ignore[union-attr]
    compared = 0
    for cert in CERTS:
        value = _escaped(cert)
        for path in PATHS:
            for method in ("GET", "POST"):
                view = {"path": path, "method": method, "host": "api.example.com"}
                plain = policy.evaluate_header(
                    value, source=PEER_SOURCE, path=path, method=method, host=view["host"]
                )
                for _sighting in range(3):  # first sight, then from the kept DER
                    verdict = authorizer.authorize_certificate(None, value, view, given_by="t")
                    assert verdict.decision == plain, (cert, path, method)
                    assert verdict.decision.identity == plain.identity
                    compared += 1
    assert compared == len(CERTS) * len(PATHS) * 2 * 3


def test_what_does_not_decode_takes_the_plain_path_and_says_why() -> None:
    authorizer = Authorizer([ROOT / "policies" / "nginx-partner.yaml"])
    view = {"path": "/orders", "method": "GET"}
    for value, reason in (
        ("", "missing_certificate"),
        ("%2D%2D%2D%2D%2DBEGIN%20CERTIFICATE", "malformed_header"),
        ("x" * 70000, "header_too_large"),
    ):
        for _sighting in range(2):
            verdict = authorizer.authorize_certificate(None, value, view, given_by="Envoy")
            assert not verdict.allowed
            assert verdict.reason == reason


def test_a_kept_value_is_decoded_again_under_smaller_limits(tmp_path: Path) -> None:
    """Two policies with different header limits share the server: a certificate kept
    under the larger limit is no way around the smaller one."""
    text = (ROOT / "policies" / "nginx-partner.yaml").read_text()
    small = tmp_path / "small.yaml"
    small.write_text(
        text.replace("policy: nginx-partner", "policy: small").replace(
            "  trusted_proxies:", "  max_header_bytes: 512\n  trusted_proxies:"
        )
    )
    authorizer = Authorizer([ROOT / "policies" / "nginx-partner.yaml", small])
    value = _escaped("partner")
    assert len(value) > 512
    view = {"path": "/orders", "method": "GET"}
    for _sighting in range(3):
        assert authorizer.authorize_certificate("nginx-partner", value, view, given_by="t").allowed
        refused = authorizer.authorize_certificate("small", value, view, given_by="t")
        assert refused.reason == "header_too_large"


def test_raw_headers_are_read_when_envoy_sends_them_so() -> None:
    """Envoy with ``encode_raw_headers: true`` sends ``header_map`` and no ``headers``."""
    from envoy.config.core.v3 import base_pb2
    from envoy.service.auth.v3 import attribute_context_pb2 as attributes
    from envoy.service.auth.v3 import external_auth_pb2

    from policyengine.server.grpc import check_view

    http = attributes.AttributeContext.HttpRequest(
        method="GET",
        path="/x?y",
        header_map=base_pb2.HeaderMap(
            headers=[
                base_pb2.HeaderValue(key="x-forwarded-client-cert", raw_value=b"Hash=ab"),
                base_pb2.HeaderValue(key="x-forwarded-client-cert", raw_value=b"Hash=cd"),
            ]
        ),
    )
    request = external_auth_pb2.CheckRequest(
        attributes=attributes.AttributeContext(
            request=attributes.AttributeContext.Request(http=http)
        )
    )
    view = check_view(request)
    assert view["headers"] == [
        ("x-forwarded-client-cert", "Hash=ab"),
        ("x-forwarded-client-cert", "Hash=cd"),
    ]
    assert view["path"] == "/x"
