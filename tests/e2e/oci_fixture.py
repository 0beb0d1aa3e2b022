"""A real OCI registry on loopback, and a fault-injecting proxy in front of it.

Registry: Debian's docker-registry (CNCF distribution 2.8) with a config in a
temporary directory, listening on 127.0.0.1, optionally with Basic auth
(htpasswd from apache2-utils); started here and stopped by its pid.

FaultProxy: a small threaded HTTP proxy that forwards to a registry and,
as a test tells it, answers 429/503 with Retry-After, drops a connection
mid-blob, serves other bytes or more bytes than declared, swaps the image
manifest, redirects, or rewrites headers.  Everything it saw is in `log`.
"""
import base64
import hashlib
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request

REGISTRY = shutil.which("docker-registry")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers (401 for an auth registry)
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def wait_port(port, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


def test_ca(tmp):
    """A test CA and a server certificate for 127.0.0.1 it signed:
    (ca.pem, cert.pem, key.pem)."""
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.utcnow()
    day = datetime.timedelta(days=1)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("nexus test CA")).issuer_name(name("nexus test CA"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - day)
          .not_valid_after(now + day)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(2).not_valid_before(now - day)
            .not_valid_after(now + day)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class Registry:
    def __init__(self, tmp, htpasswd=None, token=None, tls=None):
        self.dir = tmp
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        cfg = [
            "version: 0.1",
            "log: {level: error}",
            f"storage: {{filesystem: {{rootdirectory: {tmp / 'data'}}}, delete: {{enabled: true}}}}",
            f"http: {{addr: '127.0.0.1:{self.port}'"
            + (f", tls: {{certificate: {tls[0]}, key: {tls[1]}}}" if tls else "") + "}",
        ]
        if htpasswd:
            user, password = htpasswd
            pw = subprocess.run(["htpasswd", "-Bbn", user, password], check=True,
                                capture_output=True, text=True).stdout
            (tmp / "htpasswd").write_text(pw)
            cfg.append(f"auth: {{htpasswd: {{realm: test, path: {tmp / 'htpasswd'}}}}}")
        if token:
            cfg.append(f"auth: {{token: {{realm: '{token.realm}', service: {token.service}, "
                       f"issuer: {token.issuer}, rootcertbundle: {token.cert}}}}}")
        (tmp / "config.yml").write_text("\n".join(cfg) + "\n")
        self.log = open(tmp / "registry.log", "wb")
        self.proc = subprocess.Popen([REGISTRY, "serve", str(tmp / "config.yml")],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_http(f"http://{self.host}/v2/") if not tls else wait_port(self.port)
        except Exception:
            self.stop()
            raise

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
       "proxy-authorization", "proxy-authenticate"}


class FaultProxy:
    """Forwards to `upstream` ("127.0.0.1:port").  `faults` is a list of
    callables fault(handler, method, path) -> True when it answered the
    request itself; each is tried in order for every request."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.faults = []
        self.log = []   # (method, path, headers dict)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def body(self):
                if self.body_read:
                    return b""
                self.body_read = True
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def handle_any(self):
                self.body_read = False
                proxy.log.append((self.command, self.path, dict(self.headers)))
                for f in list(proxy.faults):
                    if f(self, self.command, self.path):
                        return
                self.forward()

            def forward(self, body=None, rewrite=None):
                if body is None:
                    body = self.body()
                c = http.client.HTTPConnection(proxy.upstream, timeout=60)
                hdrs = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                c.request(self.command, self.path, body=body, headers=hdrs)
                r = c.getresponse()
                data = r.read()
                if rewrite:
                    data, status, headers = rewrite(r.status, r.getheaders(), data)
                else:
                    status, headers = r.status, r.getheaders()
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                c.close()

            def answer(self, status, body=b"", headers=()):
                self.body()   # a request body left unread would be read as the next request
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = handle_any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def requests(self, method=None, contains=""):
        return [e for e in self.log if (method is None or e[0] == method) and contains in e[1]]


def once(fn):
    """A fault that fires on its first match only."""
    state = {"done": False}

    def f(h, method, path):
        if state["done"]:
            return False
        if fn(h, method, path):
            state["done"] = True
            return True
        return False
    return f


def artifact_manifest(bundle_root):
    """docs/FORMAT.md §8 rebuilt in Python from manifest.json alone: the
    (manifest bytes, config bytes) nexus push must produce."""
    def dumps(o):
        return json.dumps(o, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()

    mj = (bundle_root / "manifest.json").read_bytes()
    m = json.loads(mj)

    def media(p):
        if p.startswith("model/tokenizer/") or p.startswith("config/"):
            return "application/vnd.cncf.model.weight.config.v1.raw"
        if p.startswith("model/"):
            return "application/vnd.cncf.model.weight.v1.raw"
        if p in ("README.md", "LICENSE", "THIRD_PARTY_NOTICES"):
            return "application/vnd.cncf.model.doc.v1.raw"
        return "application/vnd.cncf.model.code.v1.raw"

    def desc(mt, digest, size, title):
        return {"mediaType": mt, "digest": digest, "size": size,
                "annotations": {"org.opencontainers.image.title": title,
                                "org.cncf.model.filepath": title}}

    layers = [desc("application/vnd.nexus.bundle.manifest.v1+json",
                   "sha256:" + hashlib.sha256(mj).hexdigest(), len(mj), "manifest.json")]
    layers += [desc(media(f["path"]), "sha256:" + f["sha256"], f["size_bytes"], f["path"])
               for f in m["files"]]
    md = m["model_metadata"]
    config = dumps({
        "descriptor": {"createdAt": m["build_timestamp"], "name": m["bundle_id"]},
        "config": {"architecture": md["architecture"], "format": md["format"].lower(),
                   "paramSize": md["parameters"], "quantization": md["quantization"]},
        "modelfs": {"type": "layers", "diffIds": [l["digest"] for l in layers]},
    })
    manifest = dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.cncf.model.manifest.v1+json",
        "config": {"mediaType": "application/vnd.cncf.model.config.v1+json",
                   "digest": "sha256:" + hashlib.sha256(config).hexdigest(), "size": len(config)},
        "layers": layers,
        "annotations": {"org.opencontainers.image.created": m["build_timestamp"]},
    })
    return manifest, config


class TokenService:
    """A test-only Bearer token service (distribution's token auth): checks
    Basic credentials, then answers a JWT (RS256, the signing certificate in
    x5c, the registry trusting it as its root) granting what the scope asks.
    `log` keeps (scope, had credentials) per request."""

    service, issuer = "nexus-test-registry", "nexus-test-issuer"

    def __init__(self, tmp, user, password):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID
        import datetime

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nexus test token signer")])
        now = datetime.datetime.utcnow()
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.key.public_key()).serial_number(1)
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .sign(self.key, hashes.SHA256()))
        self.cert = tmp / "token-signer.pem"
        self.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.der = cert.public_bytes(serialization.Encoding.DER)
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.log = []
        svc = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                scope = q.get("scope", [""])[0]
                svc.log.append((scope, self.headers.get("Authorization") is not None))
                if self.headers.get("Authorization") != svc.auth:
                    body, status = b'{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}', 401
                else:
                    body, status = json.dumps({"token": svc.jwt(scope), "expires_in": 300}).encode(), 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def jwt(self, scope):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        def b64(b):
            return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
        access = []
        parts = scope.split(":")
        if len(parts) == 3 and parts[0] == "repository":
            access.append({"type": "repository", "name": parts[1],
                           "actions": parts[2].split(",")})
        now = int(time.time())
        head = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self.der).decode()]}
        claims = {"iss": self.issuer, "sub": "ci", "aud": self.service, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(), "access": access}
        signing = b64(json.dumps(head).encode()) + "." + b64(json.dumps(claims).encode())
        sig = self.key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing + "." + b64(sig)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
