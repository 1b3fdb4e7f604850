"""Configuration of the SMS webhook (``FORESIGHT_SMS_*``, flags override).

Separate from :class:`streams.settings.Settings`: the webhook does not talk to Kafka at
all (Alertmanager calls it), so it needs none of the broker settings and they need none
of its knobs.

>>> c = SmsWebhookConfig(listen="0.0.0.0:9097", kannel_url="http://smsbox:13013")
>>> c.host_port, c.password.get_secret_value()
(('0.0.0.0', 9097), '')
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SmsWebhookConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FORESIGHT_SMS_", frozen=True, extra="ignore")

    listen: str = Field(default="127.0.0.1:9097",
                        description="host:port of the webhook and its /metrics (FORESIGHT_SMS_LISTEN)")
    kannel_url: str = Field(default="http://127.0.0.1:13013/cgi-bin/sendsms",
                            description="Kannel smsbox sendsms URL (FORESIGHT_SMS_KANNEL_URL)")
    username: str = Field(default="", description="Kannel sendsms-user (FORESIGHT_SMS_USERNAME)")
    password: SecretStr = Field(default=SecretStr(""),
                                description="its password (FORESIGHT_SMS_PASSWORD; prefer the "
                                "environment to the flag, which every `ps` shows)")
    sender: str = Field(default="", description="`from` of the SMS; empty: Kannel's default-sender "
                        "(FORESIGHT_SMS_SENDER)")
    recipients_file: Path | None = Field(default=None,
                                         description="YAML list name -> numbers "
                                         "(FORESIGHT_SMS_RECIPIENTS_FILE)")
    max_segments: int = Field(default=3, ge=1, le=10,
                              description="parts of one concatenated SMS at most "
                              "(FORESIGHT_SMS_MAX_SEGMENTS)")
    prefix: str = Field(default="Foresight", description="first word of every SMS "
                        "(FORESIGHT_SMS_PREFIX)")
    dedup_window_s: float = Field(
        default=600.0, ge=0,
        description="an SMS Kannel accepted is not sent again to the same number for the same "
        "notification within this window, so Alertmanager's retries after a partial failure "
        "do not text everyone twice; keep it below the route's repeat_interval "
        "(FORESIGHT_SMS_DEDUP_WINDOW_S)")
    timeout_s: float = Field(default=10.0, gt=0, le=60,
                             description="HTTP timeout of one sendsms call (FORESIGHT_SMS_TIMEOUT_S)")

    @field_validator("kannel_url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("FORESIGHT_SMS_KANNEL_URL must start with http:// or https://")
        return v

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        _host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("FORESIGHT_SMS_LISTEN must be host:port, e.g. 127.0.0.1:9097")
        return v

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 (bare :port means all)
