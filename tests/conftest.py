"""Shared fixtures. Integration tests (marked ``integration``) use the real local Kafka."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

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


@pytest.fixture
def isolated(kafka_settings: Settings) -> Settings:
    """Settings with a fresh topic prefix and app id, so tests never see each other's data."""
    tag = uuid.uuid4().hex[:8]
    return kafka_settings.model_copy(update={
        "topic_prefix": f"t{tag}.", "app_id": f"fs-{tag}",
        "home": kafka_settings.home.resolve() / "test-state" / tag,
    })
