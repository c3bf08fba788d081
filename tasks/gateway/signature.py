"""Twilio's webhook signature (`X-Twilio-Signature`), as pure functions.

Twilio signs each webhook with HMAC-SHA1 keyed by the account's auth token, over the full URL it
requested followed by every POST parameter's name and value, sorted by name; the header carries
the base64 digest. The sandbox signs its callbacks with `twilio_signature`; our webhook receiver
checks them with `is_valid_signature`. Both agree with twilio-python's `RequestValidator`
(tests/test_sandbox.py holds them to it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import urlparse

SIGNATURE_HEADER = "X-Twilio-Signature"

# A webhook body as a mapping (one value, or several for a repeated name, as `parse_qs` gives)
# or as the (name, value) pairs of the form, in any order.
Params = Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str]]


def twilio_signature(auth_token: str, url: str, params: Params | None = None) -> str:
    """The `X-Twilio-Signature` Twilio sends with a POST of `params` to `url`."""
    payload = url + "".join(name + value for name, value in _sorted_pairs(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def is_valid_signature(
    auth_token: str, url: str, params: Params | None, signature: str | None
) -> bool:
    """True when `signature` is what Twilio sends for this URL and body.

    `url` is the URL as our server saw it. Twilio has signed with and without the default port
    (":443", ":80") at different times, so both spellings are accepted, as RequestValidator does.
    """
    if not signature:
        return False
    pairs = _sorted_pairs(params)
    expected = signature.encode()
    matches = [
        hmac.compare_digest(twilio_signature(auth_token, variant, pairs).encode(), expected)
        for variant in url_variants(url)
    ]
    return any(matches)  # every variant is checked: how long it takes says nothing about which


def url_variants(url: str) -> tuple[str, ...]:
    """The URL as given, without its port and with its default port."""
    parsed = urlparse(url)
    host = parsed.netloc.rsplit("@", 1)[-1]
    userinfo = parsed.netloc[: len(parsed.netloc) - len(host)]
    if parsed.port is not None:
        without = parsed._replace(netloc=userinfo + host.rsplit(":", 1)[0]).geturl()
        with_port = parsed.geturl()
    else:
        default = 443 if parsed.scheme == "https" else 80
        without = parsed.geturl()
        with_port = parsed._replace(netloc=f"{parsed.netloc}:{default}").geturl()
    return tuple(dict.fromkeys((url, without, with_port)))


def _sorted_pairs(params: Params | None) -> list[tuple[str, str]]:
    """Pairs in signing order: names sorted; a repeated name's distinct values sorted too."""
    if not params:
        return []
    values: dict[str, set[str]] = {}
    if isinstance(params, Mapping):
        for name, value in params.items():
            bucket = values.setdefault(name, set())
            if isinstance(value, str):
                bucket.add(value)
            else:
                bucket.update(value)
    else:
        for name, value in params:
            values.setdefault(name, set()).add(value)
    return [(name, value) for name in sorted(values) for value in sorted(values[name])]
