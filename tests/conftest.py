"""Shared fixtures. Integration tests (marked ``integration``) use the real local Kafka."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from streams.settings import Settings


@pytest.fixture(scope="session")
def kafka_settings() -> Iterator[Settings]:
    """Settings pointing at a running broker: KAFKA_BOOTSTRAP_SERVERS, or the embedded one.

    The embedded Apache Kafka is started once per session if it is not already running,
    and left running (later sessions reuse it; ``foresight kafka stop`` stops it).
    """
    settings = Settings()
    if settings.local_broker:
        from streams.kafka_local import LocalKafka

        LocalKafka.from_settings(settings).start(quiet=True)
    yield settings
    # the tests' consumer groups, all at once: a worker's packer is a static member, so its
    # group stays non-empty for a session timeout after the test stopped it
    from streams.topics import delete_groups

    if _TAGS:
        delete_groups(settings, lambda g: any(tag in g for tag in _TAGS),
                      log=lambda msg: warnings.warn(msg, stacklevel=1), wait_s=15.0)


_TAGS: list[str] = []


@pytest.fixture(scope="module")
def private_kafka(kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A broker of the test module's own (free ports, a temporary home, the shared jars),
    for tests that stop and restart it; stopped and deleted afterwards. The shared broker
    is never restarted."""
    import shutil

    from streams.kafka_local import LocalKafka
    from tests.integration.harness import free_port

    shared = LocalKafka.from_settings(Settings())
    shared.fetch(quiet=True)
    root = tmp_path_factory.mktemp("private-kafka")
    kafka = LocalKafka(root=root / "kafka", port=free_port(), controller_port=free_port(),
                       heap="384m", partitions=kafka_settings.partitions, libs_dir=shared.libs)
    kafka.start(quiet=True)
    try:
        yield kafka
    finally:
        kafka.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def isolated(kafka_settings: Settings) -> Iterator[Settings]:
    """Settings with a fresh topic prefix and app id, so tests never see each other's data.

    Afterwards the test's topics (every name containing its tag) are deleted, and its
    consumer groups at the end of the session: the broker may be an operator's shared
    cluster, and on the embedded one thousands of leftover partitions pile up otherwise.
    """
    tag = uuid.uuid4().hex[:8]
    _TAGS.append(tag)
    home = kafka_settings.home.resolve() / "test-state" / tag
    yield kafka_settings.model_copy(update={
        "topic_prefix": f"t{tag}.", "app_id": f"fs-{tag}", "home": home})
    _tidy(kafka_settings, tag)  # the workers' logs in home stay, for debugging


def _tidy(settings: Settings, tag: str) -> None:
    """Best-effort cleanup: a broker hiccup here must not fail the test that just passed."""
    from streams.topics import delete_topics

    try:
        delete_topics(settings, lambda t: tag in t, log=lambda msg: warnings.warn(msg, stacklevel=1))
    except Exception as exc:
        warnings.warn(f"could not delete the topics of test run {tag}: {exc}", stacklevel=1)
