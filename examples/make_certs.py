"""Make the certificates for running the example apps behind examples/nginx.conf.

    python examples/make_certs.py               # writes examples/certs/
    python examples/make_certs.py --out DIR     # somewhere else

Writes into the folder (made if missing; existing files are replaced, with new keys):

- ``ca.pem``: a CA for the examples (its key is not kept);
- ``server.pem`` / ``server.key``: nginx's certificate for 127.0.0.1 and localhost;
- ``client.pem`` / ``client.key``: the client certificate curl presents;
- ``nginx-example.yaml``: policies/nginx-partner.yaml for these certificates: the client
  certificate pinned by its SHA-256, and chained to ``ca.pem``. The apps enforce it with
  ``POLICYENGINE_POLICY=examples/certs/nginx-example.yaml``;
- ``nginx/``: an empty folder for nginx's pid file and temporary files.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from policyengine.testing import make_certificate, make_server_certificate

HERE = Path(__file__).resolve().parent
CA_SUBJECT = {"CN": "policyengine example CA", "O": "policyengine examples"}
CLIENT_SUBJECT = {"CN": "orders-client", "O": "Example Partner Ltd"}
POLICY_NAME = "nginx-example.yaml"

POLICY = """\
# Written by examples/make_certs.py: policies/nginx-partner.yaml for the certificates in
# this folder. client.pem is pinned by its SHA-256 and must chain to ca.pem; nginx forwards
# it in X-SSL-Client-Cert, believed only from nginx's own addresses (docs/sources.md).
policy: nginx-example
description: The example apps behind examples/nginx.conf
mode: required
exclusion_paths: /health
certificate:
  source: nginx
  trusted_proxies: [127.0.0.1, "::1"]
trust:
  anchors: [ca.pem]
identity:                 # who the certificate names (docs/identity.md)
  principal: [subject.CN]
  groups: [subject.O]
  roles:
    reports: trusted and "Example Partner Ltd" in subject.O   # the /reports view's role
sets:
  partners:
    - {sha256}   # client.pem
rules:
  - id: partner
    effect: allow
    when: |
      valid
      and trusted
      and subject.CN == "{client_cn}" and issuer.O == "{issuer_o}"
      and fingerprint.sha256 in partners
"""


def _write_key(path: Path, key_pem: bytes) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key_pem)


def make_certs(out: Path) -> dict[str, Path]:
    """Write the CA, server and client certificates and the pinned policy into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "nginx").mkdir(exist_ok=True)
    ca = make_certificate(CA_SUBJECT, ca=True)
    server = make_server_certificate(ca)
    client = make_certificate(CLIENT_SUBJECT, issuer=ca)

    written = {
        "ca": out / "ca.pem",
        "server": out / "server.pem",
        "server_key": out / "server.key",
        "client": out / "client.pem",
        "client_key": out / "client.key",
        "policy": out / POLICY_NAME,
    }
    written["ca"].write_bytes(ca.pem)
    written["server"].write_bytes(server.pem)
    _write_key(written["server_key"], server.key_pem)
    written["client"].write_bytes(client.pem)
    _write_key(written["client_key"], client.key_pem)
    written["policy"].write_text(
        POLICY.format(
            sha256=client.sha256, client_cn=CLIENT_SUBJECT["CN"], issuer_o=CA_SUBJECT["O"]
        )
    )
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=HERE / "certs", help="folder to write (examples/certs/)"
    )
    args = parser.parse_args(argv)
    written = make_certs(args.out)
    for path in written.values():
        print(path)


if __name__ == "__main__":
    main()
