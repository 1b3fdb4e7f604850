"""The embedded Apache Kafka: fetched from Maven Central once, run as one KRaft node.

Foresight's default is the real broker, not a fake: ``foresight kafka start`` fetches the
Apache Kafka 4.2 jars with Maven (cached under ``<home>/kafka/libs``), formats KRaft storage
once, starts broker+controller on 127.0.0.1 with a bounded heap, and waits until the broker
answers a metadata request. A second ``start`` reuses a broker that is already up, so tests
and the demo can share one. Set ``KAFKA_BOOTSTRAP_SERVERS`` to use an external cluster.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from streams.errors import BrokerError, ConfigError
from streams.settings import Settings

KAFKA_VERSION = "4.2.0"
_BROKER_JAR = f"kafka_2.13-{KAFKA_VERSION}.jar"

_SERVER_PROPERTIES = """\
# Written by foresight: a single-node KRaft broker+controller on loopback.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners={listener}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners={listener}://127.0.0.1:{port}
listener.security.protocol.map={listener}:{listener},CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name={listener}
log.dirs={data_dir}
num.partitions={partitions}
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=24
log.segment.bytes=268435456
log.cleaner.dedupe.buffer.size=33554432
num.network.threads=2
num.io.threads=4
"""

# The one client listener authenticates: PLAIN users are listed in its JAAS line, SCRAM users
# are created at format time (kafka-storage format --add-scram). The broker reaches itself
# (transaction markers) over the same listener as the first user, with PLAIN. ACLs are
# enforced; the first user is the administrator. ANONYMOUS is only ever the node itself
# on the loopback controller listener (broker -> controller); a production cluster puts
# that listener on TLS or SASL and a private network instead.
_SASL_PROPERTIES = """\
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:{admin};User:ANONYMOUS
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=\
org.apache.kafka.common.security.plain.PlainLoginModule required \
username="{admin}" password="{admin_password}" {plain_users};
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=\
org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=\
org.apache.kafka.common.security.scram.ScramLoginModule required;
"""

_SASL_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")

_LOG4J = """\
# Written by foresight: broker log to a file, warnings and up (server.log in the same folder).
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = warn
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = info
"""


@dataclass(frozen=True)
class LocalKafka:
    """Paths and ports of the embedded broker, derived from :class:`Settings`.

    With ``sasl_users`` (``(name, password)`` pairs) the broker's only client listener is
    ``SASL_PLAINTEXT`` with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 for every user, no
    plaintext listener, and ACLs enforced (the first user administers): a private broker
    for tests that prove every client authenticates and needs no more than its ACLs.
    ``libs_dir`` lets such a broker use jars already fetched for another home.
    """

    root: Path
    port: int
    controller_port: int
    heap: str
    partitions: int
    sasl_users: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    libs_dir: Path | None = None

    def __post_init__(self) -> None:
        for name, password in self.sasl_users:
            # both go verbatim into a JAAS line and a kafka-storage --add-scram argument
            if not (_SASL_NAME.fullmatch(name) and _SASL_NAME.fullmatch(password)):
                raise ConfigError(f"SASL user {name!r}: names and passwords of the local broker "
                                  "may use only letters, digits, '.', '_' and '-'")

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalKafka:
        return cls(
            root=(settings.home / "kafka").resolve(),
            port=settings.local_port,
            controller_port=settings.local_controller_port,
            heap=settings.local_heap,
            partitions=settings.partitions,
        )

    @property
    def libs(self) -> Path:
        return self.libs_dir or self.root / "libs"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def pid_file(self) -> Path:
        return self.root / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def listener(self) -> str:
        return "SASL_PLAINTEXT" if self.sasl_users else "PLAINTEXT"

    def client_config(self) -> dict[str, str]:
        """librdkafka settings that reach this broker (as its first SASL user, if any)."""
        conf = {"bootstrap.servers": self.bootstrap, "security.protocol": self.listener}
        if self.sasl_users:
            name, password = self.sasl_users[0]
            conf.update({"sasl.mechanisms": "PLAIN", "sasl.username": name,
                         "sasl.password": password})
        return conf

    # --- fetch ---------------------------------------------------------------------------
    def fetched(self) -> bool:
        return (self.libs / _BROKER_JAR).is_file()

    def fetch(self, *, quiet: bool = False) -> None:
        """Download the broker jars with Maven once; later calls find them cached."""
        if self.fetched():
            return
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError(
                "Maven (mvn) is not on PATH: install it (apt-get install maven) or point "
                "KAFKA_BOOTSTRAP_SERVERS at an existing Kafka cluster"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        pom = self.root / "pom.xml"
        pom.write_text(resources.files("streams").joinpath("kafka-pom.xml").read_text())
        if not quiet:
            print(f"fetching Apache Kafka {KAFKA_VERSION} jars from Maven Central into {self.libs} ...",
                  file=sys.stderr)
        proc = subprocess.run(
            [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
             f"-DoutputDirectory={self.libs}"],
            capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0 or not self.fetched():
            raise BrokerError(
                "mvn could not fetch the Kafka jars (is Maven Central reachable?):\n"
                + (proc.stdout + proc.stderr)[-2000:]
            )

    # --- format / start / stop -----------------------------------------------------------
    def _java(self) -> str:
        java = shutil.which("java")
        if java is None:
            raise BrokerError("java is not on PATH: the local broker needs Java 17 or newer")
        return java

    def _classpath(self) -> str:
        return str(self.libs / "*")

    def _write_configs(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        props = self.root / "server.properties"
        text = _SERVER_PROPERTIES.format(
            listener=self.listener, port=self.port, controller_port=self.controller_port,
            data_dir=self.data_dir, partitions=self.partitions,
        )
        if self.sasl_users:
            (admin, admin_password), *_ = self.sasl_users
            text += _SASL_PROPERTIES.format(
                admin=admin, admin_password=admin_password,
                plain_users=" ".join(f'user_{n}="{p}"' for n, p in self.sasl_users))
        if self.sasl_users:  # passwords inside: owner only, before they are written
            props.touch(mode=0o600)
            props.chmod(0o600)
        props.write_text(text)
        (self.root / "log4j2.properties").write_text(_LOG4J.format(log_file=self.log_file))
        return props

    def _format(self, props: Path) -> None:
        if (self.data_dir / "meta.properties").is_file():
            return
        cluster_id = _kafka_uuid()
        proc = subprocess.run(
            [self._java(), "-cp", self._classpath(),
             f"-Dlog4j2.configurationFile={self.root / 'log4j2.properties'}",
             # "=": a random id may start with "-", which argparse would read as an option
             "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", f"--config={props}",
             *self._scram_arguments()],
            capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            raise BrokerError(f"formatting KRaft storage failed:\n{proc.stdout}{proc.stderr}")

    def _scram_arguments(self) -> list[str]:
        """SCRAM credentials written into the cluster metadata before the first start."""
        return [arg for name, password in self.sasl_users
                for mech in ("SCRAM-SHA-256", "SCRAM-SHA-512")
                for arg in ("--add-scram", f"{mech}=[name={name},password={password}]")]

    def pid(self) -> int | None:
        """PID of a broker this launcher started and that is still alive."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def port_open(self) -> bool:
        with socket.socket() as s:
            s.settimeout(0.5)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def start(self, *, timeout: float = 90.0, quiet: bool = False) -> bool:
        """Start the broker unless one already answers; return True if this call started it."""
        if self.port_open() and wait_ready(self.bootstrap, timeout=timeout,
                                           config=self.client_config()):
            return False
        self.fetch(quiet=quiet)
        props = self._write_configs()
        self._format(props)
        cmd = [
            self._java(), f"-Xms{self.heap}", f"-Xmx{self.heap}", "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.root / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.root}",
            "-cp", self._classpath(), "kafka.Kafka", str(props),
        ]
        # posix_spawn in its own session, not subprocess.Popen: the broker outlives this
        # call (and this process), and a Popen object collected while its child runs warns
        out = os.open(self.root / "broker.stdout", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            pid = os.posix_spawn(cmd[0], cmd, dict(os.environ), setsid=True, file_actions=[
                (os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, out, 2)])
        finally:
            os.close(out)
        self.pid_file.write_text(str(pid))
        if not quiet:
            print(f"starting Apache Kafka {KAFKA_VERSION} on {self.bootstrap} (pid {pid}) ...",
                  file=sys.stderr)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            exited, status = os.waitpid(pid, os.WNOHANG)
            if exited:
                raise BrokerError(
                    f"the broker exited with status {status}; see {self.log_file} and "
                    f"{self.root / 'broker.stdout'}"
                )
            if self.port_open() and wait_ready(self.bootstrap, timeout=2.0,
                                               config=self.client_config()):
                return True
            time.sleep(0.2)
        raise BrokerError(f"the broker did not become ready within {timeout:.0f}s; see {self.log_file}")

    def stop(self, *, timeout: float = 30.0) -> bool:
        """Stop the broker this launcher started; return False if none was running."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None or _is_zombie(pid):
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):  # reap it if it was our child
            os.waitpid(pid, 0)
        self.pid_file.unlink(missing_ok=True)
        return True

    def wipe(self) -> None:
        """Delete the broker's data (topics, offsets); the jars stay cached."""
        if self.pid() is not None:
            raise BrokerError("stop the local broker before wiping its data (foresight kafka stop)")
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] == "Z"
    except OSError:
        return True


def _kafka_uuid() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding."""
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def wait_ready(bootstrap: str, *, timeout: float = 30.0,
               config: Mapping[str, str] | None = None) -> bool:
    """True once the broker answers a metadata request with at least one broker.

    ``config`` carries the security settings of a broker that needs them
    (:meth:`LocalKafka.client_config`, :meth:`Settings.kafka_client_config`).
    """
    from confluent_kafka.admin import AdminClient

    deadline = time.monotonic() + timeout
    admin = AdminClient({**(config or {}), "bootstrap.servers": bootstrap,
                         "socket.timeout.ms": 2000})
    while time.monotonic() < deadline:
        try:
            md = admin.list_topics(timeout=2.0)
            if md.brokers:
                return True
        except Exception:  # noqa: S110 - not ready yet, retry until the deadline
            pass
        time.sleep(0.2)
    return False
