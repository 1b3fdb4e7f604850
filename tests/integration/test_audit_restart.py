"""A grace period running when the worker is killed still ends on time after the restart,
with exactly one alert (and hint) for the episode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from schemas.examples import INPUT_EXAMPLES
from schemas.outputs import AgentHint, Alert
from streams.app import default_pipeline
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.unit import system_tables
from tests.integration.harness import produce, read_topic, start_worker, total, wait_until

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def _state(kind: str, sid: str, minutes: float, **fields) -> tuple[str, bytes, bytes]:
    ev = dict(next(e for e in INPUT_EXAMPLES["subscriber-state"] if e["kind"] == kind))
    ev.update(subscriber_id=sid, event_id=f"{kind}-{sid}-{minutes}",
              event_time=(T0 + timedelta(minutes=minutes)).isoformat(), **fields)
    return "subscriber-state", sid.encode(), orjson.dumps(ev)


def _clock_movers(minutes: float, n: int = 40) -> list[tuple[str, bytes, bytes]]:
    """Harmless reports of other subscribers, on every partition, moving event time on."""
    return [_state("balance_reported", f"S9{i:07d}", minutes, system="billing") for i in range(n)]


def _alerts(settings: Settings) -> list[Alert]:
    return [Alert.model_validate_json(m.value())
            for m in read_topic(settings, settings.topic("alerts"))]


def test_restart_in_the_middle_of_a_grace_period(isolated: Settings) -> None:
    steps = default_pipeline(isolated)
    ensure_topics(isolated, tuple(s.name for s in steps) + system_tables(steps))
    sid = "S00000042"
    sent = produce(isolated, [
        _state("opened", sid, 0, plan_networks=["4g"]),
        _state("activated", sid, 0.5),
        _state("activated", sid, 0.5, system="hss"),
        _state("network_registered", sid, 1, system="hss"),
        # ordered at minute 2; the VAS platform never provisions it (grace 10 minutes)
        _state("product_ordered", sid, 2, product_id="VAS-MUSIC", platform="vas"),
        *_clock_movers(7),  # five minutes into the grace period
    ])
    worker = start_worker(isolated, worker_id="graceful")
    wait_until(lambda: total(worker.metrics(), "foresight_committed_records_total") >= len(sent),
               90, "first batch committed", worker)
    assert [a for a in _alerts(isolated) if a.rule_id == "product-not-provisioned"] == []
    worker.kill()

    more = produce(isolated, _clock_movers(13))  # past the deadline (12) and the lateness
    restarted = start_worker(isolated, worker_id="graceful")
    try:
        wait_until(lambda: total(restarted.metrics(), "foresight_audit_alerts_total",
                                 rule="product-not-provisioned", transition="fired") >= 1,
                   90, "the alert after the restart", restarted)
        # the alert is counted when its envelope is applied; the transaction that commits
        # the rest of the input can follow a moment later (commits run as soon as an
        # envelope is pending, so the input may be committed in several transactions)
        wait_until(lambda: total(restarted.metrics(), "foresight_committed_records_total")
                   >= len(more), 30, "the input after the restart committed", restarted)
        m = restarted.metrics()
        assert total(m, "foresight_audit_open_episodes", rule="product-not-provisioned") == 1
    finally:
        restarted.stop()
    fired = [a for a in _alerts(isolated) if a.rule_id == "product-not-provisioned"]
    assert len(fired) == 1, fired
    (alert,) = fired
    assert (alert.subscriber_id, alert.status, alert.sequence) == (sid, "firing", 1)
    assert alert.labels["item"] == "VAS-MUSIC"
    assert alert.starts_at == T0 + timedelta(minutes=2)
    assert alert.msisdn_masked.endswith("1234") and "8613800001234" not in alert.model_dump_json()
    hints = [AgentHint.model_validate_json(m.value())
             for m in read_topic(isolated, isolated.topic("agent-hints"))]
    mine = [h for h in hints if h.hint_id == alert.fingerprint]
    assert len(mine) == 1 and mine[0].active and mine[0].script
