"""``network-kpis``: cell KPIs per window and broadband line measurements.

Keyed by cell id or line id, not by subscriber: network care scores cells and lines.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from schemas.common import CellId, InboundEvent, LineId, Ratio, SubscriberId


class Scenario(StrEnum):
    """Where a cell serves, for network problem scoring (积分制)."""

    RESIDENTIAL = "residential"
    BUSINESS = "business"
    CAMPUS = "campus"
    TRANSPORT = "transport"
    HOSPITAL = "hospital"
    GOVERNMENT = "government"
    RURAL = "rural"


class CellKpi(InboundEvent):
    """KPIs of one cell over ``[window_start, event_time)``."""

    kind: Literal["cell_kpi"]
    cell_id: CellId
    window_start: AwareDatetime
    scenario: Scenario = Scenario.RESIDENTIAL
    call_setup_success: Ratio
    drop_rate: Ratio
    sms_delivery: Ratio = 1.0
    throughput_mbps: float = Field(ge=0.0, le=100_000.0)
    users: int = Field(ge=0, le=1_000_000)


class LineMeasurement(InboundEvent):
    """A broadband (FTTH) line: ONU optical power, speeds, terminal capability."""

    kind: Literal["line_measurement"]
    line_id: LineId
    subscriber_id: SubscriberId | None = None
    onu_rx_power_dbm: float = Field(ge=-50.0, le=10.0)
    contracted_mbps: int = Field(ge=0, le=100_000)
    measured_mbps: float = Field(ge=0.0, le=100_000.0)
    terminal_max_mbps: int = Field(ge=0, le=100_000)


NetworkKpi = Annotated[CellKpi | LineMeasurement, Field(discriminator="kind")]
