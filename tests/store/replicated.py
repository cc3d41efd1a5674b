"""Replicated Redis deployments for the store's tests: a Sentinel-managed primary, and a Cluster.

    SentinelRedis  a primary, a replica and three Sentinels that fail over between them
    ClusterRedis   six nodes: three primaries with one replica each

Both are costly to start (seconds), so fixtures keep one per module and `reset` it before each
test: dead nodes come back as replicas, the data is flushed, and the shape is whole again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis

from tests.store.deployments import HOST, Address, Server, data_node_config, free_ports, require_binary, run_tool
from tests.waiting import wait_until

SERVICE = "gwprimary"
SETTLE_TIMEOUT_S = 20.0
# Automatic failover needs down-after (2 s) for the subjective view, a quorum, an election
# with a random delay and the promotion; a forced one about as long without the first.
FAILOVER_TIMEOUT_S = 20.0
# Not 1000: after a switch Sentinel reconnects to the new primary at most once a second, and
# must have its PONG within this, so at 1000 a loaded machine saw the new primary "down" and
# a second, spurious failover (one run in ten, three suites in parallel on two cores).
DOWN_AFTER_MS = 2000
INFO_VALIDITY_MS = 30_000  # Sentinel's own limit: three of its 10 s INFO periods


class SentinelRedis:
    """One primary, one replica (`replicaof`), and three Sentinels that agree which is which."""

    def __init__(self, directory: Path) -> None:
        node_ports, sentinel_ports = free_ports(2), free_ports(3)
        primary_port = node_ports[0]
        self.service_name = SERVICE
        follow = [f"replicaof {HOST} {primary_port}"]
        self._nodes = [Server(directory, f"node-{port}", data_node_config(port) + (follow if replica else []),
                              {"host": HOST, "port": port})
                       for replica, port in enumerate(node_ports)]
        self._sentinels = [Server(directory, f"sentinel-{port}", [
            f"port {port}", f"bind {HOST}",
            f"sentinel monitor {SERVICE} {HOST} {primary_port} 2",
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {SERVICE} 5000",
            f"sentinel parallel-syncs {SERVICE} 1"], {"host": HOST, "port": port}, sentinel=True)
            for port in sentinel_ports]
        self.sentinels: list[Address] = [sentinel.address for sentinel in self._sentinels]
        self.url = "redis+sentinel://" + ",".join(f"{h}:{p}" for h, p in self.sentinels) + f"/{SERVICE}/0"

    def start(self) -> None:
        for server in [*self._nodes, *self._sentinels]:
            server.start()
        self.wait_settled()

    def stop(self) -> None:
        for server in [*self._sentinels, *self._nodes]:
            server.stop()

    def primary(self) -> Address:
        """The primary's address as the first Sentinel that answers has it."""
        for sentinel in self._sentinels:
            if sentinel.alive:
                host, port = sentinel.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
                return host, int(port)
        raise AssertionError("no Sentinel is running")

    def node(self, address: Address) -> Server:
        return next(node for node in self._nodes if node.address == address)

    def failover(self) -> Address:
        """Force a failover (SENTINEL FAILOVER); wait for the new primary, and for the old to follow it."""
        old = self.primary()
        self._sentinels[0].call("SENTINEL", "FAILOVER", SERVICE)
        new = self.wait_for_new_primary(old)
        # Sentinel turns a reachable old primary into a replica only after its next INFO and
        # 8 s more; it would do the same, we do it now so the deployment is whole at once.
        self.node(old).call("REPLICAOF", *new)
        self.wait_settled()
        return new

    def kill_primary(self) -> Address:
        """SIGKILL the current primary; the test then waits (`wait_for_new_primary`) for the promotion."""
        old = self.primary()
        self.node(old).kill()
        return old

    def wait_for_new_primary(self, old: Address, timeout_s: float = FAILOVER_TIMEOUT_S) -> Address:
        """Until every Sentinel names another node, and that node answers as a primary."""
        def promoted() -> Address | None:
            named = {self._named_by(sentinel) for sentinel in self._sentinels}
            new = named.pop() if len(named) == 1 else None
            return new if new not in (None, old) and _role(self.node(new)) == "master" else None
        return wait_until(promoted, timeout_s, f"a primary other than {old} named by every Sentinel")

    def restart(self, address: Address) -> None:
        """Start a dead node again as the current primary's replica, as an operator rejoins it.

        Told whom to follow at start: left to Sentinel, it would serve as a stale primary for
        seconds before being turned into a replica.
        """
        host, port = self.primary()
        self.node(address).start("--replicaof", host, str(port))
        self.wait_settled()

    def reset(self) -> None:
        """Every node up and in place, and no data: what each test starts from."""
        for node in self._nodes:
            if not node.alive:
                self.restart(node.address)
        self.wait_settled()
        self.node(self.primary()).call("FLUSHALL")

    def wait_settled(self, timeout_s: float = SETTLE_TIMEOUT_S) -> None:
        """Until the Sentinels agree on the primary, see its replica up and know each other."""
        wait_until(self._settled, timeout_s, "the Sentinel deployment settled")

    def _settled(self) -> bool:
        try:
            primary = self.primary()
            replicas = [node for node in self._nodes if node.address != primary]
            return (_role(self.node(primary)) == "master"
                    and all(_follows(node, primary) for node in replicas)
                    and all(self._sees_whole(sentinel, primary, replicas) for sentinel in self._sentinels))
        except (redis.RedisError, OSError):  # a node still starting or reconnecting: not yet
            return False

    def _named_by(self, sentinel: Server) -> Address | None:
        try:
            host, port = sentinel.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        except (redis.RedisError, OSError):
            return None
        return host, int(port)

    def _sees_whole(self, sentinel: Server, primary: Address, replicas: list[Server]) -> bool:
        master = _pairs(sentinel.call("SENTINEL", "MASTER", SERVICE))
        if (master["ip"], int(master["port"])) != primary or master["flags"] != "master":
            return False
        if int(master["num-other-sentinels"]) != len(self._sentinels) - 1:
            return False
        # A replica Sentinel has no recent INFO from is one it will not promote (NOGOODSLAVE).
        seen = {(r["ip"], int(r["port"])): r["flags"] == "slave" and int(r["info-refresh"]) < INFO_VALIDITY_MS
                for r in map(_pairs, sentinel.call("SENTINEL", "REPLICAS", SERVICE))}
        return all(seen.get(node.address) for node in replicas)


