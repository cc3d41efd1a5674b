"""Buffered metric values: counts reach the multiprocess files at a flush, whole and once.

What a scrape of another worker reads is the files; what the worker itself reads is its
values. Both must agree after a flush, and nothing may be counted twice or lost.
"""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess, values
from prometheus_client.parser import text_string_to_metric_families

from gateway.observability.buffered import ValueBuffer
from tests.fakes import FakeProvider
from tests.gateway_process import GatewayProcess

PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, ValueBuffer]:
    """This process writing multiprocess files into tmp_path, its counters and histograms buffered."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    buffer = ValueBuffer(values.MultiProcessValue())
    monkeypatch.setattr(values, "ValueClass", buffer.value_class)
    return tmp_path, buffer


def scraped(directory: Path) -> dict[str, float]:
    """What a scrape answered by another process reads: the files only."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    text = generate_latest(registry).decode()
    return {sample.name + str(sorted(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_counts_reach_the_files_at_a_flush_and_only_once(files):
    directory, buffer = files
    registry = CollectorRegistry()
    requests = Counter("requests", "r", ["team"], registry=registry)
    for _ in range(1000):
        requests.labels("a").inc()
    requests.labels("b").inc(2.5)

    assert requests.labels("a")._value.get() == 1000  # the worker's own view is exact at once
    assert scraped(directory).get("requests_total[('team', 'a')]", 0) == 0
    assert len(buffer) == 2  # one write per changed series, however many increments

    buffer.flush()
    assert scraped(directory)["requests_total[('team', 'a')]"] == 1000
    assert scraped(directory)["requests_total[('team', 'b')]"] == 2.5
    buffer.flush()  # nothing new: nothing added again
    requests.labels("a").inc()
    buffer.flush()
    assert scraped(directory)["requests_total[('team', 'a')]"] == 1001


def test_a_histogram_keeps_its_buckets_sum_and_count(files):
    directory, buffer = files
    registry = CollectorRegistry()
    duration = Histogram("duration_seconds", "d", buckets=(0.001, 0.01, 0.1), registry=registry)
    for seconds in (0.0005, 0.005, 0.005, 0.05, 5.0):
        duration.observe(seconds)
    buffer.flush()
    seen = scraped(directory)
    assert seen["duration_seconds_bucket[('le', '0.001')]"] == 1
    assert seen["duration_seconds_bucket[('le', '0.01')]"] == 3
    assert seen["duration_seconds_bucket[('le', '0.1')]"] == 4
    assert seen["duration_seconds_bucket[('le', '+Inf')]"] == 5
    assert seen["duration_seconds_count[]"] == 5
    assert seen["duration_seconds_sum[]"] == pytest.approx(5.0605)


def test_gauges_are_written_at_once(files):
    directory, buffer = files
    registry = CollectorRegistry()
    inflight = Gauge("inflight", "i", multiprocess_mode="livesum", registry=registry)
    inflight.inc(3)
    inflight.dec()
    assert len(buffer) == 0
    assert scraped(directory)["inflight[]"] == 2


def test_a_stopping_worker_writes_every_count_it_held(redis_process):
    """SIGTERM right after the traffic, before any periodic flush: the files still count every request."""
    fake = FakeProvider("deepinfra", completion_tokens=3).start()
    config = {"store": {"url": redis_process.url},
              "providers": {"deepinfra": {"kind": "deepinfra", "base_url": fake.base_url, "api_key": fake.api_key}},
              "models": {"m": {"routes": [{"provider": "deepinfra", "model": "meta-llama/Meta-Llama-3.1-8B-Instruct",
                                              "price": PRICE}]}},
              "teams": {"alpha": {"keys": ["sk-alpha-key"]}}}
    gw = GatewayProcess(config, workers=2).start()
    try:
        with httpx.Client(base_url=gw.base_url, headers={"authorization": "Bearer sk-alpha-key"}, timeout=5) as client:
            for _ in range(40):
                body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
                assert client.post("/chat/completions", json=body).status_code == 200
        gw.signal(signal.SIGTERM)
        assert gw.wait(15) == 0
        seen = scraped(gw.metrics_dir)
        key = "gateway_requests_total[('model', 'm'), ('provider', 'deepinfra'), ('status_class', '2xx'), " \
              "('team', 'alpha')]"
        assert seen[key] == 40
        assert seen["gateway_completion_tokens_total[('model', 'm'), ('provider', 'deepinfra'), ('team', 'alpha')]"] \
            == 40 * 3
    finally:
        gw.stop()
        gw.cleanup()
        fake.stop()
