"""The tools behind ``policyengine test``, ``eval`` and ``export``: policy test files and
their coverage (:mod:`.policy_tests`), certificate inventory audits (:mod:`.inventory`) and
platform settings (:mod:`.export`).

Each returns data or text for ``cli/`` to write; none prints, picks an exit code or imports
``cli/`` or ``integrations/``.
"""
