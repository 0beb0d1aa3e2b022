"""A real OCI registry on loopback, and a fault-injecting proxy in front of it.

Registry: Debian's docker-registry (CNCF distribution 2.8) with a config in a
temporary directory, listening on 127.0.0.1, optionally with Basic auth
(htpasswd from apache2-utils); started here and stopped by its pid.

FaultProxy: a small threaded HTTP proxy that forwards to a registry and,
as a test tells it, answers 429/503 with Retry-After, drops a connection
mid-blob, serves other bytes or more bytes than declared, swaps the image
manifest, redirects, or rewrites headers.  Everything it saw is in `log`.
"""
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


class Registry:
    def __init__(self, tmp, htpasswd=None):
        self.dir = tmp
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        cfg = [
            "version: 0.1",
            "log: {level: error}",
            f"storage: {{filesystem: {{rootdirectory: {tmp / 'data'}}}, delete: {{enabled: true}}}}",
            f"http: {{addr: '127.0.0.1:{self.port}'}}",
        ]
        if htpasswd:
            user, password = htpasswd
            pw = subprocess.run(["htpasswd", "-Bbn", user, password], check=True,
                                capture_output=True, text=True).stdout
            (tmp / "htpasswd").write_text(pw)
            cfg.append(f"auth: {{htpasswd: {{realm: test, path: {tmp / 'htpasswd'}}}}}")
        (tmp / "config.yml").write_text("\n".join(cfg) + "\n")
        self.log = open(tmp / "registry.log", "wb")
        self.proc = subprocess.Popen([REGISTRY, "serve", str(tmp / "config.yml")],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_http(f"http://{self.host}/v2/")
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
        if p in ("README.md", "LICENSE"):
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
