"""Loading: a policy file -> a compiled Policy, once, at start-up.

``document`` (with ``yaml_reader`` and ``schema``) turns the file into plain data that
knows where each value was written; ``loader`` runs the pipeline (parse, check, compile,
trust, lint) and builds the engine's and the request side's objects; ``lint`` judges the
checked rules. The only package that imports yaml and jsonschema.

May import: language/, evaluation/, request/. Must not import: integrations/, tooling/,
cli/.
"""
