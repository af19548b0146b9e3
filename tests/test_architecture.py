"""The layout's promises, checked: which parts of the package load which."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module",
    ["policyengine.language", "policyengine.language.parser", "policyengine.language.checker"],
)
def test_the_language_loads_neither_cryptography_nor_the_request_side(module: str) -> None:
    """Parsing and checking a policy needs no certificate code: importing the language, in
    a fresh interpreter, loads no ``cryptography`` and nothing of ``policyengine.request``
    or ``policyengine.evaluation``."""
    probe = f"import json, sys, {module}\nprint(json.dumps(sorted(sys.modules)))\n"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = json.loads(result.stdout)
    assert module in loaded
    forbidden = ("cryptography", "policyengine.request", "policyengine.evaluation")
    assert [m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden)] == []
