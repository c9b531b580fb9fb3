"""A real OCI registry on 127.0.0.1 for the tests and the bench: Debian's `docker-registry` (the
CNCF distribution server), each with its own temp storage, free port, and optionally TLS with a
CA made here with openssl, htpasswd basic auth, or token auth with a token server started here
(JWTs signed with a key whose certificate the registry trusts). Stopped (by pid) at the end.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"


def skip_reason() -> str | None:
    if not os.path.exists(REGISTRY_BIN):
        return "docker-registry not installed (apt-get install docker-registry; scripts/setup.sh does it)"
    if not shutil.which("openssl"):
        return "openssl not found"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(*cmd):
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True)


def make_ca(folder: Path, name: str = "127.0.0.1") -> dict:
    """A self-signed CA and a server certificate for 127.0.0.1 signed by it."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = folder / "ca.key", folder / "ca.crt"
    key, csr, crt, ext = folder / "server.key", folder / "server.csr", folder / "server.crt", folder / "ext.cnf"
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
         "/CN=edgepack test CA", "-keyout", ca_key, "-out", ca_crt)
    _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", key,
         "-out", csr)
    ext.write_text(f"subjectAltName=IP:{name},DNS:localhost\nbasicConstraints=CA:FALSE\n")
    _run("openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
         "-days", "2", "-extfile", ext, "-out", crt)
    return {"ca": ca_crt, "cert": crt, "key": key}


class TokenServer:
    """The distribution token flow: GET /token?service&scope with basic auth -> a JWT (RS256,
    x5c header with the signing certificate, which the registry's rootcertbundle holds)."""

    def __init__(self, folder: Path, users: dict, tls: dict):
        from cryptography.hazmat.primitives import serialization

        self.folder, self.users = folder, users
        folder.mkdir(parents=True, exist_ok=True)
        self.key_path, self.cert_path = folder / "token.key", folder / "token.crt"
        _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=edgepack test token issuer", "-keyout", self.key_path, "-out", self.cert_path)
        self.key = serialization.load_pem_private_key(self.key_path.read_bytes(), None)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert_path), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.port = free_port()
        self.issued = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                server.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        if tls:
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls["cert"]), str(tls["key"]))
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def realm(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/token"

    def handle(self, req):
        import urllib.parse
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        q = urllib.parse.parse_qs(urllib.parse.urlsplit(req.path).query)
        auth = req.headers.get("Authorization", "")
        user = None
        if auth.startswith("Basic "):
            u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
            if self.users.get(u) == p:
                user = u
        if user is None:
            req.send_response(401)
            req.end_headers()
            return
        access = []
        for scope in q.get("scope", []):
            kind, name, actions = scope.split(":", 2)
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {"iss": "edgepack-test", "sub": user, "aud": q.get("service", [""])[0],
                  "exp": now + 300, "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(),
                  "access": access}
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        b64 = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=")  # noqa: E731
        signing_input = b64(header) + b"." + b64(claims)
        sig = self.key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        token = (signing_input + b"." + base64.urlsafe_b64encode(sig).rstrip(b"=")).decode()
        self.issued += 1
        body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
        req.send_response(200)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Registry:
    """docker-registry serve CONFIG on 127.0.0.1:PORT. auth: None | "basic" | "token"."""

    def __init__(self, base: Path, tls: bool = False, auth: str | None = None,
                 users: dict | None = None):
        self.base, self.tls, self.auth = base, tls, auth
        self.users = users or {"fleet": "s3cret-pull", "ci": "s3cret-push"}
        self.port = free_port()
        self.storage = base / "storage"
        self.proc: subprocess.Popen | None = None
        self.token: TokenServer | None = None
        self.certs: dict = {}

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "Registry":
        self.base.mkdir(parents=True, exist_ok=True)
        self.storage.mkdir(exist_ok=True)
        http = {"addr": self.host, "headers": {"X-Content-Type-Options": ["nosniff"]}}
        if self.tls:
            self.certs = make_ca(self.base / "tls")
            http["tls"] = {"certificate": str(self.certs["cert"]), "key": str(self.certs["key"])}
        config = {"version": 0.1, "log": {"level": "warn", "accesslog": {"disabled": True}},
                  "storage": {"filesystem": {"rootdirectory": str(self.storage)},
                              "delete": {"enabled": True}, "maintenance": {"uploadpurging": {"enabled": False}}},
                  "http": http}
        if self.auth == "basic":
            lines = [_run("htpasswd", "-Bbn", u, p).stdout.strip() for u, p in self.users.items()]
            (self.base / "htpasswd").write_text("\n".join(lines) + "\n")
            config["auth"] = {"htpasswd": {"realm": "edgepack-test", "path": str(self.base / "htpasswd")}}
        elif self.auth == "token":
            self.token = TokenServer(self.base / "token", self.users, self.certs if self.tls else {})
            config["auth"] = {"token": {"realm": self.token.realm, "service": "edgepack-test-registry",
                                        "issuer": "edgepack-test",
                                        "rootcertbundle": str(self.token.cert_path)}}
        (self.base / "config.yml").write_text(json.dumps(config))  # JSON is YAML
        self.log = open(self.base / "registry.log", "wb")
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(self.base / "config.yml")],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {(self.base / 'registry.log').read_text()[-800:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("docker-registry did not listen within 20 s")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        if self.token:
            self.token.stop()
            self.token = None

    def credentials(self, path: Path, user: str = "fleet", password: str | None = None) -> Path:
        """A Docker-style config.json for this registry."""
        pw = self.users[user] if password is None else password
        path.write_text(json.dumps({"auths": {self.host: {
            "auth": base64.b64encode(f"{user}:{pw}".encode()).decode()}}}))
        return path

    def blob_file(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob (to damage it in a test)."""
        hexd = digest.split(":", 1)[1]
        return self.storage / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexd[:2] / hexd / "data"


class CuttingProxy:
    """127.0.0.1:PORT -> the registry, cutting the first `cuts` responses that carry more than
    `after` bytes (a link that dies mid-blob), then passing everything through."""

    def __init__(self, target_port: int, after: int, cuts: int = 1):
        self.target, self.after, self.cuts = target_port, after, cuts
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.cut = 0
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self._stop:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._pair, args=(client,), daemon=True).start()

    def _pair(self, client):
        upstream = socket.create_connection(("127.0.0.1", self.target))

        def up():
            try:
                while True:
                    data = client.recv(65536)
                    if not data:
                        break
                    upstream.sendall(data)
            except OSError:
                pass
        threading.Thread(target=up, daemon=True).start()
        sent = 0
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                if self.cut < self.cuts and sent + len(data) > self.after:
                    client.sendall(data[:max(0, self.after - sent)])
                    self.cut += 1
                    break
                client.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def stop(self):
        self._stop = True
        self.sock.close()
