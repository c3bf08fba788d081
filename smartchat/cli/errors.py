"""How the CLI speaks of errors: exit codes, and the command to run next.

The library's errors carry what went wrong and the ids involved; only here are they turned into
an exit code (0 ok, 1 invalid input, 2 usage error or an unreadable file, as Unix tools do) and
completed with the `smartchat` command that fixes them.
"""

from __future__ import annotations

from smartchat.errors import (
    CampaignAlreadyReplaced,
    CampaignAlreadyRunning,
    CampaignFrozen,
    CampaignNotFound,
    ChatbotFileError,
    ChatbotNotFound,
    ContactFileError,
    GatewayUnauthorized,
    GatewayUnavailable,
    InvalidSendRate,
    OutputFileError,
    OutputFileExists,
    SettingsError,
    SmartChatError,
    StoreMissing,
)


class UsageError(SmartChatError):
    """A command was called wrong: a flag's value, a missing or conflicting option."""


# Everything else the user can fix is invalid input: exit 1.
_EXIT_2: tuple[type[SmartChatError], ...] = (
    UsageError,
    SettingsError,
    ContactFileError,
    ChatbotFileError,
    OutputFileError,
    OutputFileExists,
    InvalidSendRate,
    GatewayUnauthorized,
    GatewayUnavailable,
)


def exit_code(exc: SmartChatError) -> int:
    return 2 if isinstance(exc, _EXIT_2) else 1


def explain(exc: SmartChatError) -> str:
    """The message for the terminal: the library's words, with the command that fixes it."""
    if isinstance(exc, CampaignFrozen):
        running = exc.campaign_id
        return (
            f"Campaign {running} is launched: its contact file can't change. Stop it, fix the "
            f"file and launch a new campaign: smartchat relaunch {running} --contacts "
            f"{exc.contacts_path} ({running} was launched from another file named "
            f"{exc.contacts_file}; if this file is a separate campaign, not a fix of {running}, "
            "add --separate.)"
        )
    if isinstance(exc, CampaignAlreadyRunning):
        return (
            f"{exc.message.removesuffix('.')} (--again); smartchat stop {exc.campaign_id} stops it."
        )
    if isinstance(exc, CampaignAlreadyReplaced):
        return (
            f"{exc.message.removesuffix('.')} (smartchat relaunch {exc.replacement} "
            "--contacts FILE)."
        )
    if isinstance(exc, ChatbotNotFound):
        if exc.chatbot_id.endswith((".yaml", ".yml")):
            return (
                f"{exc.message} {exc.chatbot_id!r} looks like a file: register it with "
                f"`smartchat chatbot add {exc.chatbot_id}`, then launch with its id."
            )
        return f"{exc.message} Register it with `smartchat chatbot add FILE.yaml`."
    if isinstance(exc, CampaignNotFound):
        return f"{exc.message} `smartchat status` lists the campaigns."
    if isinstance(exc, StoreMissing):
        return (
            f"{exc.message} `smartchat chatbot add FILE.yaml` creates it (or point --db / "
            "SMARTCHAT_DB at the right file)."
        )
    if isinstance(exc, OutputFileExists):
        return f"{exc.message} Choose another name, or --force to replace it."
    if isinstance(exc, InvalidSendRate):
        return f"--rate must be {exc.REQUIREMENT}, not {exc.rate:g}."
    return exc.message