class ClusterRedis:
    """Six nodes joined by `redis-cli --cluster create`: three primaries, a replica for each."""

    def __init__(self, directory: Path) -> None:
        ports = free_ports(12)
        self._directory = directory
        # The bus port is set, not left at port + 10000: a free port above 55535 has no such twin.
        self._servers = [Server(directory, f"node-{port}", [
            *data_node_config(port), "cluster-enabled yes", "cluster-config-file nodes.conf",
            "cluster-node-timeout 1000", f"cluster-port {bus}"], {"host": HOST, "port": port})
            for port, bus in zip(ports[:6], ports[6:], strict=True)]
        self.nodes: list[Address] = [server.address for server in self._servers]
        self.url = "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in self.nodes[:3])

    def start(self) -> None:
        for server in self._servers:
            server.start()
        run_tool([require_binary("redis-cli"), "--cluster", "create", *(f"{h}:{p}" for h, p in self.nodes),
                  "--cluster-replicas", "1", "--cluster-yes"], self._directory)
        self.wait_whole()

    def stop(self) -> None:
        for server in self._servers:
            server.stop()

    def primaries(self) -> set[Address]:
        """The nodes serving slots, as a live node has the map."""
        return {primary for primary, _ in self._slot_map(self._live()[0])}

    def primary_of(self, key: str) -> Address:
        """The primary serving `key`'s slot (CLUSTER KEYSLOT, then CLUSTER SLOTS)."""
        owner = self._owner_on(self._live()[0], key)
        assert owner is not None, f"no node serves the slot of {key!r}"
        return owner

    def node(self, address: Address) -> Server:
        return next(server for server in self._servers if server.address == address)

    def kill_primary_of(self, key: str, timeout_s: float = FAILOVER_TIMEOUT_S) -> tuple[Address, Address]:
        """SIGKILL the primary of `key`'s slot; wait until its replica serves it and the cluster is ok.

        Returns (killed, promoted). `cluster_state:ok` alone would pass at once: the survivors
        report ok until they have marked the dead node failed.
        """
        old = self.primary_of(key)
        self.node(old).kill()

        def promoted() -> Address | None:
            try:
                owners = {self._owner_on(server, key) for server in self._live()}
                ok = all(_cluster_info(server)["cluster_state"] == "ok" for server in self._live())
            except (redis.RedisError, OSError):  # a survivor busy failing over: not yet
                return None
            new = owners.pop() if len(owners) == 1 else None
            return new if new not in (None, old) and ok and _role(self.node(new)) == "master" else None
        return old, wait_until(promoted, timeout_s, f"a replica of {old} serving {key!r}")

    def reset(self) -> None:
        """Dead nodes back (they rejoin as replicas of whoever took their slots), and no data."""
        for server in self._servers:
            if not server.alive:
                server.start()
        self.wait_whole()
        for address in self.primaries():
            self.node(address).call("FLUSHALL")

    def wait_whole(self, timeout_s: float = SETTLE_TIMEOUT_S) -> None:
        """Until every node says ok, knows all six healthy, and every replica's link is up."""
        wait_until(self._whole, timeout_s, "the cluster whole and ok")

    def _whole(self) -> bool:
        try:
            return all(self._node_whole(server) for server in self._servers) and len(self.primaries()) == 3
        except (redis.RedisError, OSError):  # a node restarting: not yet
            return False

    def _node_whole(self, server: Server) -> bool:
        info = _cluster_info(server)
        if info["cluster_state"] != "ok" or info["cluster_known_nodes"] != str(len(self._servers)):
            return False
        if any(_unhealthy(line) for line in server.call("CLUSTER", "NODES").splitlines()):
            return False
        return _role(server) == "master" or _replication(server).get("master_link_status") == "up"

    def _live(self) -> list[Server]:
        return [server for server in self._servers if server.alive]

    def _owner_on(self, server: Server, key: str) -> Address | None:
        """Who serves `key` in this node's view: views differ until the cluster agrees."""
        slot = int(server.call("CLUSTER", "KEYSLOT", key))
        return next((primary for primary, slots in self._slot_map(server) if slot in slots), None)

    @staticmethod
    def _slot_map(server: Server) -> list[tuple[Address, range]]:
        return [((primary[0], int(primary[1])), range(int(start), int(end) + 1))
                for start, end, primary, *_ in server.call("CLUSTER", "SLOTS")]


def _pairs(flat: Any) -> dict[str, str]:
    """A Sentinel reply as a dict: a map under RESP3, a flat [name, value, ...] list under RESP2."""
    if isinstance(flat, dict):
        return {str(k): str(v) for k, v in flat.items()}
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _role(server: Server) -> str | None:
    try:
        return server.call("ROLE")[0]
    except (redis.RedisError, OSError):
        return None


def _replication(server: Server) -> dict[str, Any]:
    with server.client() as client:
        return client.info("replication")


def _follows(node: Server, primary: Address) -> bool:
    info = _replication(node)
    return (info.get("role") == "slave" and (info.get("master_host"), info.get("master_port")) == primary
            and info.get("master_link_status") == "up")


def _cluster_info(server: Server) -> dict[str, str]:
    lines = server.call("CLUSTER", "INFO")
    if isinstance(lines, dict):
        return {k: str(v) for k, v in lines.items()}
    return dict(line.split(":", 1) for line in lines.splitlines() if ":" in line)


def _unhealthy(node_line: str) -> bool:
    flags = node_line.split()[2].split(",")
    return bool({"fail", "fail?", "handshake", "noaddr"} & set(flags)) or "disconnected" in node_line.split()
