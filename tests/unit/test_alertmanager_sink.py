"""The Alertmanager sink's pure parts: mapping, batching, retry policy, re-send schedule."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from schemas.outputs import Alert
from sinks.alertmanager import parse_alert
from sinks.alertmanager_config import AlertmanagerSinkConfig
from sinks.alertmanager_mapping import LABEL_NAME, check_postable, to_postable
from sinks.firing import FiringAlerts
from sinks.outbox import Backoff, Outbox, Pending, transient
from streams.decoding import Rejected

MSISDN = "8613812345678"
T = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
NOW = T + timedelta(minutes=5)
VIEW = "http://127.0.0.1:6066/subscribers/{subscriber_id}"


def alert(status: str = "firing", seq: int = 1, fp: str = "af3ce3eecf64bd2b", **kw: Any) -> Alert:
    base: dict[str, Any] = dict(
        fingerprint=fp, sequence=seq, status=status, rule_id="bss-active-hss-barred",
        severity="critical", subscriber_id="S00000001", msisdn_masked="*********5678",
        systems=["bss", "hss"],
        labels={"category": "status", "systems": "bss,hss", "rule": "bss-active-hss-barred",
                "severity": "critical", "region": "east", "team": "hss-ops"},
        annotations={"summary": "BSS active, HSS barred (fraud) for *********5678",
                     "guidance": "Lift the fraud bar in the HSS.",
                     "resolution": "Within 30 minutes."},
        starts_at=T, detected_at=T, evidence={"bss.status": "active @ 2026-11-26T01:00:00Z"})
    if status == "resolved":
        base["ends_at"] = T + timedelta(minutes=3)
        base["annotations"] = {**base["annotations"], "resolved_summary": "Cleared at 01:03."}
    base.update(kw)
    return Alert(**base)


# --- mapping --------------------------------------------------------------------------------
def test_firing_alert_maps_to_a_postable_alert() -> None:
    p = to_postable(alert(), view_url=VIEW, now=NOW, valid_for_s=240)
    assert p["labels"] == {"alertname": "bss-active-hss-barred", "rule": "bss-active-hss-barred",
                           "severity": "critical", "category": "status", "systems": "bss,hss",
                           "region": "east", "team": "hss-ops", "episode": "af3ce3eecf64bd2b"}
    assert p["annotations"]["summary"].startswith("BSS active")
    assert p["annotations"]["guidance"] == "Lift the fraud bar in the HSS."
    assert p["annotations"]["resolution"] == "Within 30 minutes."
    assert p["annotations"]["msisdn"] == "*********5678"
    assert p["startsAt"] == "2026-11-26T01:00:00Z"
    assert p["endsAt"] == "2026-11-26T01:09:00Z"  # now + 4 x resend interval
    assert p["generatorURL"] == "http://127.0.0.1:6066/subscribers/S00000001"
    assert check_postable(p) == []


def test_resolved_alert_carries_its_true_end_and_resolved_summary() -> None:
    p = to_postable(alert("resolved", 2), view_url=VIEW, now=NOW, valid_for_s=240)
    assert p["endsAt"] == "2026-11-26T01:03:00Z"
    assert p["annotations"]["resolved_summary"] == "Cleared at 01:03."


def test_item_label_and_invalid_names_are_made_valid() -> None:
    a = alert(labels={"category": "provisioning", "item": "vas-news", "fix-by": "noc",
                      "subscriber_id": "S00000001", "empty": ""},
              annotations={"summary": "x", "run-book": "y"})
    p = to_postable(a, view_url=VIEW, now=NOW, valid_for_s=240)
    assert p["labels"]["item"] == "vas-news"
    assert p["labels"]["fix_by"] == "noc"
    assert "subscriber_id" not in p["labels"] and "empty" not in p["labels"]
    assert "run_book" in p["annotations"]
    assert all(LABEL_NAME.match(k) for k in (*p["labels"], *p["annotations"]))


def test_no_full_phone_number_reaches_alertmanager() -> None:
    """Even if a template put the full MSISDN in a text, the postable carries it masked."""
    leaky = alert(annotations={"summary": f"line {MSISDN} barred", "guidance": f"call +{MSISDN}"},
                  evidence={"hss.msisdn": MSISDN}, labels={"category": "status", "note": MSISDN})
    body = orjson.dumps([to_postable(leaky, view_url=VIEW, now=NOW, valid_for_s=240)]).decode()
    assert MSISDN not in body
    assert "5678" in body  # masked, not removed
    assert MSISDN[:-4] not in body


def test_endsat_never_before_startsat() -> None:
    """An episode dated ahead of the wall clock (accelerated simulation) is still valid."""
    future = alert(starts_at=NOW + timedelta(hours=2))
    p = to_postable(future, view_url=VIEW, now=NOW, valid_for_s=240)
    assert check_postable(p) == []
    weird = alert("resolved", 2, ends_at=T - timedelta(minutes=1))
    assert check_postable(to_postable(weird, view_url=VIEW, now=NOW, valid_for_s=240)) == []


def test_generator_url_template_can_avoid_the_subscriber_id() -> None:
    p = to_postable(alert(), view_url="https://fs/alerts/{fingerprint}?rule={rule_id}", now=NOW,
                    valid_for_s=240)
    assert p["generatorURL"] == "https://fs/alerts/af3ce3eecf64bd2b?rule=bss-active-hss-barred"


def test_parse_alert_rejects_what_is_not_an_alert() -> None:
    assert isinstance(parse_alert(alert().model_dump_json().encode()), Alert)
    assert parse_alert(b"{nope").reason == "not_json"
    assert parse_alert(json.dumps({"kind": "alert"}).encode()).reason == "invalid"


def test_config_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORESIGHT_ALERTMANAGER_URL", "http://am:9093/")
    monkeypatch.setenv("FORESIGHT_ALERTMANAGER_RESEND_INTERVAL_S", "15")
    monkeypatch.setenv("FORESIGHT_VIEW_URL", "https://view/{subscriber_id}")
    c = AlertmanagerSinkConfig()
    assert (c.alerts_endpoint, c.resend_interval_s, c.valid_for_s, c.view_url) == (
        "http://am:9093/api/v2/alerts", 15.0, 60.0, "https://view/{subscriber_id}")
    assert AlertmanagerSinkConfig(url="http://x:1").url == "http://x:1"  # flags win
    with pytest.raises(ValueError, match="http"):
        AlertmanagerSinkConfig(url="file:///etc/passwd")


# --- outbox: batching, commits, retries -----------------------------------------------------
def item(partition: int, offset: int, good: bool = True) -> Pending:
    return Pending(partition, offset, b"k", b"v", "alert" if good else None,
                   None if good else Rejected("invalid", "bad"))  # type: ignore[arg-type]


def test_batches_in_order_and_commit_only_after_acceptance() -> None:
    box = Outbox(capacity=10, batch_size=3)
    for off in range(5):
        box.add(item(off % 2, off))
    b = box.next_batch(0.0)
    assert [(p.partition, p.offset) for p in b.items] == [(0, 0), (1, 1), (0, 2)]
    assert box.next_batch(0.0) is b  # same head until answered
    assert box.accepted().commit == {0: 3, 1: 2}
    assert [p.offset for p in box.next_batch(0.0).items] == [3, 4]
    assert box.accepted().commit == {1: 4, 0: 5}
    assert box.next_batch(0.0) is None and len(box) == 0


def test_full_outbox_means_backpressure() -> None:
    box = Outbox(capacity=3, batch_size=2)
    for off in range(3):
        box.add(item(0, off))
    assert box.full
    box.next_batch(0.0)
    assert box.full  # the batch in flight still counts
    box.accepted()
    assert not box.full


def test_unavailable_is_retried_forever_with_capped_backoff() -> None:
    box = Outbox(capacity=10, batch_size=5, backoff=Backoff(0.5, 4.0), reject_attempts=3)
    box.add(item(0, 0))
    now, delays = 0.0, []
    for status in (0, 503, 500, 0, 502, 0, 0, 0, 0, 0):
        b = box.next_batch(now)
        assert b is not None
        out = box.failed(status, "down", now)
        assert not out.dead and not out.commit
        delays.append(out.retry_in)
        assert box.next_batch(now + out.retry_in - 0.01) is None  # waits its back-off
        now += out.retry_in
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert box.next_batch(now) is not None
    assert box.accepted().commit == {0: 1}  # nothing lost after ten failures


def test_rejected_batch_is_split_and_only_the_bad_alert_becomes_a_dead_letter() -> None:
    box = Outbox(capacity=10, batch_size=5, backoff=Backoff(0.5, 4.0), reject_attempts=2)
    for off in range(3):
        box.add(item(0, off))
    box.next_batch(0.0)
    assert box.failed(400, "invalid label", 0.0).retry_in == 0.0
    assert [p.offset for p in box.next_batch(0.0).items] == [0]
    assert box.accepted().commit == {0: 1}
    assert [p.offset for p in box.next_batch(0.0).items] == [1]  # alone, offset 1 is the bad one
    assert box.failed(400, "bad", 0.0).retry_in == 0.5
    out = box.failed(400, "bad", 1.0)
    assert [p.offset for p, _ in out.dead] == [1] and out.commit == {0: 2}
    assert "rejected it 2 times (HTTP 400)" in out.dead[0][1]
    assert [p.offset for p in box.next_batch(1.0).items] == [2]


def test_invalid_records_leave_only_after_everything_before_them() -> None:
    box = Outbox(capacity=10, batch_size=5)
    box.add(item(0, 0))
    box.add(item(0, 1, good=False))
    box.add(item(0, 2))
    assert box.invalid() == []
    assert [p.offset for p in box.next_batch(0.0).items] == [0]
    assert box.invalid() == []  # head in flight
    box.accepted()
    assert [p.offset for p in box.invalid()] == [1]
    assert [p.offset for p in box.next_batch(0.0).items] == [2]


def test_transient_statuses() -> None:
    assert [s for s in (0, 200, 400, 404, 408, 413, 422, 429, 500, 503) if transient(s)] == \
        [0, 408, 429, 500, 503]


def test_revoked_partitions_leave_the_outbox() -> None:
    box = Outbox(capacity=10, batch_size=5)
    for off in range(4):
        box.add(item(off % 2, off))
    box.next_batch(0.0)
    box.drop_partitions([1])
    assert [p.offset for p in box.next_batch(0.0).items] == [0, 2]


# --- re-send schedule (fake clock) ----------------------------------------------------------
def test_firing_alerts_are_resent_every_interval_and_resolved_ones_dropped() -> None:
    f: FiringAlerts[str] = FiringAlerts(resend_interval_s=60)
    assert f.apply(0, "a", 1, "firing", "a1", scheduled=0.0)  # read live: the outbox sends it
    assert f.apply(1, "b", 1, "firing", "b1")  # rebuilt at start: due at once
    assert [fp for fp, _ in f.due(0.0)] == ["b"]
    f.sent(["b"], 1.0)
    assert f.due(59.9) == [] and f.next_due() == 60.0
    assert [fp for fp, _ in f.due(60.0)] == ["a"]
    f.sent(["a"], 60.0)
    assert f.apply(0, "a", 2, "firing", "a2 escalated")  # latest sequence wins, schedule kept
    assert f.due(61.0) == [("b", "b1")]
    f.sent(["b"], 61.0)
    assert f.due(120.0) == [("a", "a2 escalated")]
    assert f.apply(0, "a", 3, "resolved", "a3") and len(f) == 1
    assert not f.apply(0, "a", 2, "firing", "stale")  # no resurrection after resolution
    assert not f.apply(1, "b", 1, "firing", "dup")
    f.drop_partitions([1])
    assert len(f) == 0 and f.next_due() is None


def test_closed_memory_is_bounded() -> None:
    f: FiringAlerts[str] = FiringAlerts(resend_interval_s=60, closed_memory=2)
    for fp in "abc":
        f.apply(0, fp, 2, "resolved", fp)
    assert f.apply(0, "a", 1, "firing", "a")  # forgotten: the oldest closed fingerprint
    assert not f.apply(0, "c", 1, "firing", "c")


def test_due_is_limited_per_post() -> None:
    f: FiringAlerts[int] = FiringAlerts(resend_interval_s=60)
    for i in range(10):
        f.apply(0, f"{i:016x}", 1, "firing", i)
    assert len(f.due(0.0, limit=4)) == 4
