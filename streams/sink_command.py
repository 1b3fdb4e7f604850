"""``foresight sink alertmanager``: deliver the ``alerts`` topic to Prometheus Alertmanager.

Flags override ``FORESIGHT_ALERTMANAGER_*`` environment variables; the Kafka connection
(broker, prefix, app id, SASL/TLS) comes from the usual settings.
"""

from __future__ import annotations

import argparse
from typing import Any

DESCRIPTION = """\
Read the alerts topic (read_committed, its own consumer group <app id>-sink-alertmanager)
and post every record to Alertmanager's API v2 (POST /api/v2/alerts): firing alerts with
startsAt (re-sent every --resend-interval, valid for 4x that long, like Prometheus),
resolved ones once with endsAt. Offsets are committed only after Alertmanager accepted a
batch; while it is unreachable or answers 5xx the batch is retried with capped exponential
back-off, forever, and reading stops once --queue-size records wait (nothing is dropped).
A single alert it rejects (4xx) --reject-attempts times goes to dead-letters.
Metrics on http://127.0.0.1:<metrics port>/metrics. SIGTERM finishes the post in flight,
commits and exits 0. See docs/alertmanager.md."""

EXAMPLES = """\
examples:
  foresight sink alertmanager
  foresight sink alertmanager --url http://alertmanager:9093 --resend-interval 30 --metrics-port 6070
  FORESIGHT_ALERTMANAGER_URL=http://am:9093 FORESIGHT_VIEW_URL='https://foresight/view/{subscriber_id}' \\
    foresight sink alertmanager
"""


