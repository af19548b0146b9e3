"""Evaluation: the compiled policy and the one decision procedure.

``context`` and ``attributes`` (how each name of the vocabulary is read from a request),
``compiler`` (a checked expression -> closures), ``index`` (the rule index), ``engine``
(``Policy``: the decision procedure), ``recording`` (the plain and tracing records it
decides with), ``trace`` and ``explain`` (the explain trace and the facts shown),
``decision`` (``Decision``).

May import: ``language/``, ``request/`` and the shared leaves. Must not import: ``load/``,
``integrations/``, ``tooling/``, ``cli/``.
"""
