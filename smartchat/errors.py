"""One error hierarchy, every message written for the person who ran the command.

    SmartChatError                    anything the user can fix; the CLI prints it, no traceback
    ├── UsageError                    a command was called wrong (exit 2)
    ├── ContactFileError              the contact file can't be read at all (exit 2)
    ├── ChatbotError                  the chatbot YAML is inconsistent (exit 1)
    │   └── ChatbotFileError          the chatbot file can't be read at all (exit 2)
    ├── ContactValidationError        the file breaks the rules; carries the report (exit 1)
    ├── NotFoundError                 a chatbot or campaign id that does not exist (exit 1)
    ├── CampaignStateError            not allowed in the campaign's state (exit 1)
    ├── QueryError                    an analyst's SQL was refused (it writes) or failed (exit 1)
    ├── StoreError                    the DuckDB store can't be opened or stays busy (exit 1)
    └── GatewayError                  the SMS aggregator failed a request
        ├── GatewayRateLimited        429: slow down and retry
        └── GatewayRejected           4xx: this message will never go through as sent

`exit_code` tells the CLI what to return: 1 for invalid input, 2 for usage errors (the same
convention as the Unix tools people know).
"""

from __future__ import annotations

from typing import Any


class SmartChatError(Exception):
    """Base of every error the user can act on; `str(err)` is the whole message."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(SmartChatError):
    exit_code = 2


class ContactFileError(SmartChatError):
    """The contact file can't be read: missing, wrong format, corrupt, encrypted, bad encoding."""

    exit_code = 2


class ChatbotError(SmartChatError):
    """The chatbot YAML is unreadable or inconsistent; the message names file, step and field."""


class ChatbotFileError(ChatbotError):
    """The chatbot file is missing, a folder, or not text: like an unreadable contact file."""

    exit_code = 2


class ContactValidationError(SmartChatError):
    """The contact file breaks the rules; `report` holds every failure (see tasks.validation)."""

    def __init__(self, message: str, report: Any) -> None:
        super().__init__(message)
        self.report = report


class NotFoundError(SmartChatError):
    pass


class CampaignStateError(SmartChatError):
    pass


class QueryError(SmartChatError):
    pass


class StoreError(SmartChatError):
    pass


class GatewayError(SmartChatError):
    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class GatewayRateLimited(GatewayError):
    pass


class GatewayRejected(GatewayError):
    pass
