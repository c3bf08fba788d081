"""Configuration: one typed object, read from the environment (`SMARTCHAT_*`) at an entry point.

Entry points (a CLI command, a flow, a server start) call `load_settings()` once and pass what
each function needs down to it: no library module reads the environment, so a test builds the
object it wants instead of patching variables and clearing caches.

The variables keep the flat names people type (`SMARTCHAT_DB`, `SMARTCHAT_AUTH_TOKEN`); the
object groups them by the part that uses them (store, validation, sending, gateway). A bad value
is refused when the settings are loaded, naming the variable and what it accepts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from smartchat.errors import SettingsError

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class StoreSettings(BaseModel):
    """Where the DuckDB store is, and how long to wait for another process holding it."""

    model_config = _FROZEN

    path: Path = Path("data/smartchat.duckdb")
    lock_timeout: float = Field(default=10.0, gt=0, le=3600, allow_inf_nan=False)

    def at(self, path: Path | str | None) -> StoreSettings:
        """The same settings for another file (`--db PATH`); None keeps this one."""
        return self if path is None else self.model_copy(update={"path": Path(path)})


class ValidationSettings(BaseModel):
    model_config = _FROZEN

    max_message_chars: int = Field(default=1600, ge=1, le=1600)
    report_sample: int = Field(default=20, ge=1, le=1_000_000)


class SendingSettings(BaseModel):
    """How the sender works through a campaign (tasks.sending): batches, concurrency, retries."""

    model_config = _FROZEN

    default_rate: float = Field(default=10.0, gt=0, le=100_000, allow_inf_nan=False)
    # A batch is marked `sending` in one transaction before its first request and recorded in
    # one after its last; `stop` takes effect between batches. At low rates a batch holds at
    # most `batch_seconds` of sending, so a stop acts within seconds, not minutes.
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    batch_seconds: float = Field(default=5.0, gt=0, le=3600, allow_inf_nan=False)
    # Requests in flight at once (the connection pool's size). On loopback the client's CPU is
    # the limit (10: 3,300/s, 50: 3,500/s, 200: 3,700/s; benchmarks/bench_send.py); against a
    # real aggregator answering in ~50 ms, 50 in flight allow ~1,000 messages/s.
    concurrency: int = Field(default=50, ge=1, le=1000)
    # Requests per message for transient failures (5xx, timeouts, resets, queue full) before
    # it is recorded failed with the last reason; 429s wait their Retry-After and don't count.
    max_attempts: int = Field(default=5, ge=1, le=100)
    # First retry wait in seconds, doubled each retry (with jitter), at most `retry_max_wait`.
    retry_backoff: float = Field(default=0.5, gt=0, le=60, allow_inf_nan=False)
    retry_max_wait: float = Field(default=30.0, gt=0, le=3600, allow_inf_nan=False)
    # A request whose answer was lost (timeout, reset, 5xx) may still reach the aggregator: it
    # is looked for in the aggregator's list this many seconds later, and resent only if absent.
    reconcile_delay: float = Field(default=2.0, ge=0, le=600, allow_inf_nan=False)
    # Each recipient's local time (from the number) when campaigns don't text: "21:00-08:00";
    # the same start and end means none.
    quiet_hours: str = Field(
        default="21:00-08:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$"
    )
    # Per-country SMS prices for the cost before launch (the shipped file has sample prices).
    prices: Path = Path("data/sms-prices.tsv")
    # Where the send flow delivers its batches: 0 workers and no address, its own process; N
    # workers, a temporary local Dask cluster of N processes; an address (tcp://host:8786), an
    # existing Dask scheduler. The flow stays the store's one writer either way.
    workers: int = Field(default=0, ge=0, le=256)
    dask_address: str | None = Field(default=None, pattern=r"^(tcp|tls|inproc|ucx)://\S+$")


class GatewaySettings(BaseModel):
    """The Twilio-compatible aggregator: the local sandbox unless these point at a real account."""

    model_config = _FROZEN

    url: str = "http://127.0.0.1:8765"
    account_sid: str = "AC00000000000000000000000000000000"
    # SecretStr prints as '**********': the token never reaches a log, an artifact or --json.
    auth_token: SecretStr = SecretStr("sandbox-auth-token")
    sender: str = "+15005550006"
    public_url: str = "http://127.0.0.1:8080"
    timeout: float = Field(default=10.0, gt=0, le=300, allow_inf_nan=False)


class ReceiverSettings(BaseModel):
    """The webhook receiver (`smartchat serve`) and the inbox it owns."""

    model_config = _FROZEN

    # An SQLite file beside the store: posts are acknowledged once they are durable here, even
    # while another process holds the DuckDB file; drained into DuckDB in batches.
    inbox: Path = Path("data/inbox.sqlite")
    port: int = Field(default=8080, ge=1, le=65535)


class ConversationSettings(BaseModel):
    """The conversation engine (tasks/conversations.py)."""

    model_config = _FROZEN

    # Opt-out, opt-in and help keywords and their answers per language; None: the shipped ones
    # (schemas/keywords.yaml, English and Spanish).
    keywords: Path | None = None
    # Replies read per transaction: each batch is one query in and one transaction out.
    batch_size: int = Field(default=5000, ge=1, le=1_000_000)


class Settings(BaseModel):
    """Every knob of the pipeline, with the embedded defaults that make `smartchat` work offline."""

    model_config = _FROZEN

    store: StoreSettings = StoreSettings()
    validation: ValidationSettings = ValidationSettings()
    sending: SendingSettings = SendingSettings()
    gateway: GatewaySettings = GatewaySettings()
    receiver: ReceiverSettings = ReceiverSettings()
    conversations: ConversationSettings = ConversationSettings()


# variable → (section, field, what it accepts: said back to the user when a value is refused)
VARIABLES: dict[str, tuple[str, str, str]] = {
    "SMARTCHAT_DB": ("store", "path", "the path of the DuckDB file"),
    "SMARTCHAT_STORE_LOCK_TIMEOUT": (
        "store",
        "lock_timeout",
        "seconds to wait for another process holding the store: a number above 0, at most 3600",
    ),
    "SMARTCHAT_MAX_MESSAGE_CHARS": (
        "validation",
        "max_message_chars",
        "the longest message in characters: a whole number from 1 to 1600 (SMS's limit)",
    ),
    "SMARTCHAT_REPORT_SAMPLE": (
        "validation",
        "report_sample",
        "errors shown per rule in the terminal: a whole number of at least 1",
    ),
    "SMARTCHAT_DEFAULT_SEND_RATE": (
        "sending",
        "default_rate",
        "messages per second: a number above 0, at most 100000",
    ),
    "SMARTCHAT_SEND_BATCH_SIZE": (
        "sending",
        "batch_size",
        "messages per send batch: a whole number from 1 to 100000",
    ),
    "SMARTCHAT_SEND_BATCH_SECONDS": (
        "sending",
        "batch_seconds",
        "seconds of sending per batch at the campaign's rate: a number above 0, at most 3600",
    ),
    "SMARTCHAT_SEND_CONCURRENCY": (
        "sending",
        "concurrency",
        "requests in flight to the aggregator: a whole number from 1 to 1000",
    ),
    "SMARTCHAT_SEND_MAX_ATTEMPTS": (
        "sending",
        "max_attempts",
        "requests per message before a transient failure is final: a whole number from 1 to 100",
    ),
    "SMARTCHAT_SEND_RETRY_BACKOFF": (
        "sending",
        "retry_backoff",
        "seconds before the first retry (doubled each time): a number above 0, at most 60",
    ),
    "SMARTCHAT_SEND_RETRY_MAX_WAIT": (
        "sending",
        "retry_max_wait",
        "the longest wait between retries in seconds: a number above 0, at most 3600",
    ),
    "SMARTCHAT_SEND_RECONCILE_DELAY": (
        "sending",
        "reconcile_delay",
        "seconds before a request whose answer was lost is looked for at the aggregator: "
        "a number from 0 to 600",
    ),
    "SMARTCHAT_QUIET_HOURS": (
        "sending",
        "quiet_hours",
        "the local hours nobody is texted, as HH:MM-HH:MM (21:00-08:00)",
    ),
    "SMARTCHAT_SEND_WORKERS": (
        "sending",
        "workers",
        "Dask worker processes the send flow starts for its batches: a whole number from 0 "
        "(the flow's own process) to 256",
    ),
    "SMARTCHAT_DASK_ADDRESS": (
        "sending",
        "dask_address",
        "an existing Dask scheduler for the send flow's batches, as tcp://host:8786",
    ),
    "SMARTCHAT_PRICES": ("sending", "prices", "the path of a per-country SMS price table (TSV)"),
    "SMARTCHAT_GATEWAY_URL": ("gateway", "url", "the aggregator's base URL"),
    "SMARTCHAT_ACCOUNT_SID": ("gateway", "account_sid", "the aggregator's account SID"),
    "SMARTCHAT_AUTH_TOKEN": ("gateway", "auth_token", "the aggregator's auth token"),
    "SMARTCHAT_SENDER": ("gateway", "sender", "a phone number or a messaging service SID"),
    "SMARTCHAT_PUBLIC_URL": ("gateway", "public_url", "where the aggregator reaches our webhooks"),
    "SMARTCHAT_INBOX": ("receiver", "inbox", "the path of the webhook receiver's inbox (SQLite)"),
    "SMARTCHAT_RECEIVER_PORT": (
        "receiver",
        "port",
        "the webhook receiver's port: a whole number from 1 to 65535",
    ),
    "SMARTCHAT_KEYWORDS": (
        "conversations",
        "keywords",
        "the path of a keywords file shaped like schemas/keywords.yaml",
    ),
    "SMARTCHAT_REPLY_BATCH_SIZE": (
        "conversations",
        "batch_size",
        "replies read per transaction: a whole number from 1 to 1000000",
    ),
    "SMARTCHAT_GATEWAY_TIMEOUT": (
        "gateway",
        "timeout",
        "seconds to wait for the aggregator: a number above 0, at most 300",
    ),
}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings from `environ` (default: the process environment); SettingsError if bad."""
    environ = os.environ if environ is None else environ
    sections: dict[str, dict[str, str]] = {}
    for variable, (section, field, _) in VARIABLES.items():
        if variable in environ:
            sections.setdefault(section, {})[field] = environ[variable]
    try:
        return Settings.model_validate(sections)
    except ValidationError as exc:
        raise SettingsError(_explain(exc, environ)) from None


