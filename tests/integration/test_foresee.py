"""Foresee on the real broker: a worker with the ``foresee`` step and the single learner.

The simulator's first days go in; the worker turns outcomes into labelled examples on
``model-examples``; the learner learns them and publishes a version to ``models``; the
worker loads it (hot swap) and the next days' care-list records carry that version.
Thresholds are lowered in a test catalog so that a care-list record is certain once a
learned model is loaded (the untrained model adds nobody: ``min_examples``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agents.foresee.catalog import DEFAULT_PATH
from agents.foresee.evaluation import simulate
from schemas.models import ModelExample
from schemas.outputs import CareEntry
from streams.app import default_pipeline
from streams.models_topic import read_models
from streams.settings import Settings
from streams.topics import ensure_topics
from streams.unit import system_tables
from tests.integration.harness import produce, read_topic, start_worker, wait_until

pytestmark = pytest.mark.integration
FORESIGHT = str(Path(sys.executable).parent / "foresight")
STEPS = "unified-view,audit,foresee"


def _catalog(tmp: Path) -> Path:
    data = yaml.safe_load(DEFAULT_PATH.read_text())
    data["min_examples"] = 5
    for m in data["models"].values():
        m["on"], m["off"] = 0.02, 0.01
    path = tmp / "foresee.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def test_examples_learned_once_published_loaded_and_named_in_the_care_list(
        isolated: Settings, tmp_path: Path) -> None:
    settings = isolated.model_copy(update={"steps": STEPS,
                                           "foresee_catalog": _catalog(tmp_path)})
    steps = default_pipeline(settings)
    ensure_topics(settings, (*(s.name for s in steps), *system_tables(steps)))
    records = simulate(120, 24, 11, 7.0, 0.3, 0.05)
    start = min(r[3] for r in records if r[3])
    split = start + 18 * 86_400_000
    first = [(t, k.encode(), v) for t, k, v, ts in records if ts < split and k]
    later = [(t, k.encode(), v) for t, k, v, ts in records if ts >= split and k]
    produce(settings, first)
    env = {"FORESIGHT_STEPS": STEPS, "FORESIGHT_FORESEE_CATALOG": str(settings.foresee_catalog)}
    worker = start_worker(settings, worker_id="w1", env=env)
    log = (settings.home / "learner.log").open("ab")
    learner = subprocess.Popen(
        [FORESIGHT, "models", "learn", "--interval", "1", "--max-seconds", "150"],
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.brokers,
             "FORESIGHT_TOPIC_PREFIX": settings.topic_prefix, "FORESIGHT_APP_ID": settings.app_id,
             "FORESIGHT_HOME": str(settings.home), "FORESIGHT_PARTITIONS": str(settings.partitions),
             **env},
        stdout=log, stderr=subprocess.STDOUT)
    try:
        def complaint_model() -> object:
            snap = read_models(settings, timeout=5).get("complaint")
            return snap if snap is not None and snap.examples >= 5 else None
        published = wait_until(complaint_model, 120,
                               "a complaint model version on the models topic", worker)
        assert published.version != "complaint@v000000000"
        listed = subprocess.run(
            [FORESIGHT, "models", "list", "--json"], capture_output=True, text=True, timeout=60,
            env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.brokers,
                 "FORESIGHT_TOPIC_PREFIX": settings.topic_prefix,
                 "FORESIGHT_HOME": str(settings.home)})
        rows = {r["model"]: r for r in json.loads(listed.stdout)}
        assert rows["complaint"]["examples"] >= published.examples, listed.stderr
        examples = [ModelExample.model_validate_json(m.value())
                    for m in read_topic(settings, settings.topic("model-examples"))]
        assert examples and {e.model for e in examples} >= {"complaint"}
        assert len({e.example_id for e in examples}) == len(examples)  # exactly once
        wait_until(lambda: "loaded model complaint@v" in worker.log.read_text(errors="replace"),
                   60, "the worker loaded a published version", worker)
        produce(settings, later)

        def learned_care() -> list[CareEntry]:
            care = [CareEntry.model_validate_json(m.value())
                    for m in read_topic(settings, settings.topic("care-list"), timeout=5)]
            return [c for c in care if c.model_version
                    and not c.model_version.endswith("@v000000000")]
        entries = wait_until(learned_care, 90, "a care-list record from a learned model", worker)
        versions = {c.model_version for c in entries}
        assert any(v.startswith(("complaint@v", "dissatisfaction@v", "churn@v")) for v in versions)
        assert all(c.reasons is not None and c.msisdn_masked.startswith("*") for c in entries)
    finally:
        learner.terminate()
        try:
            learner.wait(20)
        except subprocess.TimeoutExpired:
            learner.kill()
        log.close()
        worker.stop()


def _example(i: int, label: bool) -> bytes:
    ex = ModelExample(example_id=f"{i:016x}", model="complaint", subscriber_id=f"S{i:08d}",
                      at_ms=1_750_000_000_000 + i, labelled_at_ms=1_750_000_000_000 + i,
                      features={"hotline_7d": float(i % 4), "dropped_7d": float(i % 3)},
                      label=label, score=0.5, version="complaint@v000000000")
    return ex.model_dump_json().encode()


def _learn(settings: Settings, seconds: float) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.brokers,
           "FORESIGHT_TOPIC_PREFIX": settings.topic_prefix, "FORESIGHT_APP_ID": settings.app_id,
           "FORESIGHT_HOME": str(settings.home), "FORESIGHT_PARTITIONS": str(settings.partitions)}
    done = subprocess.run([FORESIGHT, "models", "learn", "--interval", "0.5", "--max-seconds",
                           str(seconds)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_restarted_learner_learns_every_example_once(isolated: Settings) -> None:
    """The model is published in the same transaction as the consumed offsets: a learner
    stopped and started again resumes from its last version and learns the rest, once."""
    ensure_topics(isolated)
    produce(isolated, [("model-examples", b"complaint", _example(i, i % 4 == 3))
                       for i in range(300)])
    _learn(isolated, 10)
    first = read_models(isolated)["complaint"]
    assert first.examples == 300 and first.positives == 75
    produce(isolated, [("model-examples", b"complaint", _example(i, i % 4 == 3))
                       for i in range(300, 500)])
    _learn(isolated, 10)
    second = read_models(isolated)["complaint"]
    assert second.examples == 500 and second.positives == 125
    assert second.version == "complaint@v000000500"
