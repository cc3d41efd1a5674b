"""Specifications of the store URL forms: every deployment shape, and what to write when a URL names none."""

from __future__ import annotations

import pytest

from gateway.store.address import AddressError, RedisAddress, Tls, parse_address


@pytest.mark.parametrize(("url", "address"), [
    ("redis://127.0.0.1:6379/0", RedisAddress("single", (("127.0.0.1", 6379),))),
    ("redis://cache", RedisAddress("single", (("cache", 6379),))),
    ("redis://:s3cret@h:7/3", RedisAddress("single", (("h", 7),), 3, None, "s3cret")),
    ("redis://s3cret@h:7", RedisAddress("single", (("h", 7),), 0, None, "s3cret")),
    ("redis://gateway:p%40ss%3Aw%2Frd@h:7?db=4", RedisAddress("single", (("h", 7),), 4, "gateway", "p@ss:w/rd")),
    ("redis://[::1]:6380/1", RedisAddress("single", (("::1", 6380),), 1)),
    ("rediss://h:6380/0?ssl_ca_certs=/etc/ca.pem", RedisAddress("single", (("h", 6380),), tls=Tls("/etc/ca.pem"))),
    ("rediss://h", RedisAddress("single", (("h", 6379),), tls=Tls())),
    ("unix:///run/redis.sock?db=2", RedisAddress("unix", (), 2, path="/run/redis.sock")),
    ("redis+sentinel://u:p@s1:26379,s2,s3:26380/gwprimary/5",
     RedisAddress("sentinel", (("s1", 26379), ("s2", 26379), ("s3", 26380)), 5, "u", "p", service="gwprimary")),
    ("redis+cluster://n1:7000,n2:7001", RedisAddress("cluster", (("n1", 7000), ("n2", 7001)))),
    ("rediss+cluster://n1:7000?ssl_ca_certs=/ca", RedisAddress("cluster", (("n1", 7000),), tls=Tls("/ca"))),
])
def test_each_deployment_shape_has_its_url(url: str, address: RedisAddress) -> None:
    assert parse_address(url) == address


@pytest.mark.parametrize(("url", "says"), [
    ("http://h:6379", "unknown scheme"),
    ("redis://h:port", "is not a number"),
    ("redis://h/abc", "a Redis database is a number"),
    ("redis://h/1?db=2", "two databases named"),
    ("redis://h/1/2", "the database is one number"),
    ("redis://h?timeout=3", "unknown option 'timeout'"),
    ("redis://h?ssl_ca_certs=/ca", "use rediss://"),
    ("redis+sentinel://s1,s2", "name the primary's service"),
    ("redis+cluster://n1/3", "database 0 only"),
    ("redis://a:1,b:2", "several are redis+sentinel:// or redis+cluster://"),
    ("unix://", "name the socket"),
])
def test_a_url_that_names_no_redis_says_what_to_write(url: str, says: str) -> None:
    with pytest.raises(AddressError, match=says.replace("(", r"\(").replace("+", r"\+")):
        parse_address(url)


def test_tls_files_from_config_win_over_the_urls() -> None:
    address = parse_address("rediss://h?ssl_ca_certs=/url-ca", Tls("/config-ca", "/cert", "/key"))
    assert address.tls == Tls("/config-ca", "/cert", "/key")


def test_the_description_names_the_mode_and_never_the_password() -> None:
    described = parse_address("rediss+sentinel://gateway:hunter2@s1,s2/gwprimary/1?ssl_ca_certs=/ca").describe()
    assert described == ("Sentinel service 'gwprimary' via s1:26379,s2:26379, db 1, TLS (CA /ca), "
                         "as gateway with a password")
    assert "hunter2" not in parse_address("redis://:hunter2@h").describe()
