"""Errors edgepack raises on purpose. Each carries an exit code and a hint (the fix).

packager/cli/output.py turns any EdgepackError into one line on stderr: "edgepack: <message> (fix: <hint>)".
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # parity, latency budget, a device's self-test
EXIT_BAD_INPUT = 2  # bad input or usage
EXIT_PARTIAL = 3  # some devices of a fleet failed


def short(exc, limit: int = 300) -> str:
    """An exception's text on one line, cut at `limit` characters (with '...')."""
    text = " ".join(str(exc).split())
    return text[:limit] + ("..." if len(text) > limit else "")


class EdgepackError(Exception):
    """Base class: message says what failed and why; hint says how to fix it."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.one_line()

    def one_line(self) -> str:
        text = " ".join(self.message.split())
        if self.hint:
            text += f" (fix: {' '.join(self.hint.split())})"
        return text


class UsageError(EdgepackError):
    """Bad command-line usage."""


class ProfileError(EdgepackError):
    """Unknown profile, malformed profile file, invalid key or value."""


class SourceError(EdgepackError):
    """The model source cannot be loaded or does not fit."""


class DataError(EdgepackError):
    """Calibration / input .npz files that do not fit the model."""


class ConversionError(EdgepackError):
    """A converter or quantizer could not produce the target format."""


class BundleError(EdgepackError):
    """A bundle is unusable: missing/malformed manifest, hash mismatch, unsafe archive."""


class OutputError(EdgepackError):
    """The output location cannot be written."""


class InventoryError(EdgepackError):
    """Malformed inventory, host without address, --limit matching nothing."""


class CheckFailed(EdgepackError):
    """A check failed: parity, latency budget, a self-test. Exit 1."""

    exit_code = EXIT_CHECK_FAILED
