"""The docs stay true: every attribute is documented, and every console example is real.

Console examples (```console blocks whose first line is `$ policyengine ...`) are run from
the project root and their output compared with the text in the docs. After an intended
change of output, regenerate them with ``UPDATE_DOCS=1 pytest tests/test_docs.py``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from policyengine.language.parser import KEYWORDS
from policyengine.language.vocabulary import VOCABULARY

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```console\n\$ (?P<command>[^\n]+)\n(?P<output>.*?)```", re.S)
EXCERPT = re.compile(
    r"<!-- an excerpt of `(?P<command>policyengine [^`]+)` -->\n```\w*\n(?P<output>.*?)```", re.S
)
"""A block of lines cut from a long output (an Envoy bootstrap): they must come in it as
they stand, in one piece."""


def _examples() -> list[tuple[Path, str, str]]:
    found = []
    for path in DOCS:
        for match in BLOCK.finditer(path.read_text()):
            found.append((path, match.group("command"), match.group("output")))
    return found


def _run(command: str) -> str:
    argv = shlex.split(command)
    assert argv[0] == "policyengine", command
    result = subprocess.run(
        [sys.executable, "-m", "policyengine", *argv[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        timeout=60,
    )
    return result.stdout


@pytest.mark.parametrize(
    ("path", "command", "expected"),
    _examples(),
    ids=[f"{p.name}:{c[:60]}" for p, c, _ in _examples()],
)
def test_console_example_is_real_output(path: Path, command: str, expected: str) -> None:
    actual = _run(command)
    if os.environ.get("UPDATE_DOCS") == "1" and actual != expected:
        text = path.read_text()
        path.write_text(text.replace(f"$ {command}\n{expected}", f"$ {command}\n{actual}", 1))
        return
    assert actual == expected


def _excerpts() -> list[tuple[Path, str, str]]:
    return [
        (path, match.group("command"), match.group("output"))
        for path in DOCS
        for match in EXCERPT.finditer(path.read_text())
    ]


@pytest.mark.parametrize(
    ("path", "command", "excerpt"),
    _excerpts(),
    ids=[f"{p.name}:{c[:60]}" for p, c, _ in _excerpts()],
)
def test_an_excerpt_is_cut_from_the_real_output(path: Path, command: str, excerpt: str) -> None:
    assert excerpt in _run(command)


def test_docs_have_console_examples_of_every_command() -> None:
    commands = {shlex.split(c)[1] for _, c, _ in _examples()}
    assert {"explain", "check", "inspect", "test", "eval", "export"} <= commands


def test_every_attribute_is_documented_with_its_example() -> None:
    language = (ROOT / "docs" / "language.md").read_text()
    rows = [line for line in language.splitlines() if line.startswith("| `")]
    chain_facts = next(line for line in language.splitlines() if line.startswith("Chain facts:"))
    for name, attribute in VOCABULARY.items():
        if name.startswith(("chain.root.", "chain.issuer.")):
            member, fact = name.split(".", 2)[1], name.split(".", 2)[2]
            assert any(f"`chain.{member}.*` |" in row for row in rows), name
            assert f"`{fact}`" in chain_facts, f"{fact} is missing from the chain facts"
            continue
        assert any(f"`{name}` |" in row for row in rows), f"{name} is missing from docs/language.md"
        if name.startswith("issuer."):
            continue  # the issuer's examples are the subject's, as the docs say
        assert f"`{attribute.example}`" in language, f"the example of {name} is not shown"


def test_every_operator_and_keyword_is_documented() -> None:
    language = (ROOT / "docs" / "language.md").read_text()
    for word in [*KEYWORDS, "==", "!=", "<", "<=", ">", ">="]:
        assert f"`{word}" in language or f" {word} " in language, word


def test_readme_opens_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    first = re.search(r"```(?:bash|sh|shell|console)?\n(.*?)```", readme, re.S)
    assert first is not None
    commands = [line.strip() for line in first.group(1).splitlines() if line.strip()]
    assert commands == [
        "pip install -e . && policyengine explain policies/partner-api.yaml "
        "--cert policies/certs/partner.pem --path /orders",
        "scripts/test",
    ]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.rstrip().endswith("\nscripts/test")


def test_the_readme_policy_is_the_shipped_file_the_first_command_uses() -> None:
    """Copied from the README, the policy admits policies/certs/partner.pem as the first
    command shows: it is policies/partner-api.yaml less its opening comments and description."""
    readme = (ROOT / "README.md").read_text()
    snippet = re.search(r"```yaml\n(policy: partner-api\n.*?)```", readme, re.S)
    assert snippet is not None
    shipped = (POLICIES / "partner-api.yaml").read_text().splitlines(keepends=True)
    body = [ln for ln in shipped if not ln.startswith(("#", "description:"))]
    assert snippet.group(1) == "".join(body)


def test_the_cli_synopsis_names_every_command_and_option() -> None:
    """docs/cli.md opens with one synopsis line per command: each names every option."""
    import argparse

    from policyengine.cli import build_parser

    cli = (ROOT / "docs" / "cli.md").read_text()
    synopsis = re.search(r"```text\n(policyengine explain.*?)```", cli, re.S)
    assert synopsis is not None
    by_command: dict[str, str] = {}
    for line in synopsis.group(1).splitlines():
        if line.startswith("policyengine "):
            command = line.split()[1]
            by_command[command] = line
        else:  # a continuation line of the command above
            by_command[command] += line
    parser = build_parser()
    subcommands = next(
        a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
    ).choices
    assert set(subcommands) <= set(by_command)
    for name, subparser in subcommands.items():
        for action in subparser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"[{option}" in by_command[name] or f" {option}" in by_command[name], (
                        name,
                        option,
                    )


@pytest.mark.parametrize("path", [p for p in DOCS if "```pycon\n" in p.read_text()], ids=str)
def test_python_examples_are_real_output(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ```pycon block of a page, run in order as one doctest from the project root."""
    import doctest

    blocks = re.findall(r"```pycon\n(.*?)```", path.read_text(), re.S)
    monkeypatch.chdir(ROOT)
    test = doctest.DocTestParser().get_doctest("".join(blocks), {}, path.name, str(path), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.failures == 0, f"{runner.failures} example(s) of {path.name} differ (above)"
