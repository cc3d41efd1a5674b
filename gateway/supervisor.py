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
        for process in self.processes:
            if process.pid is not None and process.process.is_alive():
                log.info("SIGHUP: worker %d reloads the config; the others follow it", process.pid)
                os.kill(process.pid, signal.SIGHUP)
                return
        log.warning("SIGHUP: no live worker to reload the config")


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
