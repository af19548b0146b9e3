"""``policyengine serve``: the decision server a proxy asks about every request.

- :mod:`~policyengine.server.authorizer`: the verdicts, by policy name (no web library);
- :mod:`~policyengine.server.http`: the HTTP authorizer (a plain ASGI application) for
  nginx ``auth_request``, Caddy ``forward_auth``, Traefik ``forwardAuth`` and Envoy's HTTP
  ext_authz;
- :mod:`~policyengine.server.grpc`: Envoy's ext_authz ``Authorization/Check`` over gRPC;
- :mod:`~policyengine.server.metrics`: ``/metrics`` in Prometheus' format;
- :mod:`~policyengine.server.run`: uvicorn and grpcio in one event loop per worker, the
  signals, the worker processes.

It sits above ``integrations/`` (whose decision log, reloading, refusal sentences and
identity headers it uses) and beside ``tooling/``; only ``cli/`` imports it. Its libraries
are the ``server`` extra: ``pip install 'policyengine[server]'``.
"""
