"""Reading one request: from its headers (or the server's TLS state) to a Forwarded.

Owns :func:`read_forwarded` (trusted peer, the source's headers picked out, the header
memo consulted, the values decoded by the source's record) and :func:`decode_header_value`
(one value on its own, for ``explain --header``). Everything a proxy needs comes from its
:class:`~policyengine.request.sources.record.Source` record; nothing here names a source.

Must not import ``language/`` or ``evaluation/``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from policyengine.errors import SourceError
from policyengine.request.sources.config import Plan, SourceConfig, peer_trusted
from policyengine.request.sources.headers import joined_instances, scan, single_instance
from policyengine.request.sources.memo import HeaderMemo
from policyengine.request.sources.record import Forwarded, Limits, Source
from policyengine.request.sources.registry import source_named
from policyengine.request.sources.text import (
    HEADER_SPACE,
    as_text,
    check_chain_length,
    check_size,
    check_text,
    in_header,
)
from policyengine.request.sources.verify import interpret_verify

_Picked = tuple[str, list[str], str | None, str | None, str | None]
"""The trusted peer's note, the notes so far, and the certificate, chain and verify values."""


def read_forwarded(
    config: SourceConfig,
    headers: Mapping[Any, Any] | Iterable[Any] | None,
    remote_addr: str | None,
    environ_or_scope: Mapping[str, Any] | None = None,
    *,
    memo: HeaderMemo | None = None,
    scanned: tuple[str, str] | None = None,
) -> Forwarded:
    """The certificate a request carries according to ``config``.

    ``headers``: a mapping (looked up case-insensitively here) or an iterable of
    ``(name, value)`` pairs, names and values ``str`` or ``bytes`` (latin-1, as HTTP
    servers hand them over); pairs keep duplicates visible, so pass raw pairs when you
    have them. ``remote_addr``: the immediate TCP peer (``REMOTE_ADDR``,
    ``scope["client"][0]``). ``environ_or_scope``: the WSGI environ or ASGI scope, read
    by the ``wsgi-environ`` and ``asgi-tls`` sources only.

    ``memo``: a :class:`HeaderMemo` that remembers what a peer address and a set of header
    values came to, so a client that sends the same certificate again skips decoding.
    ``scanned``: what :meth:`HeaderMemo.recall` found in these very headers (a trusted
    peer's note, and the certificate header's value, sent alone and once).

    Raises :class:`SourceError` and nothing else on anything a client or proxy sent.
    """
    direct = config.record.read_direct
    if direct is not None:
        return direct(config, environ_or_scope)
    plan = config._plan
    if scanned is not None:
        # recall has read the headers: a trusted peer, the certificate header once and
        # none of the source's other headers, so all single_instance would check is size
        assert plan.header is not None  # every header source has a default
        if len(scanned[1]) > plan.limits.max_header_bytes:  # check_size, said by it
            in_header(plan.header, check_size, scanned[1], plan.limits)
        picked: _Picked = (scanned[0], [scanned[0]], scanned[1], None, None)
    else:
        found = _pick(config, plan, headers, remote_addr, memo)
        if found.__class__ is Forwarded:
            return found
        picked = found  # type: ignore[assignment]
    return _decode_picked(config, plan, picked, headers, remote_addr, memo, scanned is None)


def _trust(config: SourceConfig, remote_addr: object, memo: HeaderMemo | None) -> tuple[bool, str]:
    """Whether the peer is a trusted proxy and the note saying so, remembered in ``memo``."""
    address = remote_addr if isinstance(remote_addr, str) else None
    known = memo.peer(address) if memo is not None and address is not None else None
    if isinstance(known, tuple):
        return known
    verdict = peer_trusted(config, remote_addr)
    if memo is not None and address is not None:
        memo.put_peer(address, verdict)
    return verdict


def _pick(
    config: SourceConfig, plan: Plan, headers: object, remote_addr: object, memo: HeaderMemo | None
) -> Forwarded | _Picked:
    """The source's header values in this request, or the result when there is no more to
    do (an untrusted peer, a returning client's whole result in the memo)."""
    cert_name = plan.header
    assert cert_name is not None  # every header source has a default
    names = plan.names
    limits = plan.limits
    trusted, trust_note = _trust(config, remote_addr, memo)
    found = scan(headers, plan.by_lower)
    if trusted and memo is not None:
        # a returning client, the certificate header alone and once: one lookup
        values, variants = found[cert_name]
        others = len(names) > 1 and any(any(found[n]) for n in names[1:])
        if len(values) == 1 and not variants and not others and isinstance(remote_addr, str):
            whole = memo.whole(remote_addr, values[0])
            if whole is not None:
                return whole
    if not trusted:
        notes = [trust_note]
        sent = [n for n in names if found[n][0]]
        if sent:
            notes.append(f"ignored header(s) sent by that peer: {', '.join(sent)}")
        return Forwarded(None, (), None, None, tuple(notes))
    notes = [trust_note]
    chain_name, verify_name = plan.chain_header, plan.verify_header
    cert_value = single_instance(found, cert_name, limits, notes)
    verify_value = single_instance(found, verify_name, limits, notes) if verify_name else None
    if chain_name and config.record.chain_instances_joined:
        chain_value = joined_instances(found, chain_name, limits)
    elif chain_name:
        chain_value = single_instance(found, chain_name, limits, notes)
    else:
        chain_value = None
    return trust_note, notes, cert_value, chain_value, verify_value


