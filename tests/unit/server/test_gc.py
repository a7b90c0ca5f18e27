"""The server's collector settings (server/_gc.py)."""

from __future__ import annotations

import gc

from server import _gc


def test_tuning_collects_the_young_generation_less_often() -> None:
    before = gc.get_threshold()
    try:
        _gc.tune()
        young, middle, old = gc.get_threshold()
        assert young >= 50 * before[0]
        assert (middle, old) == _gc.THRESHOLDS[1:]
    finally:
        gc.set_threshold(*before)
