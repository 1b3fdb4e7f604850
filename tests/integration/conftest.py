"""Fixtures shared by the integration tests of the operations parts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_sms_webhook import BEARERBOX, FAKESMSC, SMSBOX, Kannel, _need


@pytest.fixture
def kannel(tmp_path: Path) -> Iterator[Kannel]:
    """A real Kannel (bearerbox + smsbox) with its fake SMSC as the operator's side, on free
    127.0.0.1 ports; a missing Debian package fails the test, naming it."""
    _need(BEARERBOX, SMSBOX, FAKESMSC)
    k = Kannel(tmp_path / "kannel")
    k.dir.mkdir()
    try:
        k.start()
        yield k
    finally:
        k.stop()
