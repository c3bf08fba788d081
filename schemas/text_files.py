"""Reading a text file a person wrote (a chatbot, a reply script, a keywords file): UTF-8, with
or without a BOM, and one sentence naming the file when it can't be read."""

from __future__ import annotations

from pathlib import Path

from smartchat.errors import SmartChatError


def read_text_file(path: Path, what: str, error: type[SmartChatError] = SmartChatError) -> str:
    """The file's text; `error` (naming `path` and saying what to do) if it can't be read.

    `what` names the file for the person: "chatbot file", "reply script"...
    """
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise error(f"{path}: no such {what}.") from None
    except IsADirectoryError:
        raise error(f"{path} is a folder: name the {what}'s .yaml file.") from None
    except UnicodeDecodeError:
        raise error(f"{path}: is not UTF-8 text. Save it as UTF-8.") from None
    except OSError as exc:
        raise error(f"{path}: can't be read ({exc.strerror or exc}).") from None
