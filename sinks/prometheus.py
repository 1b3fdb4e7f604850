"""Prometheus exposition of the worker's metrics on Faust's web server (``/metrics``)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def register_metrics_page(app: Any, registry: CollectorRegistry, path: str = "/metrics") -> None:
    """Serve ``registry`` at ``path`` for Prometheus to scrape."""

    @app.page(path)
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])
