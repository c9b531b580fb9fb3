"""A small OCI distribution client for the device: standard library only, Python >= 3.8.

What a pull needs and nothing more: parse `REGISTRY/REPO:TAG` (or `@sha256:...`), fetch a manifest
and blobs over HTTPS with certificate and host name checks (`--plain-http` for a registry without
TLS, as oras does), basic and bearer-token auth (the distribution token flow) from a Docker-style
credentials file, resumable blob downloads (HTTP Range), and every blob checked against its digest
and size before anyone uses it. The media types of an edgepack bundle artifact (docs/SCALE.md)
live here so that the packager's publisher and the device agree on them.
"""
import base64
import hashlib
import http.client
import json
import os
import re
import ssl
import urllib.parse

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
ARTIFACT_TYPE = "application/vnd.edgepack.bundle.v1"
CONFIG_MEDIA_TYPE = "application/vnd.edgepack.manifest.v1+json"  # the config blob IS manifest.json
FILE_MEDIA_TYPES = {  # one layer per bundle file; the title annotation is its path in the bundle
    "model": "application/vnd.edgepack.model.v1",
    "vectors": "application/vnd.edgepack.vectors.v1+npz",
    "agent": "application/vnd.edgepack.agent.v1+python",
    "signature": "application/vnd.edgepack.signature.v1",
    "other": "application/vnd.edgepack.file.v1",
}
TITLE = "org.opencontainers.image.title"
RELEASE_ANNOTATION = "dev.edgepack.release-id"
TIMEOUT = 30.0
CHUNK = 1 << 20
RESUME_TRIES = 3

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPO = re.compile(r"^%s(?:/%s)*$" % (_COMPONENT, _COMPONENT))
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_REGISTRY = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(?::[0-9]{1,5})?$")


class RegistryError(Exception):
    """A registry answer we cannot use; `what` is one line for the user."""

    def __init__(self, what, status=None):
        Exception.__init__(self, what)
        self.what, self.status = what, status


def media_type_of(rel):
    """The layer media type of a bundle file (by where it lives in the bundle)."""
    if rel == "signature":
        return FILE_MEDIA_TYPES["signature"]
    if rel.startswith("model/"):
        return FILE_MEDIA_TYPES["model"]
    if rel.startswith("agent/"):
        return FILE_MEDIA_TYPES["agent"]
    if rel.endswith(".npz"):
        return FILE_MEDIA_TYPES["vectors"]
    return FILE_MEDIA_TYPES["other"]


def parse_ref(ref):
    """'host[:port]/repo/path:tag' or '...@sha256:hex' -> (registry, repo, tag or digest)."""
    if not isinstance(ref, str) or "/" not in ref:
        raise RegistryError("bad reference %r: expected REGISTRY/REPO:TAG (e.g. "
                            "registry.example.com:5000/cams/detector:v3)" % (ref,))
    registry, rest = ref.split("/", 1)
    if "@" in rest:
        repo, reference = rest.split("@", 1)
        ok = bool(_DIGEST.match(reference))
    else:
        repo, _, reference = rest.rpartition(":") if ":" in rest else (rest, "", "latest")
        ok = bool(_TAG.match(reference))
    if not _REGISTRY.match(registry) or not _REPO.match(repo) or not ok:
        raise RegistryError("bad reference %r: expected REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:"
                            "HEX, repository in lower case" % (ref,))
    return registry, repo, reference


