"""Security settings, Faust's credentials and the web token, without a broker."""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import SecretStr

from schemas.registry import INPUT_TOPICS
from streams.acls import Acl, acl_bindings, kafka_acls_commands, role_acls, worker_acls
from streams.app import default_pipeline
from streams.cli import main
from streams.errors import ConfigError
from streams.kafka_local import LocalKafka
from streams.security import faust_credentials
from streams.settings import Settings
from streams.unit import system_tables
from streams.web_auth import token_middleware

STEPS = default_pipeline()
TABLES = (*(s.name for s in STEPS), *system_tables(STEPS))
SCRAM = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256",
         "sasl_username": "foresight", "sasl_password": "s3cret"}


# --- settings -> librdkafka ------------------------------------------------------------------
def test_plaintext_config_has_no_credentials() -> None:
    conf = Settings(bootstrap_servers="k:9092").kafka_client_config()
    assert conf == {"bootstrap.servers": "k:9092", "security.protocol": "PLAINTEXT"}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_mechanism_reaches_librdkafka(mechanism: str) -> None:
    conf = Settings(**{**SCRAM, "sasl_mechanism": mechanism}).kafka_client_config()
    assert conf["security.protocol"] == "SASL_PLAINTEXT"
    assert conf["sasl.mechanisms"] == mechanism
    assert (conf["sasl.username"], conf["sasl.password"]) == ("foresight", "s3cret")


def test_tls_files_reach_librdkafka(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / n for n in ("ca.pem", "client.pem", "client.key"))
    for f in (ca, cert, key):
        f.write_text("-")
    conf = Settings(security_protocol="SSL", ssl_cafile=ca, ssl_certfile=cert, ssl_keyfile=key,
                    ssl_key_password="kp").kafka_client_config()
    assert conf["security.protocol"] == "SSL"
    assert conf["ssl.ca.location"] == str(ca)
    assert conf["ssl.certificate.location"] == str(cert)
    assert conf["ssl.key.location"] == str(key)
    assert conf["ssl.key.password"] == "kp"
    assert "sasl.mechanisms" not in conf


def test_settings_come_from_the_environment_and_print_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"FORESIGHT_SECURITY_PROTOCOL": "SASL_SSL",
                        "FORESIGHT_SASL_MECHANISM": "SCRAM-SHA-512",
                        "FORESIGHT_SASL_USERNAME": "fs", "FORESIGHT_SASL_PASSWORD": "pw-1",
                        "FORESIGHT_SSL_KEY_PASSWORD": "", "FORESIGHT_API_TOKEN": "tok-1"}.items():
        monkeypatch.setenv(name, value)
    s = Settings()
    assert s.sasl_mechanism == "SCRAM-SHA-512"
    assert s.ssl_key_password is None  # empty means unset (compose passes unset as "")
    assert s.api_token is not None and s.api_token.get_secret_value() == "tok-1"
    assert "pw-1" not in repr(s) and "tok-1" not in repr(s) and "pw-1" not in str(s)


