"""Kafka credentials for Faust's own aiokafka clients, from the settings every client uses.

confluent-kafka clients (packer, committer, restore consumer, admin) take their security
settings as librdkafka keys from :meth:`Settings.kafka_client_config`. Faust's consumer
and producer are aiokafka clients: they take a ``faust.auth`` credentials object and an
:class:`ssl.SSLContext` instead. Both are built from the same ``FORESIGHT_*`` settings,
so a worker's Faust clients never connect with less than its librdkafka clients (before
this module they connected with no credentials at all).
"""

from __future__ import annotations

import ssl

from faust.auth import SASLCredentials, SSLCredentials
from faust.types.auth import CredentialsT

from streams.errors import ConfigError
from streams.settings import Settings


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A client TLS context: brokers verified (CA file or the system's CAs, and host name),
    the client certificate presented when one is configured.

    Verification is never switched off: a broker that cannot be verified is a
    configuration problem to fix (``FORESIGHT_SSL_CAFILE``), not to skip.
    """
    settings.check_security()
    cafile = str(settings.ssl_cafile) if settings.ssl_cafile is not None else None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
        if settings.ssl_certfile is not None and settings.ssl_keyfile is not None:
            password = (settings.ssl_key_password.get_secret_value()
                        if settings.ssl_key_password is not None else None)
            context.load_cert_chain(str(settings.ssl_certfile), str(settings.ssl_keyfile),
                                    password=password)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"cannot load the TLS files (FORESIGHT_SSL_CAFILE={settings.ssl_cafile}, "
            f"FORESIGHT_SSL_CERTFILE={settings.ssl_certfile}, FORESIGHT_SSL_KEYFILE="
            f"{settings.ssl_keyfile}): {exc}. Check that they are PEM files, that the key "
            "matches the certificate, and FORESIGHT_SSL_KEY_PASSWORD if the key is encrypted"
        ) from exc
    return context


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """Faust's ``broker_credentials`` for ``FORESIGHT_SECURITY_PROTOCOL``; None for PLAINTEXT.

    Faust's aiokafka driver maps these to aiokafka's ``security_protocol``,
    ``sasl_mechanism`` (SCRAM included), ``sasl_plain_username``/``_password`` and
    ``ssl_context`` for its consumer, its producer and its transactional producers.

    >>> creds = faust_credentials(Settings(security_protocol="SASL_PLAINTEXT",
    ...     sasl_mechanism="SCRAM-SHA-256", sasl_username="fs", sasl_password="pw"))
    >>> creds.protocol.value, creds.mechanism.value, creds.username
    ('SASL_PLAINTEXT', 'SCRAM-SHA-256', 'fs')
    >>> faust_credentials(Settings()) is None
    True
    """
    settings.check_security()
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings) if protocol in ("SSL", "SASL_SSL") else None
    if protocol == "SSL":
        return SSLCredentials(context)
    assert settings.sasl_password is not None  # check_security() guarantees it
    # SASLCredentials selects SASL_SSL exactly when it is given a TLS context
    return SASLCredentials(username=settings.sasl_username,
                           password=settings.sasl_password.get_secret_value(),
                           mechanism=settings.sasl_mechanism, ssl_context=context)
