"""The contact-policy step in a real worker on the real broker: one decision per request
(also when the request is redelivered), caps that survive a kill -9 and restart, bad
requests to dead letters, the decisions metric, and a shadow policy's disagreements."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from schemas.outputs import ContactDecision, DeadLetter
from streams.app import default_pipeline
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.unit import system_tables
from tests.integration.harness import produce, read_topic, start_worker, total, wait_until

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)      # 10:00 in Shanghai


def _req(rid: str, sid: str, minutes: float = 0, channel: str = "telemarketing",
         purpose: str = "marketing") -> tuple[str, bytes, bytes]:
    return "contact-requests", sid.encode(), orjson.dumps({
        "schema_version": 1, "event_id": f"ev-{rid}", "kind": "contact_request",
        "event_time": (T0 + timedelta(minutes=minutes)).isoformat(), "request_id": rid,
        "subscriber_id": sid, "msisdn": "8613800001234", "campaign_id": "CMP-1",
        "purpose": purpose, "channel": channel})


def _seed(sid: str) -> tuple[str, bytes, bytes]:
    return "subscriber-state", sid.encode(), orjson.dumps({
        "schema_version": 1, "event_id": f"ev-seed-{sid}", "kind": "profile_changed",
        "system": "bss", "event_time": (T0 - timedelta(days=1)).isoformat(),
        "subscriber_id": sid, "msisdn": "8613800001234", "seed_user": True, "star_level": 2})


def _decisions(settings: Settings) -> list[ContactDecision]:
    return [ContactDecision.model_validate_json(m.value())
            for m in read_topic(settings, settings.topic("contact-decisions"))]


def _setup(settings: Settings) -> None:
    steps = default_pipeline(settings)
    ensure_topics(settings, tuple(s.name for s in steps) + system_tables(steps))


def test_decisions_redelivery_restart_and_dead_letters(isolated: Settings) -> None:
    _setup(isolated)
    subs = [f"S{i:08d}" for i in range(1, 9)]
    first = produce(isolated, [
        _seed(subs[0]),
        *[_req(f"RQ-A{i}", sid) for i, sid in enumerate(subs)],
        _req("RQ-A1", subs[1]),                              # redelivered: same request id
        ("contact-requests", subs[2].encode(), b'{"kind": "contact_request", "request_id": 1}'),
    ])
    worker = start_worker(isolated, worker_id="contact")
    wait_until(lambda: len(_decisions(isolated)) >= len(subs), 90, "first decisions", worker)
    wait_until(lambda: total(worker.metrics(), "foresight_committed_records_total")
               >= len(first) - 1, 60, "first batch committed", worker)
    got = _decisions(isolated)
    by_id = {d.request_id: d for d in got}
    assert len(got) == len(subs) and len(by_id) == len(subs)    # one per request id
    assert by_id["RQ-A0"].decision == "suppress" and by_id["RQ-A0"].reasons == ["seed_user"]
    assert all(by_id[f"RQ-A{i}"].decision == "allow" for i in range(1, len(subs)))
    m = worker.metrics()
    assert total(m, "foresight_contact_decisions_total", decision="suppress",
                 reason="seed_user") == 1
    assert total(m, "foresight_contact_decisions_total", decision="allow") == len(subs) - 1
    dead = [DeadLetter.model_validate_json(x.value())
            for x in read_topic(isolated, isolated.topic("dead-letters"))]
    assert [d.source_topic for d in dead] == ["contact-requests"]
    assert dead[0].reason == "invalid"

    worker.kill()                                            # no shutdown, no final commit
    produce(isolated, [
        _req("RQ-A1", subs[1]),                              # redelivered after the restart
        *[_req(f"RQ-B{i}", sid, minutes=60) for i, sid in enumerate(subs)],
    ])
    restarted = start_worker(isolated, worker_id="contact")
    try:
        wait_until(lambda: len(_decisions(isolated)) >= 2 * len(subs), 90,
                   "decisions after the restart", restarted)
        wait_until(lambda: total(restarted.metrics(), "foresight_contact_decisions_total")
                   >= len(subs), 60, "metrics after the restart", restarted)
        got = _decisions(isolated)
        by_id = {d.request_id: d for d in got}
        assert len(got) == 2 * len(subs) == len(by_id)       # RQ-A1 still decided once
        # the caps remember the allowed 10:00 contacts across the kill: same channel an hour
        # later is over the per-channel cap, allowed again a day after the first
        for i in range(1, len(subs)):
            d = by_id[f"RQ-B{i}"]
            assert d.decision == "suppress" and d.reasons == ["frequency_cap_channel"], d
            assert d.allowed_after == T0 + timedelta(days=1)
        assert by_id["RQ-B0"].reasons == ["seed_user"]
    finally:
        restarted.stop()


def test_shadow_policy_disagreements_are_counted(isolated: Settings, tmp_path: Path) -> None:
    _setup(isolated)
    root = Path(__file__).resolve().parents[2]
    shadow = tmp_path / "shadow.yaml"
    shadow.write_text((root / "agents/rules/contact-policy.yaml").read_text()
                      .replace("policy_version: cp-2026-12-01", "policy_version: shadow-1")
                      .replace("expr: status('bss') == 'closed'", "expr: 1 == 1"))
    produce(isolated, [_req(f"RQ-S{i}", f"S{i:08d}") for i in range(6)])
    worker = start_worker(isolated, worker_id="shadow",
                          env={"FORESIGHT_CONTACT_SHADOW_POLICY": str(shadow)})
    try:
        wait_until(lambda: len(_decisions(isolated)) >= 6, 90, "decisions", worker)
        got = _decisions(isolated)
        assert {d.decision for d in got} == {"allow"}                  # the live policy
        assert all(d.shadow is not None and d.shadow.decision == "suppress"
                   and d.shadow.reasons == ["subscriber_closed"] and not d.shadow.agrees
                   and d.shadow.policy_version == "shadow-1" for d in got)
        wait_until(lambda: total(worker.metrics(), "foresight_contact_shadow_disagreements_total",
                                 live="allow", shadow="suppress") == 6, 30, "metric", worker)
    finally:
        worker.stop()


def test_policy_dnd_command_writes_the_list(isolated: Settings, monkeypatch) -> None:
    from schemas.contacts import DoNotDisturb
    from streams.cli import main

    monkeypatch.setenv("FORESIGHT_TOPIC_PREFIX", isolated.topic_prefix)
    monkeypatch.setenv("FORESIGHT_APP_ID", isolated.app_id)
    monkeypatch.setenv("FORESIGHT_PARTITIONS", str(isolated.partitions))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", isolated.brokers)
    assert main(["policy", "dnd", "add", "S00000042", "--note", "asked on the hotline"]) == 0
    assert main(["policy", "dnd", "remove", "S00000042"]) == 0
    got = [(m.key(), DoNotDisturb.model_validate_json(m.value()))
           for m in read_topic(isolated, isolated.topic("do-not-disturb"))]
    assert [(k, e.listed) for k, e in got] == [(b"S00000042", True), (b"S00000042", False)]
    assert got[0][1].note == "asked on the hotline"
