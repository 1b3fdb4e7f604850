"""The ground-truth file's contract: one pydantic model per line type, and a loader.

Evaluators of later capabilities (cross-system audit, propensity models, contact policy,
network care) score themselves against these records::

    from streams.simulator.truth import Inconsistency, load_truth, must_fire
    truth = [r for r in load_truth("truth.jsonl") if isinstance(r, Inconsistency)]
    alerting = [r for r in truth if must_fire(r, lateness_ms=2000)]

Times are zoned ISO strings in event time. The first line is a :class:`RunHeader`, the
last a :class:`Summary` (absent only if the run was killed); see docs/simulator.md.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from streams.simulator.catalog import GRACE_S
from streams.simulator.errors import ReplayFileError

RuleId = Literal[
    "bss-active-hss-barred", "bss-suspended-hss-active", "product-not-provisioned",
    "cancelled-still-provisioned", "cancelled-still-charged", "charged-while-suspended",
    "charged-without-product", "topup-still-suspended", "5g-plan-without-5g-signing",
    "activated-not-registered", "grant-not-credited", "port-out-still-active",
]
#: Event-time grace period of each audit rule, in seconds (0: the condition is the alert).
GRACE_SECONDS: dict[str, int] = dict(GRACE_S)
#: Benign look-alikes of a fault (``Inconsistency.lookalike``), see docs/simulator.md.
LookalikeKind = Literal["clears_within_grace", "same_instant", "clears_out_of_order"]
LOOKALIKE_KINDS: tuple[str, ...] = ("clears_within_grace", "same_instant",
                                    "clears_out_of_order")

PrecursorKind = Literal[
    "dropped_calls", "regulator_call", "hotline_calls", "bill_shock", "audit_fault",
    "bad_cell", "complaint", "bad_survey", "competitor_calls",
]


class _Truth(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class RunHeader(_Truth):
    """First line: how the run was configured (enough to reproduce it)."""

    type: Literal["run"]
    version: int
    seed: int
    start: AwareDatetime
    speed: float
    subscribers: int
    rate: float
    cells: int
    lines: int
    horizon_s: float
    bootstrap: bool
    late_rate: float
    late_max_s: float
    duplicate_rate: float
    invalid_rate: float
    event_id_prefix: str
    args: dict[str, Any]
    #: The allowed lateness the run was made for (``--lateness``; absent before version 2).
    lateness_s: float | None = None
    lookalike_rate: float | None = None


class Inconsistency(_Truth):
    """An interval during which one audit rule's condition held for one subscriber.

    ``must_fire`` (truth version 2): true for injected faults (they outlast the grace
    period plus the allowed lateness), false for look-alikes (``lookalike`` names the
    variant); null for natural intervals and in older files: use :func:`must_fire`.
    """

    type: Literal["inconsistency"]
    rule: RuleId
    subscriber_id: str
    item: str | None
    start: AwareDatetime
    end: AwareDatetime | None
    injected: bool
    detail: dict[str, Any]
    must_fire: bool | None = None
    lookalike: LookalikeKind | None = None

    @property
    def grace_s(self) -> int:
        """The rule's grace period in seconds."""
        return GRACE_SECONDS[self.rule]

    def duration_s(self) -> float | None:
        """How long the condition held (None while still open at the end)."""
        return None if self.end is None else (self.end - self.start).total_seconds()


def must_fire_ms(grace_ms: int, start_ms: int, end_ms: int | None,
                 lateness_ms: int) -> bool | None:
    """Should an interval alert, from its length alone (see :func:`must_fire`).

    >>> must_fire_ms(300_000, 0, None, 2000), must_fire_ms(300_000, 0, 302_001, 2000)
    (True, True)
    >>> must_fire_ms(300_000, 0, 300_000, 2000), must_fire_ms(300_000, 0, 301_000, 2000)
    (False, None)
    >>> must_fire_ms(0, 0, 2000, 2000), must_fire_ms(0, 0, 2001, 2000)
    (False, True)
    """
    if end_ms is None:
        return True
    held = end_ms - start_ms
    if held > grace_ms + lateness_ms:
        return True
    if held <= (grace_ms or lateness_ms):
        return False
    return None


def must_fire(rec: Inconsistency, lateness_ms: int) -> bool | None:
    """Must the audit alert on ``rec``, for workers with this allowed lateness?

    The explicit ``must_fire`` when the record has one (truth version 2: injected faults
    true, look-alikes false). Otherwise (older truth files, natural intervals): True if
    the condition held longer than the grace period plus ``lateness_ms`` or is still open
    at the end of the run, False if it held no longer than the grace period (for grace-0
    rules: no longer than ``lateness_ms``), None (undecidable) in between.

    >>> from datetime import datetime, timedelta, timezone
    >>> t0 = datetime(2025, 6, 1, tzinfo=timezone.utc)
    >>> rec = Inconsistency(type="inconsistency", rule="product-not-provisioned",
    ...                     subscriber_id="S1", item="vas-news", start=t0,
    ...                     end=t0 + timedelta(minutes=10, seconds=1), injected=False, detail={})
    >>> must_fire(rec, 2000) is None, must_fire(rec, 500)
    (True, True)
    >>> must_fire(rec.model_copy(update={"must_fire": False}), 500)
    False
    """
    if rec.must_fire is not None:
        return rec.must_fire
    end = None if rec.end is None else round((rec.end - rec.start) / timedelta(milliseconds=1))
    return must_fire_ms(rec.grace_s * 1000, 0, end, lateness_ms)


