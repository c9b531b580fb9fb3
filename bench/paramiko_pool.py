"""The bare peer for item 4: a paramiko thread pool doing only upload + hash check.

    python bench/paramiko_pool.py HOSTS.json BUNDLE --forks N

HOSTS.json: [{"name", "host", "port", "user", "key", "root"}], plus "known_hosts" per entry.
Per device: connect (strict host keys), `sha256sum -c` of the bundle's files in
<root>/<release id>; if every file is already there and intact, stop (unchanged re-push);
otherwise SFTP-put every file and check the hashes again. Prints JSON: per-device seconds, files and
bytes uploaded, and whether the device was unchanged.
"""
import hashlib
import json
import os
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def sums_of(bundle):
    lines, files = [], []
    for dirpath, _, names in os.walk(bundle):
        for n in sorted(names):
            full = os.path.join(dirpath, n)
            rel = os.path.relpath(full, bundle)
            h = hashlib.sha256()
            with open(full, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            lines.append("%s  %s\n" % (h.hexdigest(), rel))
            files.append(rel)
    return "".join(lines), files


def run(client, cmd, stdin_text=None, timeout=120):
    chan = client.get_transport().open_session(timeout=timeout)
    chan.settimeout(timeout)
    chan.exec_command(cmd)
    if stdin_text is not None:
        chan.sendall(stdin_text.encode())
        chan.shutdown_write()
    out = b""
    while True:
        data = chan.recv(65536)
        if not data:
            break
        out += data
    return chan.recv_exit_status(), out.decode(errors="replace")


def push_one(h, bundle, rid, sums, files):
    import paramiko
    t0 = time.perf_counter()
    res = {"name": h["name"], "ok": False, "unchanged": False, "files": 0, "bytes": 0}
    client = paramiko.SSHClient()
    client.load_host_keys(h["known_hosts"])
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(h["host"], port=h["port"], username=h["user"], key_filename=h["key"],
                       look_for_keys=False, allow_agent=False, timeout=10)
        dest = "%s/%s" % (h["root"], rid)
        check = "cd %s 2>/dev/null && sha256sum -c --quiet --status -" % shlex.quote(dest)
        rc, _ = run(client, check, sums)
        if rc == 0:
            res.update(ok=True, unchanged=True)
            return res
        dirs = sorted({os.path.dirname(f) for f in files if os.path.dirname(f)})
        run(client, "mkdir -p " + " ".join(shlex.quote(dest + "/" + d) for d in [""] + dirs))
        sftp = client.open_sftp()
        for rel in files:
            local = os.path.join(bundle, rel)
            sftp.put(local, dest + "/" + rel)
            res["files"] += 1
            res["bytes"] += os.path.getsize(local)
        sftp.close()
        rc, out = run(client, check, sums)
        res["ok"] = rc == 0
        if rc:
            res["error"] = out[-300:]
    except Exception as exc:
        res["error"] = "%s: %s" % (type(exc).__name__, exc)
    finally:
        client.close()
        res["seconds"] = time.perf_counter() - t0
    return res


def main(argv):
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("hosts")
    p.add_argument("bundle")
    p.add_argument("--forks", type=int, default=16)
    a = p.parse_args(argv)
    with open(a.hosts) as f:
        hosts = json.load(f)
    t0 = time.perf_counter()
    sums, files = sums_of(a.bundle)
    with open(os.path.join(a.bundle, "manifest.json"), "rb") as f:
        rid = hashlib.sha256(f.read()).hexdigest()
    with ThreadPoolExecutor(a.forks) as pool:
        results = list(pool.map(lambda h: push_one(h, a.bundle, rid, sums, files), hosts))
    out = {"seconds": time.perf_counter() - t0, "devices": results,
           "ok": sum(r["ok"] for r in results), "bytes": sum(r["bytes"] for r in results)}
    print(json.dumps(out))
    return 0 if out["ok"] == len(hosts) else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