def register(sub: Any, common: Any) -> None:
    p = sub.add_parser("sink", help="deliver output topics to the outside world (alertmanager, "
                       "sms-webhook)",
                       description="Run a sink: one process delivering one output topic.")
    kinds = p.add_subparsers(dest="sink", required=True, metavar="SINK")
    a = kinds.add_parser("alertmanager", help="deliver alerts to Prometheus Alertmanager",
                         description=DESCRIPTION, epilog=EXAMPLES,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    common(a)
    a.add_argument("--url", help="Alertmanager base URL (FORESIGHT_ALERTMANAGER_URL, "
                   "default http://127.0.0.1:9093)")
    a.add_argument("--resend-interval", type=float, metavar="SECONDS",
                   help="re-send firing alerts this often (FORESIGHT_ALERTMANAGER_RESEND_INTERVAL_S, "
                   "default 60); each firing alert is valid 4x this long, so Alertmanager resolves "
                   "it by itself if the sink stops for good")
    a.add_argument("--metrics-port", type=int, help="port of /metrics, 0 for none "
                   "(FORESIGHT_ALERTMANAGER_METRICS_PORT, default 6070)")
    a.add_argument("--metrics-host", help="FORESIGHT_ALERTMANAGER_METRICS_HOST (default 127.0.0.1)")
    a.add_argument("--view-url", help="generatorURL template, placeholders {subscriber_id}, "
                   "{fingerprint}, {rule_id} (FORESIGHT_VIEW_URL, default "
                   "http://127.0.0.1:6066/subscribers/{subscriber_id})")
    a.add_argument("--group", help="consumer group (FORESIGHT_ALERTMANAGER_GROUP, default "
                   "<app id>-sink-alertmanager)")
    a.add_argument("--batch-size", type=int, help="alerts per POST (default 500)")
    a.add_argument("--queue-size", type=int, help="records held before reading pauses "
                   "(default 10000)")
    a.add_argument("--backoff-max", type=float, metavar="SECONDS",
                   help="cap of the retry back-off (default 10)")
    a.add_argument("--reject-attempts", type=int, help="4xx answers before a single alert "
                   "becomes a dead letter (default 3)")
    a.add_argument("--log-level", help="FORESIGHT_LOG_LEVEL (default warning)")
    a.set_defaults(func=cmd_alertmanager)
    register_sms(kinds)


def cmd_alertmanager(args: argparse.Namespace) -> int:
    from sinks.alertmanager import run_sink
    from sinks.alertmanager_config import AlertmanagerSinkConfig
    from streams.cli import ensure_broker, settings_from
    from streams.logs import configure

    settings = settings_from(args, log_level=args.log_level)
    flags = {"url": args.url, "resend_interval_s": args.resend_interval,
             "metrics_port": args.metrics_port, "metrics_host": args.metrics_host,
             "view_url": args.view_url, "group": args.group, "batch_size": args.batch_size,
             "queue_size": args.queue_size, "backoff_max_s": args.backoff_max,
             "reject_attempts": args.reject_attempts}
    given = {k: v for k, v in flags.items() if v is not None}
    # validated like the environment (model_copy would skip validation)
    config = AlertmanagerSinkConfig(**given)
    configure(settings, "sink-alertmanager")
    ensure_broker(settings)
    return run_sink(settings, config)


SMS_DESCRIPTION = """\
Receive Alertmanager webhook notifications (POST /alertmanager) and text each one as ONE
SMS per recipient through Kannel's sendsms interface: status, alert count, rule, severity
and the first summaries, phone numbers in the texts masked, cut to --max-segments parts
(GSM-7 160/153 characters, UCS-2 for Chinese 70/67). Recipients: ?to=+86...,+86... in the
webhook URL, or /alertmanager/<list>, or the receiver's name, looked up in
--recipients-file (YAML list name -> numbers). Answers 2xx only once Kannel accepted every
SMS, else 502 so Alertmanager retries. Metrics on the same port at /metrics.
Routing, grouping, silences and quiet hours stay in Alertmanager. See docs/sms.md."""

SMS_EXAMPLES = """\
examples:
  FORESIGHT_SMS_PASSWORD=secret foresight sink sms-webhook --listen 127.0.0.1:9097 \\
    --kannel-url http://smsbox:13013/cgi-bin/sendsms --username foresight --sender 10086 \\
    --recipients-file /etc/foresight/sms-recipients.yml
"""


def register_sms(kinds: Any) -> None:
    s = kinds.add_parser("sms-webhook", help="Alertmanager webhook -> SMS through Kannel",
                         description=SMS_DESCRIPTION, epilog=SMS_EXAMPLES,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--listen", metavar="HOST:PORT",
                   help="FORESIGHT_SMS_LISTEN (default 127.0.0.1:9097)")
    s.add_argument("--kannel-url", help="Kannel sendsms URL (FORESIGHT_SMS_KANNEL_URL, default "
                   "http://127.0.0.1:13013/cgi-bin/sendsms)")
    s.add_argument("--username", help="Kannel sendsms-user (FORESIGHT_SMS_USERNAME)")
    s.add_argument("--password", help="its password (FORESIGHT_SMS_PASSWORD: prefer the "
                   "environment, a flag shows in ps)")
    s.add_argument("--sender", help="from of the SMS (FORESIGHT_SMS_SENDER; default Kannel's "
                   "default-sender)")
    s.add_argument("--recipients-file", help="YAML: list name -> numbers "
                   "(FORESIGHT_SMS_RECIPIENTS_FILE)")
    s.add_argument("--max-segments", type=int, help="parts per SMS at most "
                   "(FORESIGHT_SMS_MAX_SEGMENTS, default 3)")
    s.add_argument("--prefix", help="first word of every SMS (FORESIGHT_SMS_PREFIX, default "
                   "Foresight)")
    s.add_argument("--dedup-window", type=float, metavar="SECONDS",
                   help="do not text a number twice for the same notification within this "
                   "(FORESIGHT_SMS_DEDUP_WINDOW_S, default 600; keep it below repeat_interval)")
    s.add_argument("--log-level", help="FORESIGHT_LOG_LEVEL (default info: one line per "
                   "notification)")
    s.set_defaults(func=cmd_sms_webhook)


def cmd_sms_webhook(args: argparse.Namespace) -> int:
    import os

    from sinks.sms_config import SmsWebhookConfig
    from sinks.sms_webhook import run_webhook
    from streams.logs import configure, install
    from streams.settings import Settings

    flags = {"listen": args.listen, "kannel_url": args.kannel_url, "username": args.username,
             "password": args.password, "sender": args.sender,
             "recipients_file": args.recipients_file, "max_segments": args.max_segments,
             "prefix": args.prefix, "dedup_window_s": args.dedup_window}
    config = SmsWebhookConfig(**{k: v for k, v in flags.items() if v is not None})
    level = args.log_level or os.environ.get("FORESIGHT_LOG_LEVEL") or "info"
    # the one Foresight log format (text or FORESIGHT_LOG_FORMAT=json, masked, no colour)
    configure(Settings(log_level=level), "sms-webhook")
    install()
    return run_webhook(config)
