"""The process that runs the workers: uvicorn's, except that SIGHUP reloads the config.

uvicorn's supervisor answers SIGHUP by replacing every worker, which cuts their streams
and forgets what their routers learnt. This one passes the signal to one live worker
instead, which reloads the config as `POST /admin/reload` does; the store carries the new
config to the other workers (gateway.reload). A single-worker gateway has no supervisor:
its one process takes SIGHUP itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal

from uvicorn import Config, Server
from uvicorn.supervisors import Multiprocess

log = logging.getLogger("gateway.supervisor")
STARTUP_FAILURE = 3  # as uvicorn exits when its server did not start


class Supervisor(Multiprocess):
    def handle_hup(self) -> None:
        live = [p for p in self.processes if p.pid is not None and p.process.is_alive()]
        # A started worker, if one answers: one still starting remembers the signal until it can reload.
        chosen = next((p for p in live if _started(p)), live[0] if live else None)
        if chosen is None:
            log.warning("SIGHUP: no live worker to reload the config")
            return
        log.info("SIGHUP: worker %d reloads the config; the others follow it", chosen.pid)
        os.kill(chosen.pid, signal.SIGHUP)


def _started(process: object) -> bool:
    is_ready = getattr(process, "is_ready", None)  # uvicorn 0.30 has no readiness ping: take it as started
    return True if is_ready is None else bool(is_ready(timeout=1))


def run(config: Config) -> int:
    """Serve `config` (an import string app) as uvicorn.run would, with this supervisor for workers;
    the exit status."""
    if config.workers > 1:
        Supervisor(config, sockets=[config.bind_socket()]).run()
        return 0
    server = Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0 if server.started else STARTUP_FAILURE
