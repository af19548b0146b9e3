"""The source registry: one record per source, and no source named anywhere else.

What one proxy needs (headers, encodings, verify dialect, default trusted proxies, notes
and hints) lives in its Source record; the rest of the library asks the record. These
tests keep it that way: no comparison of a source with a string literal outside
``request/sources/``, and ``request/der.py`` free of cryptography.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from policyengine.request.sources import (
    SOURCES,
    Source,
    SourceConfig,
    default_header_names,
    default_trusted_proxies,
    source_named,
)

PACKAGE = Path(__file__).resolve().parent.parent / "policyengine"
SOURCE_PACKAGE = PACKAGE / "request" / "sources"

_LITERAL = r"""(?:"[^"\n]*"|'[^'\n]*')"""
_COMPARISON = re.compile(
    rf"""\bsource\s*(?:==|!=)\s*{_LITERAL}"""
    rf"""|{_LITERAL}\s*(?:==|!=)\s*[\w.]*\bsource\b"""
    rf"""|\bsource\s+(?:not\s+)?in\s+[(\[{{]\s*{_LITERAL}"""
)


def test_no_source_is_compared_with_a_literal_outside_the_source_modules() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if SOURCE_PACKAGE in path.parents:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _COMPARISON.search(line):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert found == []


@pytest.mark.parametrize(
    "line",
    [
        'if config.source == "azure":',
        "if source != 'nginx':",
        'if source in ("rfc9440", "gcp"):',
        'if "asgi-tls" == config.source:',
        'context = scope if config.source == "asgi-tls" else environ',
    ],
)
def test_the_check_sees_a_comparison(line: str) -> None:
    assert _COMPARISON.search(line)


@pytest.mark.parametrize("name", SOURCES)
def test_each_source_is_one_frozen_record(name: str) -> None:
    record = source_named(name)
    assert isinstance(record, Source)
    assert record.name == name
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.name = "other"  # type: ignore[misc]
    assert default_header_names(name) == (
        record.header,
        record.chain_header,
        record.verify_header,
    )
    assert default_trusted_proxies(name) == record.trusted_proxies
    assert SourceConfig(source=name).record is record


def test_an_unknown_source_names_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown certificate source 'squid'; expected one of"):
        source_named("squid")


def test_the_der_reader_imports_no_cryptography() -> None:
    """Read from its source: importing it loads the package, which loads cryptography."""
    tree = ast.parse((PACKAGE / "request" / "der.py").read_text(encoding="utf-8"))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(name.split(".")[0] == "cryptography" for name in imported)
    # the leaves only: the errors, and the one cache type its name tables are
    ours = {name for name in imported if name.startswith("policyengine")}
    assert ours == {"policyengine.errors", "policyengine.caches"}


def _having(flag: str) -> set[str]:
    return {name for name in SOURCES if getattr(source_named(name), flag)}


def test_what_each_record_says_for_the_rest_of_the_library() -> None:
    """The answers the loader, lint, the engine and export used to work out from names."""
    assert _having("renegotiates") == {"azure"}
    assert _having("anywhere_hint") == {"azure"}
    assert _having("read_direct") == {"wsgi-environ", "asgi-tls"}
    assert _having("reads_scope") == {"asgi-tls"}
    assert _having("chain_instances_joined") == {"rfc9440"}
    assert _having("leaf_from_chain") == {"aws-alb"}
    assert _having("absent_note") == {"cloudflare"}
    assert _having("extra_notes") == {"gcp"}
    assert set(SOURCES) - _having("keep_whole") == {"gcp", "wsgi-environ", "asgi-tls"}
    fed = {name for name in SOURCES if "nginx" in source_named(name).fed_by}
    assert fed == {"nginx", "apache", "aws-alb", "azure", "auto"}
    caddy_fed = {name for name in SOURCES if "caddy" in source_named(name).fed_by}
    assert caddy_fed == {"caddy", "cloudflare", "azure", "haproxy", "auto"}
    traefik_fed = {name for name in SOURCES if "traefik" in source_named(name).fed_by}
    assert traefik_fed == {"traefik", "auto"}
    verify_fed = {name for name in SOURCES if "nginx" in source_named(name).verify_fed_by}
    assert verify_fed == {"nginx", "apache"}
    native = {
        name: source_named(name).native_to for name in SOURCES if source_named(name).native_to
    }
    assert native == {
        "azure": frozenset({"app-service"}),
        "nginx": frozenset({"nginx"}),
        "caddy": frozenset({"caddy"}),
        "traefik": frozenset({"traefik"}),
        "envoy": frozenset({"envoy"}),  # the server reads XFCC from Envoy's check request
    }


def test_the_record_picks_what_a_direct_source_reads() -> None:
    environ, scope = {"wsgi": 1}, {"type": "http"}
    assert source_named("asgi-tls").context(environ, scope) is scope
    for name in SOURCES:
        if name != "asgi-tls":
            assert source_named(name).context(environ, scope) is environ
