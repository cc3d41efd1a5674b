"""Specifications of a worker's heap: what it holds once started is left out of garbage
collections, and a config swap collects what the old config left before freezing again.

Each runs in a process of its own: freezing the test runner's heap would change every test after.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from gateway.heap import YOUNG_OBJECTS
from tests.gateway_process import ROOT


def run(script: str) -> list[str]:
    """What `script` prints, a line each, run in a fresh interpreter at the project's root."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_what_lives_at_the_freeze_is_left_out_until_the_next_one() -> None:
    young, kept_out, then_collected, garbage_before = run("""
        import gc, weakref
        from gateway.heap import freeze_long_lived

        class Cycle:
            def __init__(self):
                self.me = self

        early = weakref.ref(Cycle())  # garbage already: collected, not frozen
        held = Cycle()
        freeze_long_lived()
        print(gc.get_threshold()[0])
        ref, held = weakref.ref(held), None  # unreachable now, but frozen: a collection leaves it
        gc.collect()
        print(ref() is not None)
        freeze_long_lived()  # as after a config swap: the old objects are collected first
        print(ref() is None, early() is None)
    """)
    assert int(young) == YOUNG_OBJECTS
    assert (kept_out, then_collected, garbage_before) == ("True", "True", "True")


def test_a_worker_freezes_once_started_and_again_after_a_config_swap() -> None:
    worker, embedded, after_swap = run("""
        import asyncio, gc
        from gateway.config import parse_config
        from gateway.service import Gateway
        from gateway.store.memory import MemoryStore

        CONFIG = {"providers": {"mock": {"kind": "mock"}},
                  "models": {"m": {"routes": [{"provider": "mock",
                                               "price": {"input_per_mtok": 1, "output_per_mtok": 2}}]}}}

        async def main():
            gw = Gateway(parse_config(CONFIG, {}), MemoryStore(), owns_process=True)
            await gw.start()
            print(gc.get_freeze_count())
            gc.unfreeze()
            other = Gateway(parse_config(CONFIG, {}), MemoryStore())  # embedded in a process of others
            await other.start()
            print(gc.get_freeze_count())
            await other.stop()
            await gw.apply(parse_config(CONFIG, {}))
            print(gc.get_freeze_count())
            await gw.stop()

        asyncio.run(main())
    """)
    assert int(worker) > 10_000 and int(embedded) == 0 and int(after_swap) > 10_000


def test_the_app_uvicorn_starts_in_a_worker_owns_its_process(tmp_path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("providers: {mock: {kind: mock}}\n"
                      "models: {m: {routes: [{provider: mock, price: {input_per_mtok: 1, output_per_mtok: 2}}]}}\n")
    (owns,) = run(f"""
        import os
        os.environ["GATEWAY_CONFIG"] = {str(config)!r}
        from gateway.app import app_from_env
        print(app_from_env().gateway.owns_process)
    """)
    assert owns == "True"
