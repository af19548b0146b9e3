"""Direct TLS: the server's own view of the client certificate, no proxy involved.

``wsgi-environ`` reads mod_ssl's variables (``SSL_CLIENT_CERT``, ``SSL_CLIENT_CERT_CHAIN_n``,
``SSL_CLIENT_VERIFY``) from the WSGI environ or through mod_wsgi's ``mod_ssl.var_lookup``;
``asgi-tls`` reads the ASGI TLS extension of the scope. Neither reads headers, so no
trusted proxy applies (their default list is empty and never consulted).

Must not import ``registry``, ``config`` (but for type checking) or ``read``, nor
``language/`` or ``evaluation/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from policyengine.errors import SourceError
from policyengine.request.der import ANY_SPACE, bail_if_too_many, pem_blocks
from policyengine.request.sources.record import STATUS, Decoded, Forwarded, Limits, Source
from policyengine.request.sources.text import (
    as_text,
    check_chain_length,
    check_size,
    check_text,
    in_header,
    leaf_and_rest,
    malformed,
    one_pem,
)
from policyengine.request.sources.verify import interpret_verify

if TYPE_CHECKING:
    from policyengine.request.sources.config import SourceConfig


def decode_direct_pem(value: str, limits: Limits, notes: list[str]) -> Decoded:
    """PEM text as a server holds it (WSGI environ, ASGI tls extension)."""
    if not value.strip(ANY_SPACE):
        return None, []
    check_text(value.replace("\n", "").replace("\r", ""))
    return leaf_and_rest(pem_blocks(value, limits))


def read_wsgi(config: SourceConfig, environ: Mapping[str, Any] | None) -> Forwarded:
    """mod_ssl's ``SSL_CLIENT_CERT`` (+ ``SSL_CLIENT_CERT_CHAIN_n``, ``SSL_CLIENT_VERIFY``).

    They are in the environ with ``SSLOptions +StdEnvVars +ExportCertData``; without them
    mod_wsgi's ``mod_ssl.var_lookup`` callable is asked for the same variables.
    """
    if environ is None:
        return Forwarded(None, (), None, None, ("no WSGI environ was given",))
    if not isinstance(environ, Mapping):
        raise malformed(f"the WSGI environ must be a mapping, not {type(environ).__name__}")
    limits = Limits(config.max_header_bytes, config.max_chain_length)
    lookup = environ.get("mod_ssl.var_lookup")
    use_lookup = "SSL_CLIENT_CERT" not in environ and callable(lookup)
    notes = ["read mod_ssl variables through mod_ssl.var_lookup"] if use_lookup else []

    def variable(name: str) -> str | None:
        if use_lookup:
            try:
                found = lookup(name)  # type: ignore[misc]
            except Exception as exc:
                raise malformed(f"mod_ssl.var_lookup({name!r}) failed: {exc}") from None
        else:
            found = environ.get(name)
        if found is None or found == "":
            return None
        text = in_header(name, as_text, found, "the variable")
        in_header(name, check_size, text, limits)
        return text

    pem = variable("SSL_CLIENT_CERT")
    verify = variable("SSL_CLIENT_VERIFY")
    verified = None
    if verify is not None:
        verify = verify.strip()
        in_header("SSL_CLIENT_VERIFY", check_text, verify)
        verified = interpret_verify(STATUS, verify, "SSL_CLIENT_VERIFY", notes)
    if pem is None:
        notes.append("no SSL_CLIENT_CERT in the WSGI environ (SSLOptions +ExportCertData?)")
        return Forwarded(None, (), verified, verify, tuple(notes))
    leaf = in_header("SSL_CLIENT_CERT", one_pem, pem, limits)
    chain: list[bytes] = []
    for index in range(limits.max_chain_length + 2):
        name = f"SSL_CLIENT_CERT_CHAIN_{index}"
        item = variable(name)
        if item is None:
            break
        chain.append(in_header(name, one_pem, item, limits))
    if chain and chain[0] == leaf:
        chain = chain[1:]
        notes.append("dropped the leaf repeated as SSL_CLIENT_CERT_CHAIN_0")
    check_chain_length(len(chain), limits)
    return Forwarded(leaf, tuple(chain), verified, verify, tuple(notes))


def read_asgi(config: SourceConfig, scope: Mapping[str, Any] | None) -> Forwarded:
    """The ASGI TLS extension: ``client_cert_chain`` (PEM, client first), ``client_cert_error``.

    The spec makes ``client_cert_error`` None when the chain verified or is absent, so a
    chain with no error is the server's "verified".
    """
    if scope is None:
        return Forwarded(None, (), None, None, ("no ASGI scope was given",))
    if not isinstance(scope, Mapping):
        raise malformed(f"the ASGI scope must be a mapping, not {type(scope).__name__}")
    extensions = scope.get("extensions")
    tls = extensions.get("tls") if isinstance(extensions, Mapping) else None
    if not isinstance(tls, Mapping):
        note = (
            "the ASGI server provides no 'tls' extension (uvicorn, hypercorn and daphne do "
            "not); use a proxy source instead"
        )
        return Forwarded(None, (), None, None, (note,))
    limits = Limits(config.max_header_bytes, config.max_chain_length)
    raw_chain = tls.get("client_cert_chain") or ()
    if isinstance(raw_chain, (str, bytes)):
        raise malformed("tls client_cert_chain must be a list of PEM strings, not one string")
    pems: list[str] = []
    try:
        for item in raw_chain:
            pems.append(as_text(item, "a client_cert_chain entry"))
            bail_if_too_many(len(pems), limits)
    except SourceError:
        raise
    except Exception as exc:
        raise malformed(f"tls client_cert_chain cannot be read: {exc}") from None
    error = tls.get("client_cert_error")
    raw_error = None if error is None else str(error)[:500]
    if not pems:
        note = "no client certificate in the TLS extension"
        return Forwarded(None, (), None, raw_error, (note,))
    ders = [
        in_header(f"client_cert_chain[{number}]", one_pem, pem, limits)
        for number, pem in enumerate(pems)
    ]
    chain = ders[1:]
    check_chain_length(len(chain), limits)
    if raw_error is None:
        verified: bool | None = True
        note = "the ASGI server reports no client_cert_error: verified"
    else:
        verified = False
        note = f"the ASGI server reports client_cert_error {raw_error!r}"
    return Forwarded(ders[0], tuple(chain), verified, raw_error, (note,))


WSGI_ENVIRON = Source(
    "wsgi-environ",
    None,
    decode_direct_pem,
    trusted_proxies=(),
    read_direct=read_wsgi,
    keep_whole=False,
)

ASGI_TLS = Source(
    "asgi-tls",
    None,
    decode_direct_pem,
    trusted_proxies=(),
    read_direct=read_asgi,
    reads_scope=True,
    keep_whole=False,
)
