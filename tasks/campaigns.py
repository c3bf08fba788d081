"""Campaign lifecycle, as plain functions over the store: what the CLI and the flows call.

    chatbot add ──► launch = resolve_chatbot → validate_for_launch → record_launch ──► launched
                                                                                         │
    stop ◄── launched ──► (sender) completed        relaunch X: the same steps with X's ─┘
                                                    chatbot version, stopping X (once per X)

Product rules (the FAQ) live here by name: a chatbot's language never changes, a launched
campaign's contacts never change, a phone is once per campaign (validation) but may be in any
number of campaigns. Each function validates outside the store, then writes in ONE short
transaction (tasks.store.connection says why the file is never held longer). The flows run the
same three launch steps as Prefect tasks (tasks/campaign_tasks.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from schemas.campaigns import check_send_rate
from schemas.chatbot import Chatbot, check_message_lengths, is_chatbot_file, load_chatbot
from smartchat.errors import (
    CampaignAlreadyReplaced,
    CampaignAlreadyRunning,
    CampaignFrozen,
    ChatbotFileError,
    ChatbotLanguageFrozen,
    ChatbotNotFound,
    ContactValidationError,
    NotFoundError,
    StoreMissing,
)
from smartchat.settings import StoreSettings
from tasks.store import Connection, open_store, write_transaction
from tasks.store import campaigns as campaign_rows
from tasks.store import chatbots as chatbot_rows
from tasks.store import contacts as contact_rows
from tasks.store.campaigns import Campaign, NewCampaign
from tasks.store.chatbots import ChatbotUse, RegisteredChatbot

if TYPE_CHECKING:
    from tasks.validation import ValidationReport

LANGUAGE_FROZEN = "A chatbot's language can't change; create a new chatbot instead"


@dataclass(frozen=True)
class Registration:
    chatbot: RegisteredChatbot
    created: bool  # False: this exact definition was already stored as that version
    reactivated: bool = False  # an earlier version, current again for new campaigns


@dataclass(frozen=True)
class LaunchPlan:
    """How a campaign runs, beyond its chatbot and contacts."""

    name: str | None = None  # None: "chatbot name · file name" (relaunch: the old name)
    rate: float = 10.0  # messages per second
    send: bool = True  # False: stored, not texted (--no-send)
    separate: bool = False  # a file named like a running campaign's is another campaign
    again: bool = False  # the same file and chatbot as a running campaign: text them twice


@dataclass(frozen=True)
class LaunchResult:
    chatbot: RegisteredChatbot
    report: ValidationReport
    campaign: Campaign | None  # None for a dry run: nothing was written

    def to_json(self) -> dict[str, Any]:
        summary = self.report.to_json()
        summary.pop("errors", None)
        return {
            "dry_run": self.campaign is None,
            "campaign": self.campaign.to_json() if self.campaign else None,
            "chatbot": {"id": self.chatbot.id, "version": self.chatbot.version},
            "validation": summary,
        }


# --- chatbots ----------------------------------------------------------------------------------


def register_chatbot(
    store: StoreSettings, chatbot_path: Path | str, *, max_message_chars: int
) -> Registration:
    """`chatbot add`: store a chatbot file as a new version, or find its version."""
    bot = load_chatbot(chatbot_path)
    return add_chatbot(store, bot, source=str(chatbot_path), max_message_chars=max_message_chars)


def add_chatbot(
    store: StoreSettings, bot: Chatbot, *, source: str | None = None, max_message_chars: int
) -> Registration:
    """Same content → same version; other edits → next version; another language → refused.

    A message whose fixed text alone is over the limit is refused here, not blamed on every
    contact at launch.
    """
    check_message_lengths(bot, max_message_chars, source=source)
    with write_transaction(store) as conn:
        versions = chatbot_rows.versions(conn, bot.id)
        if versions and versions[0].language != bot.language:
            raise ChatbotLanguageFrozen(
                f"Chatbot {bot.id} speaks {versions[0].language!r}; {source or 'this file'} "
                f"says {bot.language!r}. {LANGUAGE_FROZEN} (with another id)."
            )
        for existing in versions:
            if existing.content_hash == bot.content_hash:
                if existing == chatbot_rows.current(versions):
                    return Registration(existing, created=False)
                chatbot_rows.activate(conn, bot.id, existing.version)
                return Registration(get_chatbot(conn, bot.id, existing.version), False, True)
        version = versions[-1].version + 1 if versions else 1
        chatbot_rows.insert(conn, bot, version, source)
        return Registration(get_chatbot(conn, bot.id, version), created=True)


def list_chatbots(store: StoreSettings) -> list[ChatbotUse]:
    """Every stored chatbot version with how many campaigns use it, by id then version."""
    if not store.path.exists():
        return []
    with open_store(store, read_only=True) as conn:
        return chatbot_rows.with_campaign_counts(conn)


def get_chatbot(conn: Connection, chatbot_id: str, version: int | None = None) -> RegisteredChatbot:
    """The given version of a chatbot, or the one new campaigns use (the last added)."""
    versions = chatbot_rows.versions(conn, chatbot_id)
    if versions and version is None:
        return chatbot_rows.current(versions)
    match = [v for v in versions if v.version == version]
    if match:
        return match[0]
    if versions:
        raise NotFoundError(f"Chatbot {chatbot_id} has no version {version}.")
    known = chatbot_rows.ids(conn)
    listed = f" (registered: {', '.join(known)})" if known else ""
    raise ChatbotNotFound(f"No chatbot {chatbot_id!r}{listed}.", chatbot_id)


def chatbot_definition(store: StoreSettings, ref: str | Path) -> Chatbot:
    """The chatbot `ref` names, for checking files against: a YAML file, or a registered id
    (its current version). Reads only."""
    if is_chatbot_file(ref):
        return load_chatbot(ref)
    try:
        return resolve_chatbot(store, str(ref)).load()
    except (ChatbotNotFound, StoreMissing) as exc:
        raise ChatbotFileError(
            f"No chatbot file {str(ref)!r}, and no chatbot registered with that id in "
            f"{store.path}: give the chatbot's YAML file or a registered id."
        ) from exc


def chatbot_for_launch(
    store: StoreSettings, ref: str | Path, *, max_message_chars: int, dry_run: bool
) -> RegisteredChatbot:
    """The chatbot version a launch runs: a registered id's current version, or a YAML file,
    registered on the way as `chatbot add` does (same content, same version). A dry run writes
    nothing, so it takes a file only once that content is registered."""
    if not is_chatbot_file(ref):
        return resolve_chatbot(store, str(ref))
    if not dry_run:
        return register_chatbot(store, ref, max_message_chars=max_message_chars).chatbot
    bot = load_chatbot(ref)
    with open_store(store, read_only=True) as conn:
        for version in chatbot_rows.versions(conn, bot.id):
            if version.content_hash == bot.content_hash:
                return version
    raise ChatbotNotFound(
        f"{ref} is not registered yet, and a dry run writes nothing: add it first "
        "(chatbot add) or launch without the dry run, which registers it.",
        bot.id,
    )


# --- launch, relaunch, stop: the steps ----------------------------------------------------------


def resolve_chatbot(
    store: StoreSettings, chatbot_id: str, version: int | None = None
) -> RegisteredChatbot:
    """Launch step 1: the chatbot version a new campaign runs (the latest unless given)."""
    with open_store(store, read_only=True) as conn:
        return get_chatbot(conn, chatbot_id, version)


def validate_for_launch(
    chatbot: RegisteredChatbot,
    contacts_path: Path | str,
    *,
    max_message_chars: int,
    sheet: str | int | None = None,
) -> ValidationReport:
    """Launch step 2: the same check as `validate`; an invalid file raises with the report."""
    # Imported here: pandera's import costs ~1 s that `status` and `query` need not pay.
    from tasks.validation import check_contact_file

    report = check_contact_file(
        contacts_path, chatbot.load(), max_message_chars=max_message_chars, sheet=sheet
    )
    if not report.valid:
        problems = len(report.errors)
        raise ContactValidationError(
            f"{report.source} can't be launched with chatbot {chatbot.id}: {problems:,} "
            f"problem{'s' * (problems != 1)}. Nothing was written.",
            report,
        )
    return report


def record_launch(
    store: StoreSettings,
    chatbot: RegisteredChatbot,
    contacts: pl.DataFrame,
    *,
    contacts_path: Path | str,
    contacts_sha256: str,
    plan: LaunchPlan,
    replaces: Campaign | None = None,
    contacts_sheet: str | None = None,
) -> Campaign:
    """Launch step 3: contacts, file hash and the launched campaign in ONE transaction, so a
    crash (even kill -9) leaves either no campaign or a whole one.

    With `replaces`, that campaign is stopped in the same transaction (refused if it was already
    replaced). Without it, a file named like the file of a campaign of this chatbot that is still
    launched, but with other contents, is taken for an attempt to change that campaign's frozen
    contacts and refused, unless `plan.separate` says it is another campaign; and the very
    same file with the same chatbot as a launched campaign is refused unless `plan.again`.
    """
    contacts_file = Path(contacts_path).name
    new = NewCampaign(
        name=plan.name or default_name(chatbot, contacts_path),
        chatbot_id=chatbot.id,
        chatbot_version=chatbot.version,
        contacts_file=contacts_file,
        contacts_sha256=contacts_sha256,
        contact_count=contacts.height,
        send_rate=check_send_rate(plan.rate),
        send_enabled=plan.send,
        replaces=replaces.id if replaces else None,
        contacts_sheet=contacts_sheet,
    )
    custom_data = chatbot.load().custom_data
    with write_transaction(store) as conn:
        if replaces is not None:
            _check_not_replaced(conn, replaces.id)
            campaign_rows.mark_stopped(conn, replaces.id)
        else:
            if not plan.again:
                _check_not_running_already(conn, new)
            if not plan.separate:
                _check_not_a_changed_file(conn, new, str(contacts_path))
        campaign = campaign_rows.insert(conn, new)
        contact_rows.insert(conn, campaign.id, contacts, custom_data)
        return campaign


# --- launch, relaunch, stop: what people call ---------------------------------------------------


def launch(
    store: StoreSettings,
    chatbot_ref: str,
    contacts_path: Path | str,
    *,
    plan: LaunchPlan,
    max_message_chars: int,
    dry_run: bool = False,
    sheet: str | int | None = None,
) -> LaunchResult:
    """Validate the contacts against the chatbot's current version, then store them and launch.

    `chatbot_ref` is a registered id, or a chatbot file (registered as `chatbot add` would).

    Raises ContactValidationError (nothing written) for an invalid file. A dry run validates and
    returns what would be sent without writing anything.
    """
    check_send_rate(plan.rate)  # before a long validation
    chatbot = chatbot_for_launch(
        store, chatbot_ref, max_message_chars=max_message_chars, dry_run=dry_run
    )
    return _validate_and_record(
        store,
        chatbot,
        contacts_path,
        plan,
        max_message_chars=max_message_chars,
        dry_run=dry_run,
        sheet=sheet,
    )


def relaunch(
    store: StoreSettings,
    campaign_id: str,
    contacts_path: Path | str,
    *,
    max_message_chars: int,
    send: bool | None = None,
    name: str | None = None,
    sheet: str | int | None = None,
) -> LaunchResult:
    """The FAQ's fix for a wrong file: stop X and launch its chatbot version and settings again.

    Name, send rate and sending (`send=None`) are X's unless given. Validation comes first: an
    invalid file leaves X running and writes nothing. A campaign is replaced at most once: the
    fix of a replaced campaign is a relaunch of its replacement.
    """
    with open_store(store, read_only=True) as conn:
        old = campaign_rows.get(conn, campaign_id)
        _check_not_replaced(conn, old.id)  # early, before a long validation; again when writing
        chatbot = get_chatbot(conn, old.chatbot_id, old.chatbot_version)
    plan = LaunchPlan(
        name=name or old.name,
        rate=old.send_rate,
        send=old.send_enabled if send is None else send,
    )
    return _validate_and_record(
        store,
        chatbot,
        contacts_path,
        plan,
        max_message_chars=max_message_chars,
        replaces=old,
        sheet=sheet,
    )


def _validate_and_record(
    store: StoreSettings,
    chatbot: RegisteredChatbot,
    contacts_path: Path | str,
    plan: LaunchPlan,
    *,
    max_message_chars: int,
    replaces: Campaign | None = None,
    dry_run: bool = False,
    sheet: str | int | None = None,
) -> LaunchResult:
    """Launch steps 2 and 3, as `launch` and `relaunch` run them in one process."""
    report = validate_for_launch(
        chatbot, contacts_path, max_message_chars=max_message_chars, sheet=sheet
    )
    if dry_run:
        return LaunchResult(chatbot, report, None)
    campaign = record_launch(
        store,
        chatbot,
        report.contacts,
        contacts_path=contacts_path,
        contacts_sha256=report.file_sha256,
        plan=plan,
        replaces=replaces,
        contacts_sheet=report.sheet_name,
    )
    return LaunchResult(chatbot, report, campaign)


def stop(store: StoreSettings, campaign_id: str) -> tuple[Campaign, bool]:
    """Stop sending and answering for a campaign. Idempotent: returns (campaign, changed)."""
    with write_transaction(store) as conn:
        changed = campaign_rows.mark_stopped(conn, campaign_id)
        return campaign_rows.get(conn, campaign_id), changed


def default_name(chatbot: RegisteredChatbot, contacts_path: Path | str) -> str:
    return f"{chatbot.name} · {Path(contacts_path).name}"


def _check_not_replaced(conn: Connection, campaign_id: str) -> None:
    """Two live replacements of one campaign would text its contacts twice: one relaunch each."""
    newer = campaign_rows.replacement_of(conn, campaign_id)
    if newer is not None:
        raise CampaignAlreadyReplaced(
            f"Campaign {campaign_id} was already replaced by {newer}: fix and relaunch {newer} "
            "instead.",
            campaign_id,
            newer,
        )


def _check_not_running_already(conn: Connection, new: NewCampaign) -> None:
    """The same file launched twice with the same chatbot would text everyone twice."""
    running = campaign_rows.launched_from_same_contents(
        conn, new.chatbot_id, new.contacts_sha256, new.contacts_sheet
    )
    if running is not None:
        raise CampaignAlreadyRunning(
            f"Campaign {running} is already running this file with chatbot {new.chatbot_id}: "
            "launching it again would text every contact twice. Stop that campaign first, or "
            "launch it again on purpose.",
            running,
        )


def _check_not_a_changed_file(conn: Connection, new: NewCampaign, contacts_path: str) -> None:
    """Launching an edited `contacts.tsv` again is the natural way to try to fix a launched
    campaign's contacts: it would leave the wrong campaign running next to the new one."""
    running = campaign_rows.launched_from_other_contents(
        conn, new.chatbot_id, new.contacts_file, new.contacts_sha256
    )
    if running is not None:
        raise CampaignFrozen(
            f"Campaign {running} is launched: its contact file can't change. Stop it, fix the "
            f"file and launch a new campaign that replaces it ({running} was launched from "
            f"another file named {new.contacts_file}; if this file is a separate campaign, not "
            f"a fix of {running}, launch it as a separate campaign).",
            running,
            contacts_path,
            new.contacts_file,
        )
