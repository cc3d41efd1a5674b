"""Specifications of settlement: what is charged, recorded once, and carried until the store answers."""

from __future__ import annotations

import time

import pytest

from gateway.accounting.admission import Reservation
from gateway.accounting.outbox import Outbox
from gateway.accounting.settlement import Outcome, Settler, charge
from gateway.accounting.usage import Usage
from gateway.config import Price
from gateway.store import Hold, Limits, StoreUnavailable, UsageRecord
from gateway.store.memory import MemoryStore
from tests.waiting import eventually

PRICE = Price(input_per_mtok=1, output_per_mtok=2)  # 1,000 and 2,000 nano-dollars a token
DAY, MONTH = "2030-01-15", "2030-01"


def test_the_price_table_charges_tokens_and_the_providers_own_figure_wins() -> None:
    assert charge(Usage(10, 5), PRICE) == (20_000, 20_000)
    assert charge(Usage(10, 5, provider_cost_nano=19_000), PRICE) == (19_000, 20_000)
    assert charge(Usage(10, 5), None) == (0, None)


def test_a_charge_never_passes_what_the_store_holds_exactly() -> None:
    cost, table = charge(Usage(2**52, 2**52), Price(input_per_mtok=10_000, output_per_mtok=10_000))
    assert cost == table == 2**53 - 1


def outcome(**fields: object) -> Outcome:
    return Outcome(**{"team": "t", "key_id": "k", "model": "m", "provider": "p", "status": 200,
                      "usage": Usage(10, 5), "price": PRICE, "started": time.monotonic(), **fields})


class Flaky(MemoryStore):
    """Settlements fail (no answer) until `down` is cleared."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True
        self.tries = 0

    async def settle(self, reservation_id: str, usage: UsageRecord, ttl_s: float = 60.0, lease_id: str = "") -> bool:
        self.tries += 1
        if self.down:
            raise StoreUnavailable("redis: connection refused")
        return await super().settle(reservation_id, usage, ttl_s, lease_id)


async def test_a_settlement_the_store_did_not_answer_is_sent_again_until_it_does() -> None:
    store = Flaky()
    outbox = Outbox(store, retry_s=0.05)
    outbox.start()
    hold = Hold("t", 100, 100_000, DAY, MONTH)
    assert (await store.admit(hold, Limits())).admitted
    seen = []
    settler = Settler(store, outbox)
    settler.observers.append(lambda o, r: seen.append(r.cost_nano))
    record = await settler.settle(Reservation(hold.reservation_id, hold, {}), outcome())
    assert record.cost_nano == 20_000 and seen == [20_000]  # metrics count it at once
    assert len(outbox) == 1
    store.down = False
    await eventually(lambda: len(outbox) == 0, 2, "the retried settlement")
    await outbox.stop(1)
    assert await store.spend("t", DAY, MONTH) == (20_000, 20_000)
    assert len(await store.records("t")) == 1


async def test_an_observer_that_fails_does_not_stop_the_settlement() -> None:
    store = MemoryStore()
    settler = Settler(store, Outbox(store))

    def broken(outcome: Outcome, record: UsageRecord) -> None:
        raise RuntimeError("a metrics bug")
    settler.observers.append(broken)
    hold = Hold("t", 1, 1, DAY, MONTH)
    await settler.settle(Reservation(hold.reservation_id, hold, {}), outcome())
    assert len(await store.records("t")) == 1


async def test_what_the_outbox_cannot_deliver_by_the_reservations_expiry_is_given_up_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    store = Flaky()
    outbox = Outbox(store, clock=lambda: now[0])
    record = UsageRecord("t", "k", "m", "p", 1, 1, 3_000, None, 200, 1, 0, DAY, MONTH)
    outbox.settle("r-1", record, ttl_s=10)
    await eventually(lambda: store.tries == 1, 1, "the first try, in the background")
    now[0] = 11.0
    await outbox.flush()
    assert len(outbox) == 0 and "unrecorded usage" in caplog.text
