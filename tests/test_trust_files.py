"""Anchor, intermediate and CRL files that cryptography reads only in part (issue 14, item 13).

cryptography loads a certificate or CRL and parses most fields when they are first read: a
file with an invalid version, a CN that is not UTF-8, or a name string of a type X.509 does
not allow loads, and fails later with a ValueError from deep inside. Loading a policy that
names such a file must end in a PolicyFileError at the entry, naming the entry, the file and
what cannot be read, and ``policyengine check`` must print it, never a traceback.

The broken files are made here: a real certificate or CRL from cryptography, with one
byte edited (the signature no longer matches, which is beside the point: they must not
load at all).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import NOW, run_cli
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from policyengine import PolicyFileError, load_policy
from policyengine.testing import IssuedCertificate, make_certificate

VALID = {
    "not_before": datetime(2026, 1, 1, tzinfo=UTC),
    "not_after": datetime(2030, 1, 1, tzinfo=UTC),
}
NAME = "Broken Root"
UTF8_NAME = b"\x0c\x0b" + NAME.encode()  # UTF8String, 11 bytes
"""How the CN is encoded in the certificates and CRLs below."""


@pytest.fixture(scope="module")
def root() -> IssuedCertificate:
    return make_certificate({"CN": "Files Root"}, ca=True, **VALID)


@pytest.fixture(scope="module")
def broken_ca(root: IssuedCertificate) -> IssuedCertificate:
    return make_certificate({"CN": NAME}, ca=True, issuer=root, **VALID)


def _der(issued: IssuedCertificate) -> bytes:
    return issued.certificate.public_bytes(serialization.Encoding.DER)


def _pem(der: bytes, label: str = "CERTIFICATE") -> bytes:
    body = base64.encodebytes(der)
    return (
        b"-----BEGIN "
        + label.encode()
        + b"-----\n"
        + body
        + b"-----END "
        + label.encode()
        + b"-----\n"
    )


def _edit(der: bytes, old: bytes, new: bytes) -> bytes:
    assert der.count(old) >= 1, old
    return der.replace(old, new)


DEFECTS: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    # the version field [0] EXPLICIT INTEGER 2 (v3) made 5, which no X.509 version is
    "invalid-version": (
        lambda der: _edit(der, b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x05"),
        "5 is not a valid X509 version",
    ),
    # the subject's CN: a UTF8String whose first byte is no UTF-8
    "invalid-utf8-common-name": (
        lambda der: _edit(der, UTF8_NAME, b"\x0c\x0b\xff" + NAME[1:].encode()),
        "its subject cannot be read (a field holds a value X.509 does not allow)",
    ),
    # the subject's CN as a VideotexString (tag 21), which a name may not hold
    "name-attribute-unsupported-tag": (
        lambda der: _edit(der, UTF8_NAME, b"\x15\x0b" + NAME.encode()),
        "its subject cannot be read (a field is not of the type X.509 puts there)",
    ),
}


def _policy(folder: Path, trust: str) -> Path:
    path = folder / "policy.yaml"
    path.write_text(
        "policy: files\n"
        "silence: [trusted-anywhere]\n"
        "trust:\n"
        f"{trust}"
        "rules:\n"
        "  - id: partner\n"
        "    effect: allow\n"
        "    when: trusted\n"
    )
    return path


def _refused(path: Path) -> tuple[int, int, str, str]:
    """load_policy fails with one PolicyFileError: (line, column, message, hint)."""
    with pytest.raises(PolicyFileError) as caught:
        load_policy(path)
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.span.file == str(path)
    assert diagnostic.code == "trust"
    return diagnostic.span.line, diagnostic.span.column, diagnostic.message, diagnostic.hint


def _check_prints(path: Path, line: int, column: int, words: str) -> None:
    result = run_cli("check", str(path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    assert f"{path}:{line}:{column}: error: " in result.stdout
    assert words in result.stdout


@pytest.mark.parametrize("encoding", ["pem", "der"])
@pytest.mark.parametrize("defect", DEFECTS)
def test_anchor_that_cryptography_reads_only_in_part_is_a_policy_error(
    tmp_path: Path,
    root: IssuedCertificate,
    broken_ca: IssuedCertificate,
    defect: str,
    encoding: str,
) -> None:
    edit, words = DEFECTS[defect]
    data = edit(_der(broken_ca))
    (tmp_path / "root.pem").write_bytes(root.pem)
    (tmp_path / f"broken.{encoding}").write_bytes(_pem(data) if encoding == "pem" else data)
    path = _policy(tmp_path, f"  anchors:\n    - root.pem\n    - broken.{encoding}\n")
    line, column, message, _ = _refused(path)
    assert (line, column) == (6, 7)  # the second anchor
    assert str(tmp_path / f"broken.{encoding}") in message
    assert words in message
    if defect != "invalid-version":  # a version cryptography refuses at once: not a certificate
        assert message.startswith(f"trust.anchors[1] {tmp_path / f'broken.{encoding}'}: ")
    _check_prints(path, 6, 7, words)


@pytest.mark.parametrize("defect", DEFECTS)
def test_intermediate_that_cryptography_reads_only_in_part_is_a_policy_error(
    tmp_path: Path, root: IssuedCertificate, broken_ca: IssuedCertificate, defect: str
) -> None:
    edit, words = DEFECTS[defect]
    (tmp_path / "root.pem").write_bytes(root.pem)
    (tmp_path / "issuing.pem").write_bytes(_pem(edit(_der(broken_ca))))
    path = _policy(tmp_path, "  anchors: [root.pem]\n  intermediates: [issuing.pem]\n")
    line, column, message, _ = _refused(path)
    assert (line, column) == (5, 19)
    assert words in message
    _check_prints(path, 5, 19, words)


def test_broken_certificate_in_a_bundle_is_named_by_its_place_in_the_file(
    tmp_path: Path, root: IssuedCertificate, broken_ca: IssuedCertificate
) -> None:
    edit = DEFECTS["invalid-utf8-common-name"][0]
    (tmp_path / "bundle.pem").write_bytes(root.pem + _pem(edit(_der(broken_ca))))
    path = _policy(tmp_path, "  anchors: [bundle.pem]\n")
    line, column, message, hint = _refused(path)
    assert (line, column) == (4, 13)
    assert message.startswith(
        f"trust.anchors[0] {tmp_path / 'bundle.pem'}, certificate 2 of 2: cryptography reads "
        "this certificate only in part; its subject cannot be read ("
    )
    assert hint.startswith("replace the file with a well-formed copy")


def test_broken_certificate_in_an_anchor_folder_is_a_policy_error(
    tmp_path: Path, root: IssuedCertificate, broken_ca: IssuedCertificate
) -> None:
    edit = DEFECTS["name-attribute-unsupported-tag"][0]
    (tmp_path / "roots").mkdir()
    (tmp_path / "roots" / "a-root.pem").write_bytes(root.pem)
    (tmp_path / "roots" / "b-broken.der").write_bytes(edit(_der(broken_ca)))
    path = _policy(tmp_path, "  anchors: [roots/]\n")
    line, column, message, _ = _refused(path)
    assert (line, column) == (4, 13)
    assert message.startswith(f"trust.anchors[0] {tmp_path / 'roots' / 'b-broken.der'}: ")


def _crl(issuer: IssuedCertificate) -> bytes:
    revoked = (
        x509.RevokedCertificateBuilder()
        .serial_number(0x1234)
        .revocation_date(datetime(2026, 1, 1, tzinfo=UTC))
        .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
        .build()
    )
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(datetime(2026, 1, 1, tzinfo=UTC))
        .next_update(datetime(2030, 1, 1, tzinfo=UTC))
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_revoked_certificate(revoked)
        .sign(issuer.key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


CRL_DEFECTS: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "invalid-utf8-issuer": (
        lambda der: _edit(der, UTF8_NAME, b"\x0c\x0b\xff" + NAME[1:].encode()),
        "cryptography reads this CRL only in part; its issuer cannot be read (",
    ),
    "issuer-unsupported-tag": (
        lambda der: _edit(der, UTF8_NAME, b"\x15\x0b" + NAME.encode()),
        "cryptography reads this CRL only in part; its issuer cannot be read (",
    ),
    # the revoked entry's reason code, ENUMERATED 1 (keyCompromise), made 99
    "unknown-reason-code": (
        lambda der: _edit(der, b"\x0a\x01\x01", b"\x0a\x01\x63"),
        "its revoked certificates cannot be read (Unsupported reason code: 99)",
    ),
}


@pytest.mark.parametrize("encoding", ["pem", "der"])
@pytest.mark.parametrize("defect", CRL_DEFECTS)
def test_crl_that_cryptography_reads_only_in_part_is_a_policy_error(
    tmp_path: Path,
    root: IssuedCertificate,
    broken_ca: IssuedCertificate,
    defect: str,
    encoding: str,
) -> None:
    edit, words = CRL_DEFECTS[defect]
    data = edit(_crl(broken_ca))
    (tmp_path / "root.pem").write_bytes(root.pem)
    (tmp_path / "issuing.pem").write_bytes(broken_ca.pem)
    name = f"issuing.crl.{encoding}"
    (tmp_path / name).write_bytes(_pem(data, "X509 CRL") if encoding == "pem" else data)
    path = _policy(
        tmp_path,
        "  anchors: [root.pem]\n"
        "  intermediates: [issuing.pem]\n"
        f"  revocation:\n    mode: hard\n    crls:\n      - {name}\n",
    )
    line, column, message, _ = _refused(path)
    assert (line, column) == (9, 9)
    assert message.startswith(f"trust.revocation.crls[0] {tmp_path / name}: ")
    assert words in message
    _check_prints(path, 9, 9, words)


def test_the_same_files_unedited_load_and_verify(
    tmp_path: Path, root: IssuedCertificate, broken_ca: IssuedCertificate
) -> None:
    """The control: only the edited byte makes the files unusable."""
    (tmp_path / "root.pem").write_bytes(root.pem)
    (tmp_path / "issuing.pem").write_bytes(broken_ca.pem)
    (tmp_path / "issuing.crl").write_bytes(_crl(broken_ca))
    path = _policy(
        tmp_path,
        "  anchors: [root.pem]\n"
        "  intermediates: [issuing.pem]\n"
        "  revocation:\n    mode: hard\n    crls: [issuing.crl]\n",
    )
    policy = load_policy(path)
    leaf = make_certificate({"CN": "client"}, issuer=broken_ca, **VALID)
    assert policy.evaluate(leaf.pem, path="/", now=NOW).allowed
