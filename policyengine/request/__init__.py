"""The request side: what arrives with a request, read without any knowledge of policies.

``der`` (the one DER/PEM/base64 reader), ``certificate`` with ``keys``, ``extensions`` and
``lazy`` (the certificate's facts, each read on first use), ``trust``, ``revocation`` and
``constraints`` (chains, CRLs, name constraints), ``sources/`` (one frozen Source record per
proxy, and reading a request's headers), ``incoming`` (the ``Request`` value).

May import: cryptography and the shared leaves (``errors``, ``span``, ``values``,
``oids``, ``caches``). Must not import: ``language/``, ``evaluation/``, ``load/`` or
anything above.
"""
