"""Headless Chromium for the report tests: Debian's `chromium` (scripts/setup.sh installs it),
started with a fresh profile and no background networking. A page's console messages come
back from `--enable-logging=stderr --v=0` as `CONSOLE` lines (Chromium logs console.error,
console.log and uncaught exceptions alike there), the DOM after the scripts ran from
`--dump-dom`, and a PNG from `--screenshot`."""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-quic", "--enable-logging=stderr", "--v=0"]
CONSOLE = re.compile(r"CONSOLE[:(]\d*\)?\]?\s*(.*)")


def chromium(url: str, *extra: str, timeout: float = 90) -> tuple[str, list]:
    """(stdout, console lines) of one headless run on `url`."""
    if CHROMIUM is None:
        raise RuntimeError("chromium not installed")
    with tempfile.TemporaryDirectory(prefix="edgepack-chromium-") as profile:
        r = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, url],
                           capture_output=True, text=True, timeout=timeout)
    console = [m.group(1) for line in r.stderr.splitlines() if (m := CONSOLE.search(line))]
    return r.stdout, console


def dump_dom(url: str) -> tuple[str, list]:
    return chromium(url, "--dump-dom")


def screenshot(url: str, png: Path, width: int = 1280, height: int = 1600) -> list:
    png.parent.mkdir(parents=True, exist_ok=True)
    _, console = chromium(url, f"--screenshot={png}", f"--window-size={width},{height}",
                          "--hide-scrollbars")
    return console


def artifacts_dir() -> Path:
    """tests/report/artifacts (git-ignored): screenshots kept after a run."""
    d = Path(__file__).resolve().parent / "report" / "artifacts"
    d.mkdir(parents=True, exist_ok=True)
    return d