def sending_with(base: SendingSettings, **changes: object) -> SendingSettings:
    """`base` with a flow's parameters (None: keep), or SettingsError naming the parameter,
    its value and what it accepts, in the words the variables use."""
    given = {name: value for name, value in changes.items() if value is not None}
    try:
        return SendingSettings.model_validate({**base.model_dump(), **given})
    except ValidationError as exc:
        accepts = {f: what for _, (section, f, what) in VARIABLES.items() if section == "sending"}
        problems = [
            f"{name}={given.get(name)!r} is not valid: it is {accepts.get(name, error['msg'])}"
            for error in exc.errors()
            for name in [str(error["loc"][0]) if error["loc"] else ""]
        ]
        raise SettingsError(". ".join(problems) + ".") from None


def _explain(exc: ValidationError, environ: Mapping[str, str]) -> str:
    by_location = {(s, f): v for v, (s, f, _) in VARIABLES.items()}
    problems = []
    for error in exc.errors():
        location = tuple(str(part) for part in error["loc"][:2])
        variable = by_location.get((location[0], location[1])) if len(location) == 2 else None
        if variable is None:  # not one of ours: pydantic's words are the best we have
            problems.append(str(error["msg"]))
            continue
        shown = "(hidden)" if variable == "SMARTCHAT_AUTH_TOKEN" else repr(environ[variable])
        problems.append(f"{variable}={shown} is not valid: it is {VARIABLES[variable][2]}.")
    return " ".join(problems) + " Fix or unset the variable and run the command again."
