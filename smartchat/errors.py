"""One error hierarchy, every message written for the person who ran the command.

    SmartChatError                    anything the user can fix; `str(err)` is the whole message
    ├── SettingsError                 a SMARTCHAT_* variable is out of range or not a number
    ├── ContactFileError              the contact file can't be read at all
    ├── ContactValidationError        the file breaks the rules; carries the report
    ├── ChatbotError                  the chatbot definition is inconsistent
    │   ├── ChatbotFileError          the chatbot file can't be read at all
    │   └── ChatbotLanguageFrozen     a chatbot id registered again in another language
    ├── InvalidSendRate               a send rate that is not a finite number above 0
    ├── OutputFileError               a file or folder we were asked to write can't be written
    │   └── OutputFileExists          it exists, and is not to be replaced without being asked
    ├── NotFoundError                 an id that does not exist
    │   ├── ChatbotNotFound
    │   └── CampaignNotFound
    ├── CampaignStateError            not allowed in the campaign's state
    │   ├── CampaignFrozen            a launched campaign's contacts can't change
    │   ├── CampaignAlreadyRunning    the same file with the same chatbot is being sent already
    │   └── CampaignAlreadyReplaced   a campaign is relaunched (replaced) once
    ├── QueryError                    an analyst's SQL was refused (it writes) or failed
    ├── StoreError                    the DuckDB store can't be opened or is not ours
    │   ├── StoreMissing              no store file at that path yet
    │   └── StoreBusy                 another process holds the file (retryable)
    ├── GatewayError                  the SMS aggregator answered with an error, or not at all
    │   ├── GatewayRateLimited        429 / Twilio 20429: slow down, retry (retryable)
    │   ├── GatewayUnavailable        5xx, timeout, connection reset (retryable)
    │   ├── GatewayUnauthorized       401/403: the account SID or token is wrong
    │   └── GatewayRejected           4xx: this message will never go through as sent
    │       └── RecipientOptedOut     Twilio 21610: the number unsubscribed at the aggregator
    └── WebhookSignatureError         a webhook post without a valid X-Twilio-Signature

`retryable` says whether the same call may succeed later unchanged: Prefect's retry conditions
and the sender's backoff decide on it, never on message text. Exit codes are the CLI's business
(smartchat.cli.errors), so the library, the flows and the servers share these classes as they are.
Errors that concern one id carry it as an attribute, so each caller (CLI, flow, server) can add its
own advice (the CLI names the command to run) without parsing the message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class SmartChatError(Exception):
    """Base of every error the user can act on; `str(err)` is the whole message."""

    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SettingsError(SmartChatError):
    """A setting from the environment is invalid; the message names the variable and range."""


class ContactFileError(SmartChatError):
    """The contact file can't be read: missing, wrong format, corrupt, encrypted, bad encoding."""


class ContactValidationError(SmartChatError):
    """The contact file breaks the rules; `report` holds every failure (see tasks.validation)."""

    def __init__(self, message: str, report: Any) -> None:
        super().__init__(message)
        self.report = report


class ChatbotError(SmartChatError):
    """The chatbot YAML is unreadable or inconsistent; the message names file, step and field."""


class ChatbotFileError(ChatbotError):
    """The chatbot file is missing, a folder, or not text: like an unreadable contact file."""


class ChatbotLanguageFrozen(ChatbotError):
    """A chatbot's language is fixed when it is created (the product FAQ)."""


class InvalidSendRate(SmartChatError):
    """A send rate is a finite number of messages per second above 0."""

    REQUIREMENT = "a finite number of messages per second above 0"

    def __init__(self, rate: float) -> None:
        super().__init__(f"The send rate must be {self.REQUIREMENT}, not {rate:g}.")
        self.rate = rate


class OutputFileError(SmartChatError):
    """A report, template or export can't be written where asked."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


class OutputFileExists(OutputFileError):
    """Writing would replace a file the user may have filled in; nothing was written."""


class NotFoundError(SmartChatError):
    pass


class ChatbotNotFound(NotFoundError):
    def __init__(self, message: str, chatbot_id: str) -> None:
        super().__init__(message)
        self.chatbot_id = chatbot_id


class CampaignNotFound(NotFoundError):
    def __init__(self, message: str, campaign_id: str) -> None:
        super().__init__(message)
        self.campaign_id = campaign_id


class CampaignStateError(SmartChatError):
    def __init__(self, message: str, campaign_id: str | None = None) -> None:
        super().__init__(message)
        self.campaign_id = campaign_id


class CampaignFrozen(CampaignStateError):
    """A launched campaign's contact file can't change; the fix is a relaunch of that campaign.

    Raised when a file named like a launched campaign's (`contacts_file`), with other contents,
    is launched again: the natural way people try to fix a campaign's contacts.
    """

    def __init__(
        self, message: str, campaign_id: str, contacts_path: str, contacts_file: str
    ) -> None:
        super().__init__(message, campaign_id)
        self.contacts_path = contacts_path
        self.contacts_file = contacts_file


class CampaignAlreadyRunning(CampaignStateError):
    """The identical file with the same chatbot is in a launched campaign: a second launch would
    text everyone twice, unless it is meant (`--again`)."""


class CampaignAlreadyReplaced(CampaignStateError):
    """Two live replacements would text the same contacts twice: relaunch the replacement."""

    def __init__(self, message: str, campaign_id: str, replacement: str) -> None:
        super().__init__(message, campaign_id)
        self.replacement = replacement


class QueryError(SmartChatError):
    pass


class StoreError(SmartChatError):
    pass


class StoreMissing(StoreError):
    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


class StoreBusy(StoreError):
    """Another process held the file past the lock timeout; nothing was read or written."""

    retryable = True


class GatewayError(SmartChatError):
    """The aggregator failed a request: HTTP status and its own error code when it gave them."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: int | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        if retryable is not None:
            self.retryable = retryable


class GatewayRateLimited(GatewayError):
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = 429,
        code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, code=code)
        self.retry_after = retry_after


class GatewayUnavailable(GatewayError):
    retryable = True


class GatewayUnauthorized(GatewayError):
    pass


class GatewayRejected(GatewayError):
    pass


class RecipientOptedOut(GatewayRejected):
    pass


class WebhookSignatureError(SmartChatError):
    pass


def is_retryable(exc: BaseException) -> bool:
    """True when the failed call may succeed if made again unchanged (after a wait)."""
    return isinstance(exc, SmartChatError) and exc.retryable
