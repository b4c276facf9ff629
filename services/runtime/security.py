"""The security mapping: the settings' SASL/TLS configuration as FastStream's security object.

The settings say it once (`security_protocol`, `sasl_*`, `ssl_*`); `security_kwargs` turns
them into the client arguments (the SSL context is built there, once), and this module hands
the same values to FastStream, whose broker takes a security object instead of keywords.
"""

from __future__ import annotations

from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from services.broker.clients import security_kwargs
from services.settings import Settings

#: FastStream's class for each SASL mechanism the settings allow.
SASL_CLASSES: dict[str, type[SASLPlaintext | SASLScram256 | SASLScram512]] = {
    "SCRAM-SHA-512": SASLScram512, "SCRAM-SHA-256": SASLScram256, "PLAIN": SASLPlaintext}


def faststream_security(settings: Settings) -> BaseSecurity | None:
    """FastStream's security object for the configured protocol (None for PLAINTEXT)."""
    kw = security_kwargs(settings)
    ssl_context = kw.get("ssl_context")
    use_ssl = settings.security_protocol in {"SSL", "SASL_SSL"}
    if settings.security_protocol.startswith("SASL"):
        cls = SASL_CLASSES[settings.sasl_mechanism]
        return cls(username=kw["sasl_plain_username"], password=kw["sasl_plain_password"],
                   ssl_context=ssl_context, use_ssl=use_ssl)
    if use_ssl:
        return BaseSecurity(ssl_context=ssl_context, use_ssl=True)
    return None
