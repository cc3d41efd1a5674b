"""A worker's objects and the garbage collector: what lives as long as the process is not walked.

Most of what a worker holds (modules, config, routes, metrics, pools) is made at start-up
and lives until it exits, yet a full collection walks all of it: measured at 55-70 ms a
pass, several passes a minute at saturation, each a pause of every request the worker has
(they were its p99). Frozen once start-up is over, they are left out of every collection;
a full one then takes a few milliseconds.

Requests free nearly all they make by reference counting (collections at saturation found
about one object in a thousand to be garbage), so the youngest generation is collected
every 10,000 objects instead of 700: the same garbage found, a tenth of the walking.
"""

from __future__ import annotations

import gc

YOUNG_OBJECTS = 10_000  # objects allocated (net of those freed) between collections of the youngest


def freeze_long_lived() -> None:
    """Collect what is garbage now, then freeze what is left out of later collections.

    Called when start-up is over and after a config swap: the old config's objects are
    unfrozen and collected first, so a reload leaks nothing (the one full pass it costs).
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_OBJECTS, *gc.get_threshold()[1:])