def load_credentials(path, registry):
    """(user, password, token) for `registry` from a Docker-style config.json:
    {"auths": {"HOST:PORT": {"auth": base64(user:password)} | {"username", "password"} |
    {"registrytoken": TOKEN}}}. Missing file or entry: (None, None, None)."""
    if not path:
        return None, None, None
    try:
        with open(os.path.expanduser(path), "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except OSError as exc:
        raise RegistryError("cannot read the registry credentials file %s: %s" % (path, exc))
    except ValueError as exc:
        raise RegistryError("registry credentials file %s is not JSON: %s" % (path, exc))
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        raise RegistryError("registry credentials file %s has no \"auths\" object" % path)
    entry = None
    for key, value in auths.items():
        host = key.split("://", 1)[-1].rstrip("/").split("/", 1)[0]
        if host == registry and isinstance(value, dict):
            entry = value
            break
    if entry is None:
        return None, None, None
    if entry.get("registrytoken"):
        return None, None, str(entry["registrytoken"])
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            raise RegistryError("credentials for %s in %s: \"auth\" is not base64 of user:password"
                                % (registry, path))
        return user, password, None
    return entry.get("username"), entry.get("password"), None


def _challenge(header):
    """'Bearer realm="...",service="...",scope="..."' -> ('bearer', {realm, service, scope})."""
    scheme, _, rest = (header or "").strip().partition(" ")
    params = dict((k.lower(), v) for k, v in re.findall(r'(\w+)="([^"]*)"', rest))
    return scheme.lower(), params


class Registry(object):
    """One registry: HTTPS (verified) unless plain_http; basic or bearer auth as it asks."""

    def __init__(self, registry, plain_http=False, ca_file=None, credentials=None,
                 timeout=TIMEOUT):
        self.registry, self.plain_http, self.timeout = registry, plain_http, timeout
        self.user, self.password, self.token = load_credentials(credentials, registry)
        self.credentials = credentials
        self.auth_header = "Bearer " + self.token if self.token else None
        self.context = None
        if not plain_http:
            try:  # the system's CAs, plus --ca-file's (a blob redirect may go to a public host)
                self.context = ssl.create_default_context()
                if ca_file:
                    self.context.load_verify_locations(cafile=os.path.expanduser(ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise RegistryError("cannot load the CA file %s: %s" % (ca_file, exc))
        self.received = 0  # bytes of blob and manifest bodies read
        self._conn = None  # the kept-alive connection to the registry

    # -- HTTP
    def _connect(self, host):
        if self.plain_http:
            return http.client.HTTPConnection(host, timeout=self.timeout)
        return http.client.HTTPSConnection(host, timeout=self.timeout, context=self.context)

    def _open(self, method, url, headers, auth=True):
        """One request; returns (connection, response) with the body unread. The connection to
        the registry itself is kept open between requests (HTTP keep-alive: a bundle is ~20
        blobs); `release` gives it back."""
        parts = urllib.parse.urlsplit(url)
        path = parts.path + ("?" + parts.query if parts.query else "")
        hdrs = dict(headers)
        if auth and self.auth_header:
            hdrs["Authorization"] = self.auth_header
        mine = parts.netloc == self.registry
        for attempt in range(2):
            kept = mine and self._conn is not None
            conn = self._conn if kept else self._connect(parts.netloc)
            self._conn = None
            try:
                conn.request(method, path, headers=hdrs)
                resp = conn.getresponse()
                if mine:
                    self._conn = conn
                return conn, resp
            except ssl.SSLCertVerificationError as exc:
                conn.close()
                raise RegistryError("TLS certificate of %s not trusted: %s (pass the registry's "
                                    "CA with --ca-file, or --plain-http for a registry without TLS)"
                                    % (parts.netloc, exc.verify_message or exc))
            except ssl.SSLError as exc:
                conn.close()
                raise RegistryError("TLS with %s failed: %s (a registry without TLS needs "
                                    "--plain-http)" % (parts.netloc, exc))
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if kept and attempt == 0:
                    continue  # the server closed the kept connection: once more on a new one
                raise RegistryError("cannot reach registry %s: %s" % (parts.netloc, exc))

    def release(self, conn, resp):
        """Keep the registry's connection for the next request if its response was read to
        the end; close it otherwise (and any connection to another host)."""
        if conn is self._conn and resp is not None and resp.isclosed() and not resp.will_close:
            return
        if conn is self._conn:
            self._conn = None
        conn.close()

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method, path, headers=None, scope=None):
        """A request to this registry, answering one auth challenge and following redirects
        (never sending our credentials to another host). (connection, response), body unread."""
        url = "%s://%s%s" % ("http" if self.plain_http else "https", self.registry, path)
        headers = headers or {}
        for attempt in range(2):
            conn, resp = self._open(method, url, headers)
            if resp.status == 401 and attempt == 0:
                challenge = resp.getheader("WWW-Authenticate")
                _drain(resp)
                self.release(conn, resp)
                self._authenticate(challenge, scope)
                continue
            break
        hops = 0
        while resp.status in (301, 302, 303, 307, 308) and hops < 5:
            target = urllib.parse.urljoin(url, resp.getheader("Location") or "")
            _drain(resp)
            self.release(conn, resp)
            same = urllib.parse.urlsplit(target).netloc == self.registry
            conn, resp = self._open(method, target, headers, auth=same)
            url, hops = target, hops + 1
        return conn, resp

    def _authenticate(self, challenge, scope):
        scheme, params = _challenge(challenge)
        where = " in %s" % self.credentials if self.credentials else ""
        if scheme == "basic":
            if self.user is None:
                raise RegistryError("registry %s wants a user name and password and there are "
                                    "none for it%s (add them with --credentials FILE)"
                                    % (self.registry, where), 401)
            raw = ("%s:%s" % (self.user, self.password or "")).encode("utf-8")
            self.auth_header = "Basic " + base64.b64encode(raw).decode("ascii")
            return
        if scheme != "bearer" or not params.get("realm"):
            raise RegistryError("registry %s refused us (401) with an auth scheme we do not "
                                "speak: %r" % (self.registry, challenge), 401)
        query = {"service": params.get("service", "")}
        if params.get("scope") or scope:
            query["scope"] = params.get("scope") or scope
        url = params["realm"] + ("&" if "?" in params["realm"] else "?") + \
            urllib.parse.urlencode(query)
        headers = {}
        if self.user is not None:
            raw = ("%s:%s" % (self.user, self.password or "")).encode("utf-8")
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "https" and not self.plain_http:
            raise RegistryError("token service %s is not HTTPS: refusing to send credentials "
                                "(use --plain-http only for a registry without TLS)" % url)
        conn, resp = self._open("GET", url, headers, auth=False)
        try:
            body = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise RegistryError("reading a token from %s failed: %s" % (parts.netloc, exc))
        finally:
            self.release(conn, resp)
        if resp.status != 200:
            raise RegistryError("token service %s refused us (HTTP %d)%s" % (
                parts.netloc, resp.status, "" if self.user is not None else
                ": no credentials for %s%s" % (self.registry, where)), resp.status)
        try:
            data = json.loads(body.decode("utf-8"))
            token = data.get("token") or data.get("access_token")
        except (ValueError, UnicodeDecodeError, AttributeError):
            token = None
        if not token:
            raise RegistryError("token service %s answered without a token" % parts.netloc)
        self.auth_header = "Bearer " + token

    def _fail(self, resp, what):
        body = _drain(resp)[:2000]
        detail = ""
        try:
            errors = json.loads(body.decode("utf-8")).get("errors") or []
            detail = "; ".join("%s: %s" % (e.get("code"), e.get("message")) for e in errors[:2])
        except (ValueError, UnicodeDecodeError, AttributeError):
            pass
        hint = {401: " (check the credentials for %s)" % self.registry,
                403: " (these credentials may not read this repository)",
                404: " (is the tag published? `edgepack publish BUNDLE REF`)"}.get(resp.status, "")
        raise RegistryError("%s: HTTP %d%s%s" % (what, resp.status,
                                                 " (%s)" % detail if detail else "", hint),
                            resp.status)

    # -- the two things a pull reads
    def manifest(self, repo, reference):
        """The manifest's bytes and its digest, checked when the reference is a digest."""
        scope = "repository:%s:pull" % repo
        conn, resp = self.request("GET", "/v2/%s/manifests/%s" % (repo, reference),
                                  {"Accept": MANIFEST_MEDIA_TYPE}, scope)
        try:
            if resp.status != 200:
                self._fail(resp, "manifest %s/%s:%s" % (self.registry, repo, reference))
            body = resp.read(4 << 20)
        except (OSError, http.client.HTTPException) as exc:
            raise RegistryError("reading manifest %s:%s failed: %s" % (repo, reference, exc))
        finally:
            self.release(conn, resp)
        self.received += len(body)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError("manifest %s@%s: the registry sent content with digest %s"
                                % (repo, reference, digest))
        return body, digest

    def blob(self, repo, digest, size, dest, part):
        """Download blob `digest` (of `size` bytes) to `dest` through `part`, resuming a partial
        `part` with a Range request; `dest` appears only once size and sha256 match."""
        if not _DIGEST.match(digest or ""):
            raise RegistryError("layer digest %r is not sha256:HEX" % (digest,))
        tries = 0
        while True:
            have = os.path.getsize(part) if os.path.isfile(part) else 0
            if have > size:
                os.unlink(part)
                have = 0
            if have < size or size == 0:
                try:
                    self._fetch(repo, digest, part, have, size)
                except _Short as exc:
                    tries += 1
                    if tries >= RESUME_TRIES:
                        raise RegistryError("blob %s... truncated: got %d of %d bytes after %d "
                                            "tries (%s)" % (digest[:19], exc.got, size, tries,
                                                            exc.why))
                    continue
            got = os.path.getsize(part)
            if got != size:
                os.unlink(part)
                raise RegistryError("blob %s... is %d bytes, the manifest says %d (truncated or "
                                    "replaced on the registry)" % (digest[:19], got, size))
            actual = "sha256:" + _sha256(part)
            if actual != digest:
                os.unlink(part)
                raise RegistryError("blob %s... does not match its digest (got %s...): damaged "
                                    "on the registry or in transit" % (digest[:19], actual[:19]))
            os.rename(part, dest)
            return

    def _fetch(self, repo, digest, part, have, size):
        headers = {"Range": "bytes=%d-" % have} if have else {}
        conn, resp = self.request("GET", "/v2/%s/blobs/%s" % (repo, digest), headers,
                                  "repository:%s:pull" % repo)
        try:
            if resp.status == 416 and have:  # nothing past our partial: the size check decides
                _drain(resp)
                return
            if resp.status not in (200, 206):
                self._fail(resp, "blob %s... of %s" % (digest[:19], repo))
            mode = "ab" if resp.status == 206 and have else "wb"
            got = have if mode == "ab" else 0
            with open(part, mode) as f:
                while got < size:
                    try:
                        block = resp.read(min(CHUNK, size - got))
                    except (OSError, http.client.HTTPException) as exc:
                        raise _Short(got, str(exc) or type(exc).__name__)
                    if not block:
                        break
                    f.write(block)
                    got += len(block)
                    self.received += len(block)
            if got < size:
                raise _Short(got, "the connection ended early")
        finally:
            self.release(conn, resp)


class _Short(Exception):
    def __init__(self, got, why):
        Exception.__init__(self, why)
        self.got, self.why = got, why


def _drain(resp):
    """The rest of a response body we only look at for an error message (b"" if it broke)."""
    try:
        return resp.read(1 << 16)
    except (OSError, http.client.HTTPException):
        return b""


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(CHUNK)
            if not block:
                return h.hexdigest()
            h.update(block)

