"""The hot path's store calls, pipelined on connections the client library made.

Admissions and settlements of concurrent requests share writes and round trips: every
script called in one turn of the event loop leaves in one write, and replies are matched to
callers in order, with no pool lock, pipeline object or task per call. That is why this is
here (bench/redis_clients.py: redis-py's pipeline API costs 1.5 to 3 times the CPU per call).
The library does everything else: the connection itself (TLS, ACL auth, the database, the
Sentinel's current primary), reading replies (hiredis), and on a Redis Cluster the slot map
and the redirects (a call answered MOVED or ASK, or whose node failed, is retried through
the library's own cluster client, which follows them and refreshes its map).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.store.redis_scripts import SCRIPTS

_REDIRECTS = (AskError, ClusterDownError, MovedError, TryAgainError)


class NotReplicated(RedisConnectionError):
    """A write the primary took and its replicas did not, in time: it may be lost with the primary."""


class Pipe:
    """One library connection, written as commands come and read by one task, replies in order."""

    def __init__(self, connection: AbstractConnection, timeout_s: float, on_close: Any = None) -> None:
        self._connection = connection
        # Read through the library's parser (hiredis) itself: the connection's read_response
        # wraps each reply in a timeout of its own, a timer per reply the watchdog makes needless.
        self._parser = connection._parser  # noqa: SLF001
        self._timeout_s = timeout_s
        self._on_close = on_close
        self._loop = asyncio.get_running_loop()
        self._waiting: collections.deque[tuple[asyncio.Future, float]] = collections.deque()
        self._outgoing: list[Any] = []  # commands, or functions that make them
        self._turn_wait: list[Any] | None = None  # [future, replicas, timeout ms]: one WAIT behind this turn's writes
        self._reader: asyncio.Task | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self.closed = False

    def send(self, command: tuple[Any, ...] | Callable[[], tuple[Any, ...]]) -> asyncio.Future:
        """`command` may be a function that makes it: called when the turn's write leaves, so
        that what callers of the same turn add to it after this call still goes with it."""
        future = self._loop.create_future()
        if not self._outgoing:
            self._loop.call_soon(self._flush)  # everything sent this turn leaves in one write
        self._outgoing.append(command)
        self._waiting.append((future, self._loop.time()))
        if self._watchdog is None:
            self._watchdog = self._loop.call_later(self._timeout_s, self._check)
        return future

    def wait_for_replicas(self, replicas: int, timeout_ms: int) -> asyncio.Future:
        """How many replicas took everything sent this turn: one WAIT, sent behind it all and shared
        by every caller of the turn, where a WAIT per caller would hold the connection once each."""
        if self._turn_wait is None:
            if not self._outgoing:
                self._loop.call_soon(self._flush)
            self._turn_wait = [self._loop.create_future(), replicas, timeout_ms]
        else:
            self._turn_wait[1] = max(self._turn_wait[1], replicas)
        return self._turn_wait[0]

    def _flush(self) -> None:
        if self._turn_wait is not None:
            future, replicas, timeout_ms = self._turn_wait
            self._turn_wait = None
            self._outgoing.append(("WAIT", replicas, timeout_ms))
            self._waiting.append((future, self._loop.time()))
            if self._watchdog is None:
                self._watchdog = self._loop.call_later(self._timeout_s, self._check)
        outgoing, self._outgoing = self._outgoing, []
        writer = self._connection._writer  # noqa: SLF001  (written as is: no drain to await per call)
        if self.closed or writer is None:
            return
        # hiredis's packer: 4 µs a command, against 27 for the library's.
        writer.write(b"".join(hiredis.pack_command(c if type(c) is tuple else c()) for c in outgoing))
        if self._reader is None:
            self._reader = self._loop.create_task(self._read())

    async def _read(self) -> None:
        """One reader for the connection's life; the watchdog, not a read timeout, bounds a wait
        (an idle read would time out, and after a stall of this process fail a call just sent)."""
        try:
            while not self.closed:
                try:
                    reply: Any = await self._parser.read_response(disable_decoding=True)
                except ResponseError as error:  # one reply, an error: the stream goes on
                    reply = error
                if not self._waiting:
                    raise RedisConnectionError("redis sent a reply nobody asked for")
                future, _ = self._waiting.popleft()
                if not future.done():
                    if isinstance(reply, Exception):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
                if isinstance(reply, ReadOnlyError):
                    # A primary turned replica (a failover): connect again, to whichever is primary now.
                    raise RedisConnectionError("redis is a replica now")
        except (RedisError, OSError) as error:
            self.close(error)
        except asyncio.CancelledError:
            self.close(RedisConnectionError("the store is closing"))
            raise

    def _check(self) -> None:
        self._watchdog = None
        if not self._waiting:
            return
        waited = self._loop.time() - self._waiting[0][1]
        if waited >= self._timeout_s:
            # Replies come in order: nothing behind an unanswered command can be answered first.
            self.close(TimeoutError(f"redis did not answer within {self._timeout_s:g} s"))
            return
        self._watchdog = self._loop.call_later(self._timeout_s - waited, self._check)

    def close(self, error: BaseException) -> None:
        if self.closed:
            return
        self.closed = True
        if self._turn_wait is not None:  # not sent yet: its callers hear of the close like the rest
            self._waiting.append((self._turn_wait[0], 0.0))
            self._turn_wait = None
        while self._waiting:
            future, _ = self._waiting.popleft()
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: a caller that left does not make the loop warn
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
        if self._on_close is not None:
            self._on_close(self)


class ScriptBatcher:
    """`run(name, keys, args)`: a script's reply, pipelined with the others of its loop turn."""

    def __init__(self, client: Redis | RedisCluster, timeout_s: float) -> None:
        self._client = client
        # Asked once: an isinstance against the library's client classes (typing Protocols among
        # their bases) costs microseconds, twice a call.
        self._cluster = isinstance(client, RedisCluster)
        self._timeout_s = timeout_s
        self._pipes: dict[Any, Pipe] = {}  # one per node: the server, or each cluster primary
        self._opening: dict[Any, asyncio.Future] = {}
        self._returning: set[asyncio.Task] = set()

    async def run(self, name: str, keys: Sequence[Any], args: Sequence[Any] | Callable[[], Sequence[Any]],
                  replicas: int = 0) -> Any:
        """`args` may be a function that makes them, called once the call is written (see Pipe.send):
        it must answer the same every time it is called after that.
        `replicas` > 0: the reply only once that many replicas have the script's writes (WAIT);
        NotReplicated when they do not within the timeout, so that the caller tries again."""
        script = SCRIPTS[name]
        made = args if callable(args) else lambda: args

        def command() -> tuple[Any, ...]:
            return ("EVALSHA", script.sha, len(keys), *keys, *made())

        try:
            try:
                return await self._send(keys[0], command, script.source, replicas)
            except ReadOnlyError:
                # A failover made this node a replica, and the script wrote nothing there: once
                # more, on a connection to the primary now (the Sentinel names it).
                return await self._send(keys[0], command, script.source, replicas)
        except ResponseError as error:
            if not self._cluster or not isinstance(error, _REDIRECTS):
                raise
        except (RedisError, OSError, TimeoutError):
            if not self._cluster:
                raise
        # A cluster's slot moved or its node failed: the library's client follows, and learns.
        async with asyncio.timeout(self._timeout_s * 3):
            try:
                return await self._client.execute_command("EVAL", script.source, len(keys), *keys, *made())
            except AttributeError as error:
                # Seen once in a test's failover: redis-py's cluster client used a node connection
                # closed under it (writer None). Not an answer: the caller retries, as for any other.
                raise RedisConnectionError(f"cluster connection lost mid-call: {error}") from error

    async def _send(self, key: Any, command: Callable[[], tuple[Any, ...]], source: bytes, replicas: int) -> Any:
        pipe = await self._pipe(key)
        reply = pipe.send(command)
        # Behind it on the same connection, so it covers the script's writes (and the turn's others').
        waited = pipe.wait_for_replicas(replicas, max(1, int(self._timeout_s * 500))) if replicas else None
        try:
            result = await reply
        except NoScriptError:  # Redis restarted or flushed its scripts: EVAL caches it again
            if waited is not None:
                await waited
            return await self._send(key, lambda: ("EVAL", source, *command()[2:]), source, replicas)
        if waited is not None and await waited < replicas:
            raise NotReplicated(f"no {replicas} replica(s) took this write in time")
        return result

    async def _pipe(self, key: Any) -> Pipe:
        if self._cluster and not self._client.nodes_manager.default_node:
            async with asyncio.timeout(self._timeout_s * 3):
                await self._client.initialize()
        node = self._node(key)
        pipe = self._pipes.get(node)
        if pipe is not None and not pipe.closed:
            return pipe
        if node in self._opening:  # one connection attempt per node, shared by every caller
            return await asyncio.shield(self._opening[node])
        opening = self._opening[node] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(self._timeout_s):
                connection = await self._connection(node)
            pipe = self._pipes[node] = Pipe(connection, self._timeout_s, self._closed)
            opening.set_result(pipe)
            return pipe
        except BaseException as error:
            opening.set_exception(error)
            opening.exception()
            raise
        finally:
            del self._opening[node]

    def _node(self, key: Any) -> Any:
        if self._cluster:
            slot = self._client.keyslot(key)
            return self._client.nodes_manager.get_node_from_slot(slot).name
        return None

    async def _connection(self, node: Any) -> AbstractConnection:
        if self._cluster:
            host_node = self._client.get_node(node_name=node)
            connection = host_node.connection_class(**host_node.connection_kwargs)
            await connection.connect()
            return connection
        # Taken from the pool for good: the pool then holds one connection less.
        return await self._client.connection_pool.get_connection()

    def _closed(self, pipe: Pipe) -> None:
        for node, known in list(self._pipes.items()):
            if known is pipe:
                del self._pipes[node]
        task = asyncio.get_running_loop().create_task(self._give_back(pipe._connection))  # noqa: SLF001
        self._returning.add(task)
        task.add_done_callback(self._returning.discard)

    async def _give_back(self, connection: AbstractConnection) -> None:
        """A broken connection, closed and returned to the pool it came from (a cluster's are ours)."""
        await connection.disconnect()
        if not self._cluster:
            await self._client.connection_pool.release(connection)

    async def close(self) -> None:
        for pipe in list(self._pipes.values()):
            pipe.close(RedisConnectionError("the store is closing"))
        await asyncio.gather(*self._returning, return_exceptions=True)
