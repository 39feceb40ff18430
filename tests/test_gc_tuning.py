"""A serving process tunes its garbage collector once it is built."""

from __future__ import annotations

import gc

from tidings.app import GC_THRESHOLDS, settle_gc


def test_settling_freezes_what_exists_and_collects_young_objects_less_often() -> None:
    thresholds = gc.get_threshold()
    try:
        settle_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] > thresholds[0]
        # Everything alive now (modules, the app) is out of every collection.
        assert gc.get_freeze_count() > 0
        assert gc.get_count()[0] < 100
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
