"""Where the Redis store is and how to reach it: one URL, read once into a typed address.

    redis://[user:password@]host[:port][/db][?db=N]             one server
    rediss://...?ssl_ca_certs=/ca.pem[&ssl_certfile=..&ssl_keyfile=..]   the same over TLS
    unix:///run/redis.sock[?db=N]                                 a local socket
    redis+sentinel://[user:password@]h1:26379,h2:26379/service[/db]   the primary Sentinel names
    redis+cluster://[user:password@]h1:7000,h2:7001                 a Redis Cluster (db 0 only)

(`rediss+sentinel://` and `rediss+cluster://` add TLS.) A user and password authenticate as
an ACL user; a password alone as `default`. The database is `/N` or `?db=N`, never both
different. The TLS files may also come from config (`store.tls`), which wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

MODES = {"redis": "single", "rediss": "single", "unix": "unix", "redis+sentinel": "sentinel",
         "rediss+sentinel": "sentinel", "redis+cluster": "cluster", "rediss+cluster": "cluster"}
DEFAULT_PORTS = {"single": 6379, "sentinel": 26379, "cluster": 6379}
TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


class AddressError(ValueError):
    """A store URL that names no reachable Redis; the message says what to write."""


@dataclass(frozen=True, slots=True)
class Tls:
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None


@dataclass(frozen=True, slots=True)
class RedisAddress:
    mode: str  # "single", "unix", "sentinel" or "cluster"
    hosts: tuple[tuple[str, int], ...]  # the server; the sentinels; the cluster's seed nodes
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: Tls | None = None  # None: plain TCP
    path: str | None = None  # unix socket
    service: str | None = None  # the primary's name in Sentinel

    def describe(self) -> str:
        """What `gateway check-config` says of it: the mode, where, who; never the password."""
        where = self.path if self.mode == "unix" else ",".join(f"{h}:{p}" for h, p in self.hosts)
        parts = [{"single": "one server", "unix": "unix socket", "sentinel": f"Sentinel service {self.service!r} via",
                  "cluster": "Redis Cluster, seeds"}[self.mode] + f" {where}"]
        if self.mode != "cluster":
            parts.append(f"db {self.db}")
        if self.tls is not None:
            parts.append("TLS" + (f" (CA {self.tls.ca_certs})" if self.tls.ca_certs else ""))
        if self.username or self.password:
            parts.append(f"as {self.username or 'default'} with a password")
        return ", ".join(parts)


def parse_address(url: str, tls: Tls | None = None) -> RedisAddress:
    """The address a store URL names; AddressError saying what to write when it names none."""
    parts = urlsplit(url)
    mode = MODES.get(parts.scheme)
    if mode is None:
        raise AddressError(f"unknown scheme {parts.scheme!r}; use redis://, rediss://, unix://, redis+sentinel:// "
                           "or redis+cluster://")
    query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    unknown = sorted(set(query) - {"db", *TLS_OPTIONS})
    if unknown:
        raise AddressError(f"unknown option {unknown[0]!r} in the URL (known: db, {', '.join(TLS_OPTIONS)})")
    secure = parts.scheme.startswith("rediss")
    if tls is None and (secure or any(option in query for option in TLS_OPTIONS)):
        tls = Tls(query.get("ssl_ca_certs"), query.get("ssl_certfile"), query.get("ssl_keyfile"))
    if tls is not None and not secure:
        raise AddressError("TLS settings on a plain connection; use rediss:// (or rediss+sentinel://, "
                           "rediss+cluster://)")
    path_parts = [p for p in parts.path.split("/") if p] if mode != "unix" else []
    service = None
    if mode == "sentinel":
        if not path_parts:
            raise AddressError("name the primary's service: redis+sentinel://host:26379,host:26379/SERVICE/0")
        service, path_parts = path_parts[0], path_parts[1:]
    db = _db(path_parts, query.get("db"))
    if mode == "cluster" and db:
        raise AddressError("a Redis Cluster has database 0 only")
    username, password = _credentials(parts.netloc)
    if mode == "unix":
        if not parts.path:
            raise AddressError("name the socket: unix:///run/redis/redis.sock")
        return RedisAddress("unix", (), db, username, password, tls, path=unquote(parts.path))
    hosts = _hosts(parts.netloc.rpartition("@")[2], DEFAULT_PORTS[mode])
    if mode == "single" and len(hosts) != 1:
        raise AddressError("one server per redis:// URL; several are redis+sentinel:// or redis+cluster://")
    return RedisAddress(mode, hosts, db, username, password, tls, service=service)


def _db(path_parts: list[str], from_query: str | None) -> int:
    if len(path_parts) > 1:
        raise AddressError(f"unexpected path {'/'.join(path_parts)!r}; the database is one number, as /0")
    values = {v for v in (path_parts[0] if path_parts else None, from_query) if v is not None}
    if len(values) > 1:
        raise AddressError(f"two databases named ({' and '.join(sorted(values))}); name one")
    value = values.pop() if values else "0"
    if not value.isdigit():
        raise AddressError(f"names database {value!r}; a Redis database is a number, as redis://host:6379/0")
    return int(value)


def _credentials(netloc: str) -> tuple[str | None, str | None]:
    if "@" not in netloc:
        return None, None
    userinfo = netloc.rpartition("@")[0]
    user, colon, password = userinfo.partition(":")
    if not colon:  # redis://secret@host: a password alone, as redis-py reads it
        return None, unquote(user) or None
    return unquote(user) or None, unquote(password) or None


def _hosts(spec: str, default_port: int) -> tuple[tuple[str, int], ...]:
    hosts = []
    for item in spec.split(","):
        host, port = _host_port(item.strip(), default_port)
        hosts.append((host, port))
    return tuple(hosts)


def _host_port(item: str, default_port: int) -> tuple[str, int]:
    if not item:
        raise AddressError("a host is missing; write host:port")
    if item.startswith("["):  # [::1]:6379
        host, _, rest = item[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, _, port = item.rpartition(":") if item.count(":") == 1 else (item, "", "")
    if port and not port.isdigit():
        raise AddressError(f"the port of {host!r} is not a number; write host:6379")
    number = int(port) if port else default_port
    if not 0 < number < 65536:
        raise AddressError(f"port {number} of {host!r} is out of range")
    return host, number
