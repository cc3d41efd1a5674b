"""Identifiers for requests and reservations: unique across processes, and cheap to make.

A random prefix per process and a counter: 32 hex characters like a UUID, without a
system call and a UUID object per request.
"""

from __future__ import annotations

import itertools
import os

_prefix = os.urandom(8).hex()
_counter = itertools.count(1)


def new_id() -> str:
    return f"{_prefix}{next(_counter):016x}"


def _reseed() -> None:
    # A forked worker must not repeat its parent's ids.
    global _prefix, _counter
    _prefix, _counter = os.urandom(8).hex(), itertools.count(1)


os.register_at_fork(after_in_child=_reseed)
