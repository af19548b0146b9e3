"""Certificates for testing policies: a few lines to make the certificates a rule expects.

::

    from policyengine.testing import make_certificate

    cert = make_certificate(subject={"CN": "api-client", "O": "Contoso Ltd"})
    assert policy.evaluate(cert=cert.pem, path="/orders").allowed

Keys are EC P-256 unless asked otherwise (fast to make). Used by policyengine's own tests,
and by anyone testing an application that embeds policyengine.

It imports cryptography and the standard library only, nothing of policyengine: the
certificates it makes are independent of the code they test. :class:`OcspResponder` runs a
real ``openssl ocsp``.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

__all__ = [
    "IssuedCertificate",
    "OcspResponder",
    "make_certificate",
    "make_crl",
    "make_name",
    "make_server_certificate",
    "write_ocsp_index",
]

_OIDS = {
    "CN": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "emailAddress": NameOID.EMAIL_ADDRESS,
    "serialNumber": NameOID.SERIAL_NUMBER,
    "DC": NameOID.DOMAIN_COMPONENT,
    "UID": NameOID.USER_ID,
}

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

NameSpec = Mapping[str, str] | Sequence[tuple[str, str]]


def make_name(spec: NameSpec) -> x509.Name:
    """A name from ``{"CN": "x", "O": "y"}`` or ``[("OU", "a"), ("OU", "b")]`` (repeats kept)."""
    pairs = list(spec.items()) if isinstance(spec, Mapping) else list(spec)
    return x509.Name([x509.NameAttribute(_OIDS[key], value) for key, value in pairs])


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate and its private key, with the encodings and fingerprints tests need."""

    certificate: x509.Certificate
    key: PrivateKey

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def sha1(self) -> str:
        return self.certificate.fingerprint(hashes.SHA1()).hex()

    @property
    def sha256(self) -> str:
        return self.certificate.fingerprint(hashes.SHA256()).hex()


