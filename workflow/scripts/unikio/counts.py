"""How much work a row does: the study's counts, or the emulated ones (testbed.blk, testbed.net).

An emulated row, in the emulated testbed or a Linux guest under TCG, times an
emulator rather than the path the study measured, so by default it does only
enough to show that the path works. This is the one place that decides it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The keys testbed.blk and testbed.net override, per experiment.
EMULATED_KEYS = {"blk": ("reads", "repetitions"), "net": ("packets", "repetitions")}


def is_emulated(testbed: str, accel: str) -> bool:
    """A row in the emulated testbed, or a guest under TCG."""
    return testbed == "emulated" or accel == "tcg"


def settings(config: Mapping[str, Any], experiment: str, emulated: bool) -> dict[str, Any]:
    """The experiment's settings, with the emulated counts in place for an emulated row."""
    merged = dict(config[experiment])
    if emulated:
        merged.update({k: config["testbed"][experiment][k] for k in EMULATED_KEYS[experiment]})
    return merged
