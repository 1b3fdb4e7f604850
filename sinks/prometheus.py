"""Prometheus exposition of the worker's metrics on Faust's web server (``/metrics``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def register_metrics_page(app: Any, registry: CollectorRegistry, path: str = "/metrics",
                          before: Callable[[], None] | None = None) -> None:
    """Serve ``registry`` at ``path`` for Prometheus to scrape.

    ``before`` runs first on every scrape (e.g. to pull counts from a child process).
    """

    @app.page(path)
    async def metrics(web: Any, request: Any) -> Any:
        if before is not None:
            before()
        return web.bytes(generate_latest(registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])