@pytest.mark.parametrize(("kwargs", "hint"), [
    ({"security_protocol": "SASL_SSL"}, "FORESIGHT_SASL_USERNAME and FORESIGHT_SASL_PASSWORD"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_username": "fs"}, "FORESIGHT_SASL_PASSWORD"),
    ({"sasl_username": "fs", "sasl_password": "pw"}, "FORESIGHT_SECURITY_PROTOCOL=SASL_SSL"),
    ({"ssl_cafile": "/etc/hostname"}, "set FORESIGHT_SECURITY_PROTOCOL=SSL or SASL_SSL"),
    ({"security_protocol": "SSL", "ssl_certfile": "/etc/hostname"}, "FORESIGHT_SSL_KEYFILE"),
    ({"security_protocol": "SSL", "ssl_key_password": "x"}, "FORESIGHT_SSL_KEYFILE"),
    ({"security_protocol": "SSL", "ssl_cafile": "/nonexistent/ca.pem"}, "FORESIGHT_SSL_CAFILE"),
])
def test_inconsistent_security_settings_say_what_to_set(kwargs: dict, hint: str) -> None:
    s = Settings(**kwargs)
    with pytest.raises(ConfigError, match=hint.replace("(", r"\(")):
        s.kafka_client_config()
    with pytest.raises(ConfigError):
        faust_credentials(s)


# --- settings -> Faust's aiokafka clients ----------------------------------------------------
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_faust_passes_sasl_and_scram_to_aiokafka(mechanism: str) -> None:
    """Through Faust's own mapping (the one its consumer and producers use)."""
    creds = faust_credentials(Settings(**{**SCRAM, "sasl_mechanism": mechanism}))
    auth = credentials_to_aiokafka_auth(creds, None)
    assert auth["security_protocol"] == "SASL_PLAINTEXT"
    assert auth["sasl_mechanism"] == mechanism
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("foresight", "s3cret")
    assert auth["ssl_context"] is None
    assert "s3cret" not in repr(creds)


def test_sasl_ssl_gives_faust_a_verifying_tls_context() -> None:
    creds = faust_credentials(Settings(**{**SCRAM, "security_protocol": "SASL_SSL"}))
    auth = credentials_to_aiokafka_auth(creds, None)
    assert auth["security_protocol"] == "SASL_SSL"
    ctx = auth["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None,
                                   reason="the openssl command makes the test certificates")


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=foresight-test", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


@needs_openssl
def test_ssl_with_client_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    creds = faust_credentials(Settings(security_protocol="SSL", ssl_cafile=cert,
                                       ssl_certfile=cert, ssl_keyfile=key))
    auth = credentials_to_aiokafka_auth(creds, None)
    assert auth["security_protocol"] == "SSL"
    assert isinstance(auth["ssl_context"], ssl.SSLContext)


@needs_openssl
def test_a_certificate_that_does_not_load_says_which_files(tmp_path: Path) -> None:
    cert, _ = _self_signed(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _, wrong_key = _self_signed(other)
    with pytest.raises(ConfigError, match="key matches the certificate"):
        faust_credentials(Settings(security_protocol="SSL", ssl_certfile=cert, ssl_keyfile=wrong_key))


# --- local SASL broker config ----------------------------------------------------------------
def test_local_sasl_broker_has_no_plaintext_client_listener(tmp_path: Path) -> None:
    kafka = LocalKafka(root=tmp_path, port=1, controller_port=2, heap="256m", partitions=2,
                       sasl_users=(("admin", "a-1"), ("foresight", "f-2")))
    props = kafka._write_configs().read_text()
    assert "listeners=SASL_PLAINTEXT://127.0.0.1:1,CONTROLLER://127.0.0.1:2" in props
    assert "PLAINTEXT://127.0.0.1:1" not in props.replace("SASL_PLAINTEXT://", "")
    assert 'user_foresight="f-2"' in props
    assert (tmp_path / "server.properties").stat().st_mode & 0o077 == 0
    assert "SCRAM-SHA-512=[name=foresight,password=f-2]" in kafka._scram_arguments()
    assert "f-2" not in repr(kafka)
    with pytest.raises(ConfigError, match="letters, digits"):
        LocalKafka(root=tmp_path, port=1, controller_port=2, heap="256m", partitions=2,
                   sasl_users=(("x", 'pw"; evil'),))


# --- web token -------------------------------------------------------------------------------
async def _statuses(token: str | None, requests: list[tuple[str, str | None]]) -> list[int]:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(middlewares=[token_middleware(SecretStr(token) if token else None)])
    for path in ("/metrics", "/progress", "/health", "/table/", "/router/", "/"):
        app.router.add_get(path, ok)
    async with TestClient(TestServer(app)) as client:
        out = []
        for path, header in requests:
            headers = {"Authorization": header} if header else {}
            async with client.get(path, headers=headers) as resp:
                out.append(resp.status)
        return out


def test_counters_are_open_and_state_needs_the_token() -> None:
    requests = [("/metrics", None), ("/progress", None), ("/health", None),
                ("/table/", None), ("/router/", None), ("/", None), ("/nowhere", None),
                ("/table/", "Bearer wrong"), ("/table/", "Basic t0ken"), ("/table/", "Bearer t0ken"),
                ("/router/", "bearer t0ken"), ("/nowhere", "Bearer t0ken")]
    assert asyncio.run(_statuses("t0ken", requests)) == [
        200, 200, 200, 401, 401, 401, 401, 401, 401, 200, 200, 404]


def test_without_a_configured_token_state_is_closed() -> None:
    assert asyncio.run(_statuses(None, [("/metrics", None), ("/table/", None),
                                        ("/table/", "Bearer ")])) == [200, 403, 403]


# --- ACLs ------------------------------------------------------------------------------------
def _grants(acls: list) -> dict[tuple[str, str], set[str]]:
    return {(a.resource, a.name): set(a.operations) for a in acls}


def test_worker_acls_read_inputs_and_own_state_but_only_write_outputs() -> None:
    s = Settings(topic_prefix="p.", app_id="fs")
    g = _grants(worker_acls(s, ("unified-view", "progress")))
    assert g[("topic", "p.subscriber-state")] == {"Read"}
    assert g[("topic", "p.foresight-packed")] == {"Read", "Write"}
    assert g[("topic", "p.fs-unified-view-changelog")] == {"Read", "Write"}
    assert g[("topic", "p.dead-letters")] == {"Write"}  # raw payloads: never read back
    assert g[("topic", "p.alerts")] == {"Write"}
    assert {n for r, n in g if r == "group"} == {"fs", "fs-packer", "fs-restore"}
    assert all(a.pattern == "literal" for a in worker_acls(s, ()) if a.resource != "transactional-id")


def test_roles_only_reach_their_own_topics() -> None:
    s = Settings()
    assert {a.name for a in role_acls("producer", s)} == set(INPUT_TOPICS)
    assert all(a.operations == ("Write",) for a in role_acls("producer", s))
    assert "dead-letters" not in {a.name for a in role_acls("sink", s)}
    dl = role_acls("dead-letters", s, group="dlq-*")
    assert [(a.resource, a.name, a.operations, a.pattern) for a in dl] == [
        ("topic", "dead-letters", ("Read",), "literal"), ("group", "dlq-", ("Read",), "prefixed")]
    with pytest.raises(ConfigError, match="may not use dead-letters"):
        role_acls("sink", s, topics=["dead-letters"])
    with pytest.raises(ConfigError, match="unknown role"):
        role_acls("admin", s)


def test_acls_become_kafka_acls_commands_and_admin_bindings() -> None:
    acls = [Acl("transactional-id", "fs-", ("Write", "Describe"), "prefixed")]
    (line,) = kafka_acls_commands("User:fs", acls, bootstrap="k:9093")
    assert line.endswith("--allow-principal User:fs --operation Write --operation Describe "
                         "--transactional-id fs- --resource-pattern-type prefixed")
    bindings = acl_bindings("User:fs", acls)
    assert [(b.restype, b.name, b.resource_pattern_type, b.operation) for b in bindings] == [
        (ResourceType.TRANSACTIONAL_ID, "fs-", ResourcePatternType.PREFIXED, AclOperation.WRITE),
        (ResourceType.TRANSACTIONAL_ID, "fs-", ResourcePatternType.PREFIXED, AclOperation.DESCRIBE)]


def test_acls_command_prints_the_pipelines_changelogs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["acls", "worker", "User:fs", "--topic-prefix", "q."]) == 0
    out = capsys.readouterr().out
    assert "--topic q.foresight-audit-changelog" in out
    assert out.count("kafka-acls.sh") == len(worker_acls(Settings(), TABLES))


# --- docker ----------------------------------------------------------------------------------
def test_docker_publishes_only_the_worker_port_and_loopback_ui() -> None:
    """The image exposes one port (its state paths need the token); compose publishes
    nothing beyond the host's loopback."""
    root = Path(__file__).resolve().parents[2]
    exposed = re.findall(r"^EXPOSE\s+(.+)$", (root / "docker/Dockerfile").read_text(), re.M)
    assert exposed == ["6066"]
    compose = yaml.safe_load((root / "docker/compose.yaml").read_text())
    published = [(name, str(p)) for name, svc in compose["services"].items()
                 for p in svc.get("ports", [])]
    assert published and all(p.startswith("127.0.0.1:") for _, p in published), published
    assert all("ports" not in svc for name, svc in compose["services"].items()
               if name.startswith(("kafka", "worker")))
