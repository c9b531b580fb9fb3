"""FleetOptions: validated once, every bad value in the one error."""
from __future__ import annotations

import dataclasses

import pytest

from packager.errors import UsageError
from packager.fleet import FleetOptions


def test_bad_options_are_one_usage_error():
    with pytest.raises(UsageError) as exc:
        FleetOptions(forks=0)
    assert exc.value.message == "--forks must be >= 1, got 0" and exc.value.hint == "pass --forks 16"
    with pytest.raises(UsageError) as exc:
        FleetOptions(forks=0, canary=-1, max_fail=150)
    assert exc.value.message == ("--forks must be >= 1, got 0; --canary must be >= 0, got -1; "
                                 "--max-fail is a percentage 0..100, got 150")
    assert exc.value.exit_code == 2
    with pytest.raises(UsageError, match="--forks"):
        FleetOptions(forks="4")


def test_options_are_frozen_once_valid():
    o = FleetOptions(canary=1, max_fail=0)
    assert (o.forks, o.canary, o.max_fail) == (16, 1, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.forks = 0