def make_certificate(
    subject: NameSpec = (("CN", "client"),),
    *,
    issuer: IssuedCertificate | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    serial: int | None = None,
    key: PrivateKey | None = None,
    ca: bool = False,
    client_auth: bool = True,
    key_identifiers: bool = True,
    path_length: int | None = None,
    extended_key_usage: Sequence[x509.ObjectIdentifier] | None = None,
    dns: Sequence[str] = (),
    uris: Sequence[str] = (),
    emails: Sequence[str] = (),
    ocsp: str | None = None,
    crl_urls: Sequence[str] = (),
) -> IssuedCertificate:
    """A certificate for ``subject``, self-signed unless ``issuer`` is given.

    ``dns``, ``uris`` and ``emails`` go into a subject alternative name (none without them):
    ``make_certificate({"CN": "svc"}, uris=["spiffe://contoso.com/payments"])``. ``ocsp``:
    its OCSP responder's URL (authority information access); ``crl_urls``: its CRL URLs.

    Valid from a day ago for a year unless ``not_before``/``not_after`` say otherwise. Has
    basic constraints, subject and authority key identifiers (unless ``key_identifiers`` is
    false), key usage keyCertSign/cRLSign for a CA, and the clientAuth EKU for a leaf
    (unless ``client_auth`` is false, or ``extended_key_usage`` lists others): what a chain
    verifier expects of a real PKI.
    """
    now = datetime.now(UTC)
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = make_name(subject)
    issuer_name = issuer.certificate.subject if issuer else name
    signing_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=365))
        .add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True
        )
    )
    builder = _with_usages(builder, ca=ca, client_auth=client_auth, usages=extended_key_usage)
    if dns or uris or emails:
        names = _alternative_names(dns, (), uris, emails)
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if key_identifiers:
        builder = _with_key_identifiers(builder, key, signing_key)
    builder = _with_revocation_urls(builder, ocsp, crl_urls)
    if ca:
        builder = builder.add_extension(_key_usage(signs_certificates=True), critical=True)
    algorithm = None if isinstance(signing_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    certificate = builder.sign(signing_key, algorithm)
    return IssuedCertificate(certificate, key)


def make_crl(
    issuer: IssuedCertificate,
    revoked: Iterable[int] = (),
    *,
    last_update: datetime | None = None,
    next_update: datetime | None = None,
    number: int = 1,
    extensions: Sequence[x509.ExtensionType] = (),
) -> bytes:
    """A DER CRL of ``issuer``, signed by it, listing the serial numbers ``revoked``
    (revoked a day ago): ``make_crl(ca, [leaf.certificate.serial_number])``.

    Published an hour ago and fresh for a day unless ``last_update``/``next_update`` say
    otherwise; CRL number ``number``; ``extensions`` added, not critical.
    """
    now = datetime.now(UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(last_update or now - timedelta(hours=1))
        .next_update(next_update or now + timedelta(days=1))
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    for serial in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(serial)
        builder = builder.add_revoked_certificate(
            entry.revocation_date(now - timedelta(days=1)).build()
        )
    algorithm = None if isinstance(issuer.key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    crl = builder.sign(issuer.key, algorithm)
    return crl.public_bytes(serialization.Encoding.DER)


def _with_usages(
    builder: x509.CertificateBuilder,
    *,
    ca: bool,
    client_auth: bool,
    usages: Sequence[x509.ObjectIdentifier] | None,
) -> x509.CertificateBuilder:
    """The extended key usages given; else clientAuth for a leaf (unless not wanted)."""
    if usages is None and client_auth and not ca:
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if usages is None:
        return builder
    return builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)


def _with_revocation_urls(
    builder: x509.CertificateBuilder, ocsp: str | None, crl_urls: Sequence[str]
) -> x509.CertificateBuilder:
    """An authority information access naming ``ocsp`` as the OCSP responder, and CRL
    distribution points, one per URL of ``crl_urls``."""
    if ocsp is not None:
        where = x509.AccessDescription(
            AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp)
        )
        builder = builder.add_extension(x509.AuthorityInformationAccess([where]), critical=False)
    if crl_urls:
        points = [
            x509.DistributionPoint([x509.UniformResourceIdentifier(url)], None, None, None)
            for url in crl_urls
        ]
        builder = builder.add_extension(x509.CRLDistributionPoints(points), critical=False)
    return builder


def _alternative_names(
    dns: Iterable[str], ips: Iterable[str], uris: Iterable[str] = (), emails: Iterable[str] = ()
) -> list[x509.GeneralName]:
    return [
        *(x509.DNSName(n) for n in dns),
        *(x509.IPAddress(ipaddress.ip_address(a)) for a in ips),
        *(x509.UniformResourceIdentifier(u) for u in uris),
        *(x509.RFC822Name(e) for e in emails),
    ]


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _with_key_identifiers(
    builder: x509.CertificateBuilder, key: PrivateKey, signing_key: PrivateKey
) -> x509.CertificateBuilder:
    """The subject key identifier of ``key``, the authority key identifier of the signer's."""
    return builder.add_extension(
        x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
    ).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()),
        critical=False,
    )


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    """keyCertSign and cRLSign for a CA; digitalSignature for a TLS server."""
    return x509.KeyUsage(
        digital_signature=not signs_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def make_server_certificate(
    issuer: IssuedCertificate,
    names: Sequence[str] = ("localhost", "127.0.0.1"),
    *,
    days: int = 365,
) -> IssuedCertificate:
    """A TLS server certificate for ``names`` (DNS names or IP addresses), signed by ``issuer``.

    For tests and examples that put a real TLS server (nginx, say) in front of an app.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    alternative = _alternative_names(
        [n for n in names if not _is_ip(n)], [n for n in names if _is_ip(n)]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(make_name({"CN": names[0]}))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
    )
    certificate = _with_key_identifiers(builder, key, issuer.key).sign(issuer.key, hashes.SHA256())
    return IssuedCertificate(certificate, key)


def write_ocsp_index(
    path: Path,
    good: Iterable[IssuedCertificate] = (),
    revoked: Iterable[IssuedCertificate] = (),
    *,
    revoked_at: datetime | None = None,
) -> None:
    """Write ``openssl ocsp``'s index file: ``good`` certificates valid, ``revoked`` ones
    revoked at ``revoked_at`` (a day ago by default) for keyCompromise; any other serial
    number is unknown to the responder. Written so that a running responder reads it again
    (:meth:`OcspResponder.reread`)."""
    when = (revoked_at or datetime.now(UTC) - timedelta(days=1)).strftime("%y%m%d%H%M%SZ")
    lines = []
    for cert, status in [*((c, "V") for c in good), *((c, "R") for c in revoked)]:
        after = cert.certificate.not_valid_after_utc.strftime("%y%m%d%H%M%SZ")
        gone = f"{when},keyCompromise" if status == "R" else ""
        lines.append(
            f"{status}\t{after}\t{gone}\t{cert.certificate.serial_number:X}\tunknown\t/CN=x"
        )
    staged = path.with_suffix(".new")
    staged.write_text("".join(line + "\n" for line in lines))
    # openssl reads the index again when its modification time changes, in whole seconds:
    # a time it cannot have seen yet
    later = time.time() + 2
    os.utime(staged, (later, later))
    staged.replace(path)


@dataclass
class OcspResponder:
    """A real ``openssl ocsp`` responder on loopback, for a test of ``sources: [ocsp]``:
    ``OcspResponder.start(folder, ca, index)``, its ``url`` in the policy's
    ``ocsp.responder`` (or a certificate's ``ocsp=``), ``stop()`` at the end."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    """openssl's own log: a line per request received."""
    issuer: IssuedCertificate

    @classmethod
    def start(
        cls,
        folder: Path,
        issuer: IssuedCertificate,
        index: Path,
        *,
        signer: IssuedCertificate | None = None,
        minutes: int = 60,
    ) -> OcspResponder:
        """Answer for the certificates ``issuer`` issued, from ``index``
        (:func:`write_ocsp_index`), signing as ``signer`` (the issuer itself by default),
        answers fresh for ``minutes``. Raises RuntimeError when openssl is not installed or
        does not start within 10 seconds."""
        openssl = shutil.which("openssl")
        if openssl is None:
            raise RuntimeError("openssl is not installed")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        signer = signer or issuer
        files = {name: folder / f"ocsp-{port}-{name}.pem" for name in ("ca", "signer", "key")}
        files["ca"].write_bytes(issuer.pem)
        files["signer"].write_bytes(signer.pem)
        files["key"].write_bytes(signer.key_pem)
        log = folder / f"ocsp-{port}.log"
        argv = [openssl, "ocsp", "-index", str(index), "-port", str(port), "-nmin", str(minutes)]
        argv += ["-rsigner", str(files["signer"]), "-rkey", str(files["key"])]
        argv += ["-CA", str(files["ca"])]
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
        # not probed with a connection: openssl serves one at a time, and would wait on it
        deadline = time.monotonic() + 10
        while "waiting for OCSP client connections" not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"openssl ocsp did not start:\n{log.read_text()}")
            time.sleep(0.05)
        return cls(f"http://127.0.0.1:{port}", process, log, issuer)

    def requests(self) -> int:
        """How many requests the responder has received."""
        return self.log.read_text(errors="replace").count("Received request")

    def reread(self) -> None:
        """One request aside: openssl looks at its index file again after it answers one,
        so the request after this one is answered from the index as it is now."""
        from cryptography.x509 import ocsp

        aside = make_certificate({"CN": "aside"}, issuer=self.issuer)
        request = ocsp.OCSPRequestBuilder().add_certificate(
            aside.certificate, self.issuer.certificate, hashes.SHA1()
        )
        body = request.build().public_bytes(serialization.Encoding.DER)
        head = "POST / HTTP/1.0\r\nContent-Type: application/ocsp-request\r\n"
        head += f"Content-Length: {len(body)}\r\n\r\n"
        port = int(self.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
            connection.sendall(head.encode() + body)
            while connection.recv(4096):
                pass

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
