"""Config changes without a restart: validated, published through the store, swapped in everywhere.

A reload reads the config file this worker started from (or a text sent with the reload),
validates it, and on any problem changes nothing and answers with the problem. A valid
config is published in the store with a new version and applied here; every other worker,
of this replica or another, polls the version (as it polls the API keys' version), reads
the published text, validates it in its own environment and applies it too.

Applying swaps the config and the router between two requests (`Gateway.apply`): requests
in flight finish on the config they started with, their settlement included, and the
router keeps its circuits and latency estimates for routes that are still there. Settings
read only when the process starts (the listen address, the workers, the store) are reported
as needing a restart; they keep their running values until then.

At start, a worker serves its own file. If that differs from the config last published, it
says so once: the next reload makes one config the truth again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from typing import Protocol

from gateway.background import Periodic
from gateway.config import Config, ConfigError, load_config_text, read_config_text
from gateway.observability.metrics import Metrics
from gateway.store import Store, StoreUnavailable

log = logging.getLogger("gateway.reload")
POLL_S = 0.5  # as the API keys' version: a reload reaches every worker within about this
# Read once by the server or the store at start: a reload reports a change here and applies it at the next start.
RESTART_ONLY = ("server.host", "server.port", "server.workers", "server.keepalive_timeout_s",
                "server.shutdown_grace_s", "server.cors_origins", "server.log", "server.tracing", "store")
MAPPINGS = ("providers", "models", "teams")


@dataclass(frozen=True, slots=True)
class Reloaded:
    """What a reload did: the version now served, what changed, and what waits for a restart."""

    version: int
    changed: tuple[str, ...]
    needs_restart: tuple[str, ...]
    warnings: tuple[str, ...]

    def doc(self) -> dict[str, object]:
        return {"object": "config.reload", "version": self.version, "changed": list(self.changed),
                "needs_restart": list(self.needs_restart), "warnings": list(self.warnings)}


class Serving(Protocol):
    """What a reload changes: the running gateway (`gateway.service.Gateway`)."""

    config: Config
    store: Store
    metrics: Metrics

    async def apply(self, config: Config) -> None: ...


class Reloader:
    """This worker's side of reloads: the ones it is asked for, and the others' it polls."""

    def __init__(self, gw: Serving, path: str | None, text: str | None, poll_s: float = POLL_S) -> None:
        self._gw = gw
        self._path = path
        self._text = text  # what the running config was read from; None: built in code
        self.version = 0  # the published version this worker serves (0: its own file, none published yet)
        self._seen: int | None = None  # the newest version looked at, applied or not
        self._poller = Periodic("config version", poll_s, self._poll_quietly)
        self._applying = asyncio.Lock()  # a reload asked for here and one polled from the store, one at a time

    @property
    def digest(self) -> str:
        return hashlib.sha256((self._text or "").encode()).hexdigest()[:16]

    async def start(self) -> None:
        try:
            published = await self._gw.store.published_config()
        except StoreUnavailable:
            published = None  # the first poll that gets an answer takes the version as it finds it
        else:
            self._seen = published[0] if published else 0
            if published is not None and self._text is not None and published[1] != self._text:
                log.warning("this worker's config file differs from the config last published by a reload "
                            "(version %d); it serves its file until the next reload", published[0])
        self._poller.start()

    async def stop(self) -> None:
        await self._poller.stop()

    async def reload(self, text: str | None = None) -> Reloaded:
        """Validate a config (the file this worker started from, unless given), publish it, apply it.

        Raises ConfigError (nothing changed) or StoreUnavailable (nothing published, nothing applied).
        """
        if text is None:
            if self._path is None:
                raise ConfigError("reload", "this gateway was not started from a file: send the config to load")
            text = read_config_text(self._path)
        config = load_config_text(text, self._path or "config")
        version = await self._gw.store.publish_config(text)
        self._seen = version
        return await self._apply(config, text, version)

    async def poll(self) -> None:
        """Apply the newest published config if it is newer than the one served here."""
        version = await self._gw.store.config_version()
        if self._seen is None:
            self._seen = version
            return
        if version <= self._seen:
            return
        published = await self._gw.store.published_config()
        if published is None:
            return
        version, text = published
        self._seen = version
        if text == self._text:  # published from the file this worker runs already
            self.version = version
            self._gw.metrics.config_version.set(version)
            return
        try:
            config = load_config_text(text, f"published config version {version}")
        except ConfigError as error:
            log.error("config version %d was not applied here, the running one stays: %s", version, error)
            return
        reloaded = await self._apply(config, text, version)
        log.info("config version %d applied (published by another worker): changed %s", version,
                 ", ".join(reloaded.changed) or "nothing")

    async def _poll_quietly(self) -> None:
        try:
            await self.poll()
        except StoreUnavailable:
            pass  # the running config stays; the next poll tries again

    async def _apply(self, config: Config, text: str, version: int) -> Reloaded:
        async with self._applying:
            if version < self.version:  # a newer one was applied while this one waited
                return Reloaded(self.version, (), (), ())
            return await self._swap(config, text, version)

    async def _swap(self, config: Config, text: str, version: int) -> Reloaded:
        running = self._gw.config
        reloaded = Reloaded(version, changes(running, config), needs_restart(running, config),
                            tuple(config.warnings))
        self._text, self.version = text, version
        await self._gw.apply(config)
        self._gw.metrics.config_version.set(version)
        for warning in config.warnings:
            log.warning(warning)
        if reloaded.needs_restart:
            log.warning("config version %d: %s changed and needs a restart to apply", version,
                        ", ".join(reloaded.needs_restart))
        return reloaded


def changes(old: Config, new: Config) -> tuple[str, ...]:
    """What differs, by place: `routing.strategy`, `teams.research`, `models.llama-3.1-8b` (names only)."""
    found = []
    for section in type(new).model_fields:
        if section in type(new).derived:
            continue
        before, after = getattr(old, section), getattr(new, section)
        if before == after:
            continue
        if section in MAPPINGS:
            found.extend(f"{section}.{name}" for name in sorted(before.keys() | after.keys())
                         if before.get(name) != after.get(name))
        elif hasattr(after, "model_fields"):
            found.extend(f"{section}.{field}" for field in type(after).model_fields
                         if getattr(before, field) != getattr(after, field))
        else:
            found.append(section)
    return tuple(found)


def needs_restart(old: Config, new: Config) -> tuple[str, ...]:
    """The changes a running process cannot take: its server, its store, its rented services."""
    changed = changes(old, new)
    found = [place for place in changed if place.startswith(RESTART_ONLY)]
    for place in changed:
        if place.startswith("providers."):
            name = place.removeprefix("providers.")
            if any(p is not None and p.dedicated is not None
                   for p in (old.providers.get(name), new.providers.get(name))):
                found.append(place)  # a rented service's watcher and autoscaler are built at start
    return tuple(found)