class Precursor(BaseModel):
    """Something that happened before a complaint or port-out (extra fields describe it)."""

    model_config = ConfigDict(frozen=True, extra="allow")
    kind: PrecursorKind
    at: AwareDatetime


class ComplaintTruth(_Truth):
    """A complaint the models should have seen coming."""

    type: Literal["complaint"]
    subscriber_id: str
    complaint_id: str
    opened_at: AwareDatetime
    channel: str
    severity: Literal["normal", "escalated", "regulator"]
    category: str
    precursors: list[Precursor]


class Decoy(_Truth):
    """Noise for the models: a complaint with no warning, or warnings with no outcome."""

    type: Literal["decoy"]
    kind: Literal["complaint_without_precursors", "precursors_without_complaint",
                  "precursors_without_churn"]
    subscriber_id: str
    at: AwareDatetime
    precursors: list[Precursor]
    complaint_id: str | None = None
    channel: str | None = None
    severity: Literal["normal", "escalated", "regulator"] | None = None
    category: str | None = None


class Churn(_Truth):
    """A subscriber who requested port-out (携号转网) at ``port_out_at``."""

    type: Literal["churn"]
    subscriber_id: str
    port_out_at: AwareDatetime
    precursors: list[Precursor]


class DegradingCell(_Truth):
    """A cell whose ``metric`` drifts from ``from`` to ``to`` (reached at ``ramp_end``)."""

    type: Literal["degrading_cell"]
    cell_id: str
    scenario: str
    start: AwareDatetime
    end: AwareDatetime | None
    metric: Literal["drop_rate", "call_setup_success", "throughput_mbps"]
    from_: float = Field(alias="from")
    to: float
    ramp_end: AwareDatetime


class AttenuatingLine(_Truth):
    """A fibre line whose ONU rx power slides below -27 dBm (光衰)."""

    type: Literal["attenuating_line"]
    line_id: str
    subscriber_id: str
    start: AwareDatetime
    rx_power_dbm_start: float
    rx_power_dbm_end: float
    reaches_end_at: AwareDatetime


class TerminalMismatch(_Truth):
    """端网业不匹配: the terminal cannot carry the contracted speed."""

    type: Literal["terminal_mismatch"]
    line_id: str
    subscriber_id: str
    contracted_mbps: int
    terminal_max_mbps: int


class ProtectedContact(_Truth):
    """A contact request touching a protected subscriber, with the expected decision."""

    type: Literal["protected_contact"]
    request_id: str
    subscriber_id: str
    purpose: Literal["marketing", "service"]
    channel: str
    reasons: list[Literal["seed_user", "recent_complaint", "do_not_disturb", "open_fault"]]
    expected: Literal["suppress", "allow"]
    at: AwareDatetime


class InvalidInput(_Truth):
    """A deliberately broken record; ``seq`` is its index among run-phase records."""

    type: Literal["invalid_input"]
    topic: str
    key: str | None
    reason: Literal["not_json", "invalid", "oversize", "empty", "key_mismatch", "missing_key",
                    "event_time_out_of_bounds"]
    detail: dict[str, Any]
    seq: int
    value_sha256: str


class Summary(_Truth):
    """Last line: counts per topic and per truth type, out-of-order and duplicate ids."""

    model_config = ConfigDict(frozen=True, extra="allow")
    type: Literal["summary"]
    end: AwareDatetime
    records: int
    bootstrap_records: int
    run_records: int
    topics: dict[str, int]
    truth: dict[str, int]
    inconsistencies: dict[str, dict[str, int]]
    out_of_order: dict[str, Any]
    duplicates: dict[str, Any]
    invalid: int


TruthRecord = Annotated[
    RunHeader | Inconsistency | ComplaintTruth | Decoy | Churn | DegradingCell
    | AttenuatingLine | TerminalMismatch | ProtectedContact | InvalidInput | Summary,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(TruthRecord)


def parse_truth_line(line: bytes | str) -> Any:
    """One truth line as its model (raises ``ValidationError``)."""
    return _ADAPTER.validate_python(orjson.loads(line))


def load_truth(path: str | Path) -> list[Any]:
    """Every record of a truth file, validated, in file order.

    Raises :class:`ReplayFileError` naming the line that does not match the contract.
    """
    path = Path(path)
    records = []
    try:
        with path.open("rb") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    records.append(parse_truth_line(line))
                except (orjson.JSONDecodeError, ValidationError) as exc:
                    raise ReplayFileError(
                        f"truth file {path} line {number}: {str(exc).splitlines()[0]}"
                    ) from exc
    except OSError as exc:
        raise ReplayFileError(f"cannot read truth file {path}: {exc.strerror}") from exc
    return records
