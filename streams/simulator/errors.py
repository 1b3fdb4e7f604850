"""Errors of the simulator and replay tools; each message says what to do next."""

from __future__ import annotations

from streams.errors import ForesightError


class SimulatorInputError(ForesightError):
    """A ``simulate`` flag is out of range or inconsistent; the message names the flag."""


class ReplayFileError(ForesightError):
    """A record file cannot be replayed; the message names the file and the line."""
