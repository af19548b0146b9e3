"use strict";
// The upstream app behind Envoy, nginx and Caddy in tests/e2e/test_serve_proxies.py: an app
// in another language than the server's, with no certificate code at all, as docs/server.md
// describes. It answers every request with 200 and a JSON body of what the proxy passed on:
//
//   {"app": "echo", "method": "GET", "path": "/orders?id=7",
//    "identity": {"x-client-principal": ["orders-client"], ...},
//    "certificate": {"x-ssl-client-cert": ["..."], ...}}
//
// "identity": every X-Client-Principal, X-Client-Groups and X-Client-Roles it received, in
// either spelling (X_Client_Roles reaches a CGI or WSGI app as the same header);
// "certificate": every header whose name says it carries a certificate or its verification.
// Each value is a list, one entry per header line as received (rawHeaders): a header the
// proxy appended to instead of replacing shows as two entries.
// It also writes one JSON line per request to stdout, so a test can tell whether a request
// reached it at all.
//
// Usage: node echo.js PORT (listens on 127.0.0.1); only the built-in http module.

const http = require("http");

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  process.stderr.write("usage: node echo.js PORT\n");
  process.exit(2);
}

const IDENTITY = /^x[-_]client[-_](principal|groups|roles)$/;
const CERTIFICATE = /cert|ssl|verify|x[-_]forwarded[-_]client/;

function collect(rawHeaders) {
  const identity = {};
  const certificate = {};
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i].toLowerCase();
    const value = rawHeaders[i + 1];
    const into = IDENTITY.test(name) ? identity : CERTIFICATE.test(name) ? certificate : null;
    if (into !== null) {
      (into[name] = into[name] || []).push(value);
    }
  }
  return { identity, certificate };
}

const server = http.createServer((req, res) => {
  req.resume(); // read (and drop) the body before answering
  req.on("end", () => {
    const seen = { app: "echo", method: req.method, path: req.url, ...collect(req.rawHeaders) };
    const body = JSON.stringify(seen);
    process.stdout.write(body + "\n");
    res.writeHead(200, {
      "Content-Type": "application/json",
      "Content-Length": Buffer.byteLength(body),
    });
    res.end(body);
  });
});

server.keepAliveTimeout = 30000;
server.listen(port, "127.0.0.1", () => {
  process.stderr.write(`echo listening on 127.0.0.1:${port}\n`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close();
    process.exit(0);
  });
}