def _decode_picked(
    config: SourceConfig,
    plan: Plan,
    picked: _Picked,
    headers: object,
    remote_addr: object,
    memo: HeaderMemo | None,
    look_whole: bool,
) -> Forwarded:
    """Decode the values picked out, through the memo when the source allows it."""
    _, notes, cert_value, chain_value, verify_value = picked
    use_memo = memo is not None and plan.whole
    # the whole result, when nothing but the peer's verdict is noted: a returning client
    # with the same certificate costs one lookup
    peer = remote_addr if use_memo and len(notes) == 1 and isinstance(remote_addr, str) else None
    if use_memo:
        assert memo is not None
        if peer is not None and look_whole:  # else recall has looked it up
            whole = memo.whole(peer, cert_value, chain_value, verify_value)
            if whole is not None:
                return whole
        hit = memo.decoded(cert_value, chain_value, verify_value)
        if isinstance(hit, SourceError):
            raise hit
        if isinstance(hit, Forwarded):
            return Forwarded(
                hit.leaf, hit.chain, hit.proxy_verified, hit.proxy_verify, (*notes, *hit.notes)
            )
    try:
        decoded = _decode_values(
            config.record, plan, cert_value, chain_value, verify_value, headers
        )
    except SourceError as exc:
        if use_memo:
            assert memo is not None
            memo.put_decoded(cert_value, chain_value, verify_value, exc)
        raise
    result = Forwarded(
        decoded.leaf,
        decoded.chain,
        decoded.proxy_verified,
        decoded.proxy_verify,
        (*notes, *decoded.notes),
    )
    if use_memo:
        assert memo is not None
        # the whole result alone when it can be kept: an entry for the values would serve
        # only the same value from another trusted proxy (decoded again then)
        if peer is not None:
            memo.put_whole(peer, cert_value, chain_value, verify_value, result)
        else:
            memo.put_decoded(cert_value, chain_value, verify_value, decoded)
    return result


def _decode_values(
    record: Source,
    plan: Plan,
    cert_value: str | None,
    chain_value: str | None,
    verify_value: str | None,
    headers: object,
) -> Forwarded:
    """Decode the header values already picked out; the result's notes are only its own."""
    cert_name = plan.header
    assert cert_name is not None
    limits = plan.limits
    notes: list[str] = []
    leaf: bytes | None = None
    chain: list[bytes] = []
    if cert_value is None:
        notes.append(f"no {cert_name} header")
        if record.absent_note:
            notes.append(record.absent_note)
    elif not cert_value.strip(HEADER_SPACE):
        notes.append(f"{cert_name} is empty: no certificate")
    else:
        leaf, chain = in_header(cert_name, record.decode, cert_value, limits, notes)
    if chain_value is not None and plan.chain_header:
        leaf = _add_chain(record, plan.chain_header, chain_value, leaf, chain, limits, notes)
    check_chain_length(len(chain), limits)
    if chain:
        notes.append(f"{len(chain)} intermediate certificate(s) forwarded")
    verified: bool | None = None
    verify_raw: str | None = None
    verify_name = plan.verify_header
    if verify_name and verify_value is not None:
        verify_raw = verify_value.strip(HEADER_SPACE)
        in_header(verify_name, check_text, verify_raw)
        verified = interpret_verify(record.verify_dialect, verify_raw, verify_name, notes)
    if record.extra_notes is not None:
        record.extra_notes(headers, limits, notes)
    return Forwarded(leaf, tuple(chain), verified, verify_raw, tuple(notes))


def _add_chain(
    record: Source,
    chain_name: str,
    chain_value: str,
    leaf: bytes | None,
    chain: list[bytes],
    limits: Limits,
    notes: list[str],
) -> bytes | None:
    """Add the chain header's certificates to ``chain``; the leaf, taken from the chain's
    head when the source says the proxy sends it there."""
    extra = in_header(chain_name, _decode_chain, record, chain_value, limits, notes)
    if leaf is None and record.leaf_from_chain and extra:
        # Passthrough mode sends only the whole chain as presented, leaf first.
        leaf, extra = extra[0], extra[1:]
        notes.append(f"took the leaf from {chain_name} ({record.leaf_from_chain})")
    elif leaf is None and extra:
        notes.append(f"{chain_name} ignored: it came without a certificate")
        extra = []
    if extra and leaf is not None and extra[0] == leaf:
        extra = extra[1:]
        notes.append(f"dropped the leaf repeated at the head of {chain_name}")
    chain.extend(extra)
    return leaf


def _decode_chain(record: Source, value: str, limits: Limits, notes: list[str]) -> list[bytes]:
    """A chain header: in its own encoding when the source has one, else the value's."""
    check_size(value, limits)
    if record.decode_chain is not None:
        return record.decode_chain(value, limits)
    leaf, rest = record.decode(value, limits, notes)
    return [] if leaf is None else [leaf, *rest]


def decode_header_value(
    source: str,
    value: str | bytes,
    *,
    max_header_bytes: int = 16384,
    max_chain_length: int = 8,
) -> tuple[bytes | None, tuple[bytes, ...]]:
    """One certificate-header value as ``source`` encodes it -> ``(leaf DER, chain DER)``.

    For ``explain --header VALUE --source S``: no trusted-proxy check, no other headers.
    ``wsgi-environ`` and ``asgi-tls`` take PEM text, as those servers hold it. Raises
    :class:`SourceError` on a bad value, ``ValueError`` on an unknown source.
    """
    record = source_named(source)
    limits = Limits(max_header_bytes, max_chain_length)
    text = as_text(value, "header value")
    check_size(text, limits)
    leaf, chain = record.decode(text, limits, [])
    check_chain_length(len(chain), limits)
    return leaf, tuple(chain)
