"""Configuration of the Alertmanager sink (``FORESIGHT_ALERTMANAGER_*``, flags override).

Kept beside :class:`streams.settings.Settings` rather than inside it: ``Settings`` says how
to reach Kafka (and the sink uses it for exactly that: broker, prefix, app id, TLS/SASL),
while these knobs concern one delivery process only and would clutter every worker's
configuration.

>>> c = AlertmanagerSinkConfig(url="http://am:9093/", resend_interval_s=30)
>>> c.alerts_endpoint, c.valid_for_s
('http://am:9093/api/v2/alerts', 120.0)
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class AlertmanagerSinkConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FORESIGHT_ALERTMANAGER_", frozen=True,
                                      extra="ignore", populate_by_name=True)

    url: str = Field(default="http://127.0.0.1:9093",
                     description="Alertmanager base URL (FORESIGHT_ALERTMANAGER_URL)")
    view_url: str = Field(
        default="http://127.0.0.1:6066/subscribers/{subscriber_id}",
        validation_alias=AliasChoices("FORESIGHT_VIEW_URL", "view_url"),
        description="generatorURL of every alert: the one-key view of its subscriber; "
        "placeholders {subscriber_id}, {fingerprint}, {rule_id} (FORESIGHT_VIEW_URL)")
    resend_interval_s: float = Field(
        default=60.0, ge=1.0, le=3600.0,
        description="firing alerts are sent again this often; each says it is valid for 4x "
        "this long, like Prometheus (FORESIGHT_ALERTMANAGER_RESEND_INTERVAL_S)")
    group: str = Field(default="", description="consumer group; default <app id>-sink-alertmanager "
                       "(FORESIGHT_ALERTMANAGER_GROUP)")
    batch_size: int = Field(default=500, ge=1, le=10_000,
                            description="alerts per POST (FORESIGHT_ALERTMANAGER_BATCH_SIZE)")
    queue_size: int = Field(
        default=10_000, ge=1,
        description="records held in memory before the sink stops reading (backpressure) "
        "(FORESIGHT_ALERTMANAGER_QUEUE_SIZE)")
    timeout_s: float = Field(default=10.0, gt=0, le=120,
                             description="HTTP timeout of one POST (FORESIGHT_ALERTMANAGER_TIMEOUT_S)")
    backoff_initial_s: float = Field(
        default=0.5, gt=0, description="first retry delay (FORESIGHT_ALERTMANAGER_BACKOFF_INITIAL_S)")
    backoff_max_s: float = Field(default=10.0, gt=0,
                                 description="retry delay cap (FORESIGHT_ALERTMANAGER_BACKOFF_MAX_S)")
    reject_attempts: int = Field(
        default=3, ge=1,
        description="a single alert Alertmanager rejects (4xx) this many times goes to "
        "dead-letters (FORESIGHT_ALERTMANAGER_REJECT_ATTEMPTS)")
    rebuild_max_age_s: float = Field(
        default=30 * 86_400.0, gt=0,
        description="on start, the firing set is rebuilt from the alerts of at most this "
        "long ago (default 30 d = the topic's retention) (FORESIGHT_ALERTMANAGER_REBUILD_MAX_AGE_S)")
    metrics_host: str = Field(default="127.0.0.1", description="FORESIGHT_ALERTMANAGER_METRICS_HOST")
    metrics_port: int = Field(default=6070, ge=0, le=65535,
                              description="/metrics port, 0 for none (FORESIGHT_ALERTMANAGER_METRICS_PORT)")
    sink_id: str = Field(default="alertmanager-sink",
                         description="the 'worker' of the dead letters it writes "
                         "(FORESIGHT_ALERTMANAGER_SINK_ID)")

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("FORESIGHT_ALERTMANAGER_URL must start with http:// or https://")
        return v.rstrip("/")

    @property
    def alerts_endpoint(self) -> str:
        return f"{self.url}/api/v2/alerts"

    @property
    def valid_for_s(self) -> float:
        """How long a firing alert stays active in Alertmanager without being sent again."""
        return 4 * self.resend_interval_s
