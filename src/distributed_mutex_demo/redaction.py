"""Secrets never reach a log line: the filter that masks them, whatever produced the line."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from distributed_mutex_demo.config import Settings

# Variables that azure-identity reads and that hold secrets: masked like our own settings.
IDENTITY_SECRET_VARIABLES = ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PASSWORD", "AZURE_PASSWORD",
                             "IDENTITY_HEADER", "MSI_SECRET")


class RedactSecrets(logging.Filter):
    """Last line of defence: no secret value reaches a log line, whatever produced it."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self._secrets = sorted(set(secrets), key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, None
        record.msg, record.args = redact(message, self._secrets), None
        return True


def all_secrets(settings: Settings) -> list[str]:
    extra = [os.environ.get(name, "") for name in IDENTITY_SECRET_VARIABLES]
    return settings.secrets() + [value for value in extra if len(value) >= 4]


def redact(text: str, secrets: Sequence[str]) -> str:
    for secret in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
