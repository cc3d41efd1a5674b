"""Specifications of the circuit breaker and the latency averages, on a clock the test drives."""

from __future__ import annotations

from gateway.config import CircuitConfig
from gateway.routing.health import CLOSED, HALF_OPEN, OPEN, Circuit, Ewma

CONFIG = CircuitConfig(failures=3, error_ratio=0.5, min_requests=6, window_s=10.0, cooldown_s=5.0)


def test_circuit_opens_after_consecutive_failures_and_half_opens_after_cooldown() -> None:
    circuit = Circuit(CONFIG)
    for t in (1.0, 1.1):
        circuit.failure(t)
    assert circuit.state == CLOSED and circuit.admits(1.2)
    circuit.failure(1.2)
    assert circuit.state == OPEN
    assert not circuit.admits(1.3) and not circuit.admits(6.1)
    assert circuit.admits(6.2)  # cool-down over: the probe may go
    circuit.take(6.2)
    assert circuit.state == HALF_OPEN
    circuit.success(6.5)
    assert circuit.state == CLOSED and circuit.consecutive == 0 and circuit.admits(6.5)


def test_half_open_circuit_lets_exactly_one_probe_through() -> None:
    circuit = Circuit(CONFIG)
    for _ in range(3):
        circuit.failure(0.0)
    assert circuit.admits(5.0)
    circuit.take(5.0)
    assert not circuit.admits(5.1) and not circuit.admits(9.9)


def test_failed_probe_opens_the_circuit_again_for_a_full_cooldown() -> None:
    circuit = Circuit(CONFIG)
    for _ in range(3):
        circuit.failure(0.0)
    circuit.take(5.0)
    circuit.failure(5.5)
    assert circuit.state == OPEN
    assert not circuit.admits(10.4) and circuit.admits(10.5)


def test_a_probe_that_never_reports_back_does_not_hold_the_circuit_forever() -> None:
    circuit = Circuit(CONFIG)
    for _ in range(3):
        circuit.failure(0.0)
    circuit.take(5.0)
    assert not circuit.admits(9.0)
    assert circuit.admits(10.0)


def test_probe_released_without_a_verdict_lets_the_next_request_probe() -> None:
    circuit = Circuit(CONFIG)
    for _ in range(3):
        circuit.failure(0.0)
    circuit.take(5.0)
    circuit.release()  # e.g. the client's own 400: says nothing about the route
    assert circuit.state == HALF_OPEN and circuit.admits(5.1)


def test_circuit_opens_on_error_ratio_over_the_window_once_it_holds_enough_requests() -> None:
    circuit = Circuit(CONFIG)
    outcomes = [True, False, True, False, True]  # never 3 failures in a row
    for i, ok in enumerate(outcomes):
        (circuit.success if ok else circuit.failure)(i * 0.1)
    assert circuit.state == CLOSED  # 2 of 5: below min_requests
    circuit.failure(0.6)
    assert circuit.window(0.6) == (6, 3)
    assert circuit.state == OPEN  # 3 of 6 = the 0.5 ratio


def test_errors_older_than_the_window_are_forgotten() -> None:
    circuit = Circuit(CONFIG)
    for i in range(5):
        (circuit.success if i % 2 else circuit.failure)(i * 0.1)
    assert circuit.window(0.5) == (5, 3)
    assert circuit.window(20.0) == (0, 0)
    circuit.success(20.0)
    circuit.failure(20.1)
    assert circuit.state == CLOSED


def test_success_resets_consecutive_failures() -> None:
    circuit = Circuit(CONFIG)
    circuit.failure(0.0)
    circuit.failure(0.1)
    circuit.success(0.2)
    circuit.failure(0.3)
    assert circuit.consecutive == 1 and circuit.state == CLOSED


def test_a_recovered_circuit_does_not_reopen_on_errors_from_before_the_outage() -> None:
    circuit = Circuit(CONFIG)
    for i in range(3):
        circuit.success(i * 0.1)
    for i in range(3):
        circuit.failure(0.5 + i * 0.1)
    circuit.take(6.0)
    circuit.success(6.1)
    circuit.failure(6.2)
    assert circuit.state == CLOSED


def test_cool_down_is_not_a_failure() -> None:
    circuit = Circuit(CONFIG)
    circuit.cool_down(1.0, 3.0)
    assert circuit.cooling(3.9) and not circuit.cooling(4.0)
    assert circuit.state == CLOSED and circuit.consecutive == 0 and circuit.admits(2.0)


def test_ewma_follows_recent_samples_and_forgets_stale_ones() -> None:
    ewma = Ewma(alpha=0.5, stale_s=60.0)
    assert ewma.get(0.0) is None
    ewma.add(1.0, 0.0)
    assert ewma.get(0.0) == 1.0
    ewma.add(3.0, 1.0)
    assert ewma.get(1.0) == 2.0
    assert ewma.get(61.5) is None  # stale: the route deserves a fresh look
    ewma.add(0.5, 62.0)
    assert ewma.get(62.0) == 0.5  # a stale average restarts from the new sample
