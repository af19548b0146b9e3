"""The policy language: grammar, syntax tree, parser, vocabulary, checker and globs.

Text in, a checked syntax tree out; nothing here reads a certificate or a request. Must
not import: ``cryptography``, anything of ``policyengine.request``, ``evaluation``,
``load`` or above (``tests/test_architecture.py`` checks it in a fresh interpreter).
"""
