"""The one exception root. Messages say what to do next, not only what went wrong."""


class ForesightError(Exception):
    """Root of every error Foresight raises on purpose."""


class ConfigError(ForesightError):
    """A setting is missing or inconsistent; the message names it and the fix."""


class BrokerError(ForesightError):
    """The Kafka broker cannot be reached, started or used as configured."""


class RuleError(ForesightError):
    """A rule or policy file is invalid; the message names the file and line."""
