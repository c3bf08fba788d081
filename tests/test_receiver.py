"""The webhook receiver: real servers on free loopback ports, real DuckDB and SQLite files.

Posts are signed by the official twilio library's `RequestValidator.compute_signature`, the way
Twilio signs them; the sandbox's own status callbacks and inbound replies are received too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from pydantic import SecretStr
from twilio.request_validator import RequestValidator
from typer.testing import CliRunner

from smartchat.cli import app as cli
from smartchat.settings import GatewaySettings, StoreSettings
from tasks.gateway.sandbox import SandboxConfig, running_sandbox
from tasks.receiver import ReceiverApp, drain_inbox
from tasks.receiver.app import EMPTY_TWIML
from tasks.receiver.inbox import counts
from tasks.receiver.server import listen, running_receiver
from tasks.store import open_store, write_transaction
from tasks.store.messages import insert as insert_messages
from tests.conftest import free_port
from tests.test_store import HOLDER, add_campaign

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "AC0123456789abcdef0123456789abcdef"
TOKEN = "receiver-test-token-3f9a"
SENDER, OTHER_SENDER = "+15005550006", "+15005550007"
SERVICE = "MG" + "ab" * 16
ANA, LUIS, NOBODY = "+525512000001", "+525512000002", "+525512000009"
T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)


# --- a receiver and a store ---------------------------------------------------------------------


@dataclass
class Receiver:
    url: str  # where it listens, and the public URL posts are signed for
    inbox: Path
    http: httpx.Client

    def post(
        self,
        path: str,
        form: dict[str, str],
        *,
        token: str = TOKEN,
        signed_url: str | None = None,
        signature: str | None = None,
    ) -> httpx.Response:
        """A POST signed as Twilio signs (over `signed_url`, default the URL posted to)."""
        url = self.url + path
        if signature is None:
            signature = RequestValidator(token).compute_signature(signed_url or url, form)
        headers = {"X-Twilio-Signature": signature} if signature else {}
        return self.http.post(url, data=form, headers=headers)

    def status(self, sid: str, status: str, phone: str = ANA, **extra: str) -> httpx.Response:
        form = {
            "SmsSid": sid,
            "SmsStatus": status,
            "MessageStatus": status,
            "To": phone,
            "MessageSid": sid,
            "AccountSid": ACCOUNT,
            "From": SENDER,
            "ApiVersion": "2010-04-01",
            **extra,
        }
        return self.post("/sms/status", form)

    def inbound(
        self, sid: str, phone: str, body: str, to: str = SENDER, **extra: str
    ) -> httpx.Response:
        form = {
            "ToCountry": "US",
            "ToState": "",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "SmsSid": sid,
            "SmsStatus": "received",
            "Body": body,
            "To": to,
            "NumSegments": "1",
            "MessageSid": sid,
            "AccountSid": ACCOUNT,
            "From": phone,
            "ApiVersion": "2010-04-01",
            **extra,
        }
        return self.post("/sms/inbound", form)


def gateway(public_url: str) -> GatewaySettings:
    return GatewaySettings(account_sid=ACCOUNT, auth_token=SecretStr(TOKEN), public_url=public_url)


@contextlib.contextmanager
def receiving(
    inbox: Path, store: StoreSettings | None = None, drain_every: float = 1.0
) -> Iterator[Receiver]:
    """A receiver on a free port whose public URL is that port (so posts are signed for it).

    Without a store it only records: the test drains by hand, when it wants."""
    listener = listen("127.0.0.1", 0)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    app = ReceiverApp(gateway(url), inbox, store=store, drain_every=drain_every)
    with running_receiver(app, listener), httpx.Client(timeout=10) as http:
        yield Receiver(url, inbox, http)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    with receiving(tmp_path / "inbox.sqlite") as running:
        yield running


@pytest.fixture
def store(tmp_path: Path) -> StoreSettings:
    settings = StoreSettings(path=tmp_path / "smartchat.duckdb")
    with write_transaction(settings) as conn:
        for campaign in ("c-old", "c-new", "c-other"):
            add_campaign(conn, campaign, 2)
    return settings


def wrote(
    store: StoreSettings,
    campaign: str,
    phone: str,
    *,
    sid: str | None = None,
    sent_at: datetime | None = T0,
    sender: str = SENDER,
    step: str = "ask",
    country: str = "MX",
    seq: int = 1,
) -> None:
    """A message the sender stored: sent at `sent_at` (None: still queued) from `sender`."""
    frame = pl.DataFrame(
        {
            "phone": [phone],
            "seq": [seq],
            "step": [step],
            "kind": ["say"],
            "country": [country],
            "body": ["Hola, ¿pagarás? Responde SI o NO"],
            "segments": [1],
            "status": ["queued" if sent_at is None else "sent"],
        }
    )
    with write_transaction(store) as conn:
        insert_messages(conn, campaign, frame)
        conn.execute(
            "UPDATE messages SET sender = ?, provider_id = ?, sent_at = ?, "
            "queued_at = coalesce(?, queued_at) - INTERVAL 1 MINUTE "
            "WHERE campaign_id = ? AND phone = ? AND seq = ?",
            [sender, sid, sent_at, sent_at, campaign, phone, seq],
        )


def query(store: StoreSettings, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with open_store(store, read_only=True) as conn:
        return conn.execute(sql, params or []).fetchall()


def drain(store: StoreSettings, inbox: Path, **options: Any) -> Any:
    """A drain where a reply nobody wrote to is unsolicited at once (no grace period)."""
    return drain_inbox(store, inbox, **({"reply_wait": 0} | options))


# --- authenticity -------------------------------------------------------------------------------


def test_a_signed_callback_is_acknowledged_recorded_and_drained(
    receiver: Receiver, store: StoreSettings
):
    wrote(store, "c-new", ANA, sid="SM1")
    answer = receiver.status("SM1", "delivered")
    assert answer.status_code == 204
    assert counts(receiver.inbox).pending == 1
    assert query(store, "SELECT status FROM messages") == [("sent",)]  # not yet: the inbox has it

    result = drain(store, receiver.inbox)
    assert (result.events, result.moved, result.left, result.busy) == (1, 1, 0, None)
    [(status, delivered_at)] = query(store, "SELECT status, delivered_at FROM messages")
    assert status == "delivered" and delivered_at is not None
    assert drain(store, receiver.inbox).events == 0  # drained once


def test_an_inbound_reply_gets_empty_twiml(receiver: Receiver):
    answer = receiver.inbound("SMin1", ANA, "Sí")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/xml")
    assert answer.content == EMPTY_TWIML
    assert receiver.http.get(receiver.url + "/health").json() == {"ok": True}


def test_the_signature_covers_the_query_string(receiver: Receiver):
    form = {"MessageSid": "SM1", "MessageStatus": "sent", "To": ANA}
    assert receiver.post("/sms/status?campaign=c-1&x=%20y", form).status_code == 204
    assert counts(receiver.inbox).events == 1


FORGERIES: dict[str, Callable[[Receiver, dict[str, str]], httpx.Response]] = {
    "unsigned": lambda r, form: r.post("/sms/status", form, signature=""),
    "another token": lambda r, form: r.post("/sms/status", form, token="not-the-token"),
    "another url": lambda r, form: r.post("/sms/status", form, signed_url=r.url + "/sms/inbound"),
    "another host": lambda r, form: r.post(
        "/sms/status", form, signed_url="https://evil.example.com/sms/status"
    ),
    "garbage": lambda r, form: r.post("/sms/status", form, signature="c2lnbmF0dXJl"),
    "tampered": lambda r, form: r.http.post(
        r.url + "/sms/status",
        data={**form, "MessageStatus": "failed"},
        headers={
            "X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(
                r.url + "/sms/status", form
            )
        },
    ),
}


@pytest.mark.parametrize("forgery", FORGERIES, ids=list(FORGERIES))
def test_forged_and_unsigned_posts_get_403_and_nothing_is_recorded(
    receiver: Receiver, forgery: str, caplog: pytest.LogCaptureFixture
):
    form = {"MessageSid": "SM1", "MessageStatus": "delivered", "To": ANA, "From": SENDER}
    with caplog.at_level("INFO", logger="smartchat"):
        answer = FORGERIES[forgery](receiver, form)
    assert answer.status_code == 403
    assert counts(receiver.inbox).events == 0
    assert "X-Twilio-Signature" in caplog.text  # the refusal is logged...
    assert TOKEN not in caplog.text and TOKEN not in answer.text  # ...never the token


def test_a_redelivered_post_is_recorded_once(receiver: Receiver, store: StoreSettings):
    wrote(store, "c-new", ANA, sid="SM1")
    for _ in range(3):
        assert receiver.status("SM1", "delivered").status_code == 204
        assert receiver.inbound("SMin1", ANA, "Sí").status_code == 200
    assert receiver.status("SM1", "sent").status_code == 204  # another status: another event
    assert counts(receiver.inbox).events == 3
    drain(store, receiver.inbox)
    assert receiver.inbound("SMin1", ANA, "Sí").status_code == 200  # after the drain, too
    drain(store, receiver.inbox)
    assert query(store, "SELECT provider_id, seq FROM replies") == [("SMin1", 1)]


def test_statuses_out_of_order_end_at_the_furthest(receiver: Receiver, store: StoreSettings):
    wrote(store, "c-new", ANA, sid="SM1", sent_at=None)
    wrote(store, "c-new", LUIS, sid="SM2", sent_at=None)
    receiver.status("SM1", "delivered")
    receiver.status("SM1", "sent")  # late, in the same drain
    receiver.status("SM2", "delivered", LUIS)
    drain(store, receiver.inbox)
    receiver.status("SM2", "sent", LUIS)  # late, in a later drain
    receiver.status("SM2", "queued", LUIS)
    assert drain(store, receiver.inbox).moved == 0
    rows = query(
        store,
        "SELECT provider_id, status, sent_at IS NOT NULL, delivered_at IS NOT NULL "
        "FROM messages ORDER BY provider_id",
    )
    assert rows == [("SM1", "delivered", True, True), ("SM2", "delivered", True, True)]


def test_twilio_statuses_are_mapped_and_errors_kept(receiver: Receiver, store: StoreSettings):
    wrote(store, "c-new", ANA, sid="SM1", sent_at=None)
    wrote(store, "c-new", LUIS, sid="SM2", sent_at=None)
    receiver.status("SM1", "accepted")  # Twilio's `accepted`: our `sending`
    receiver.status("SM2", "undelivered", LUIS, ErrorCode="30003")
    receiver.status("SM3", "failed", NOBODY, ErrorCode="30008", ErrorMessage="Unknown error")
    wrote(store, "c-new", NOBODY, sid="SM3", sent_at=None)
    drain(store, receiver.inbox)
    rows = query(store, "SELECT provider_id, status, error_code, error FROM messages ORDER BY 1")
    assert rows == [
        ("SM1", "sending", None, None),
        ("SM2", "undelivered", 30003, None),
        ("SM3", "failed", 30008, "Unknown error"),
    ]


def test_a_callback_before_its_message_is_stored_waits_for_it(
    receiver: Receiver, store: StoreSettings
):
    """The sender records a MessageSid after the aggregator answers; a callback can be first."""
    receiver.status("SM1", "delivered")
    first = drain(store, receiver.inbox)
    assert (first.events, first.waiting, first.left) == (0, 1, 1)
    wrote(store, "c-new", ANA, sid="SM1", sent_at=None)
    time.sleep(1.05)  # a waiting event is looked at again 1 s later
    second = drain(store, receiver.inbox)
    assert (second.events, second.moved, second.left) == (1, 1, 0)
    assert query(store, "SELECT status FROM messages") == [("delivered",)]
    # ... and a callback whose message never comes is dropped after status_wait.
    receiver.status("SM404", "delivered")
    dropped = drain(store, receiver.inbox, status_wait=0)
    assert (dropped.events, dropped.unmatched, dropped.left) == (1, 1, 0)


# --- nothing lost while another process holds the store ----------------------------------------


def hold_store(path: Path) -> subprocess.Popen[str]:
    """Another process with the DuckDB file open read-write (a launch, a notebook)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), "rw", "60"], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    return holder


def test_a_reply_while_another_process_holds_the_store_is_kept_and_lands_later(
    receiver: Receiver, store: StoreSettings
):
    wrote(store, "c-new", ANA)
    holder = hold_store(store.path)
    try:
        started = time.monotonic()
        answer = receiver.inbound("SMin1", ANA, "Sí")
        assert answer.status_code == 200 and time.monotonic() - started < 1
        busy = drain(store.model_copy(update={"lock_timeout": 0.3}), receiver.inbox)
        assert busy.busy is not None and f"process {holder.pid}" in busy.busy
        assert (busy.events, busy.left) == (0, 1)
    finally:
        holder.kill()
        holder.wait()
    done = drain(store, receiver.inbox)
    assert (done.events, done.replies, done.left) == (1, 1, 0)
    assert query(store, "SELECT campaign_id, phone, body FROM replies") == [("c-new", ANA, "Sí")]


# --- attribution and opt-outs -------------------------------------------------------------------


def test_a_reply_goes_to_the_campaign_that_wrote_last_from_that_number(
    receiver: Receiver, store: StoreSettings
):
    wrote(store, "c-old", ANA, sent_at=T0 - timedelta(hours=2), step="ask", country="MX")
    wrote(store, "c-new", ANA, sent_at=T0 - timedelta(hours=1), step="confirm", country="XX")
    wrote(store, "c-other", ANA, sent_at=T0, sender=OTHER_SENDER)  # later, from another number
    wrote(store, "c-old", ANA, seq=2, sent_at=None)  # queued, not sent: never reached Ana
    wrote(store, "c-other", LUIS, sender=SERVICE)  # sent through a messaging service
    receiver.inbound("SMa", ANA, "Sí")
    receiver.inbound("SMb", ANA, "no, perdón")
    receiver.inbound("SMc", ANA, "hola", to="+15005550099")  # nobody wrote from this number
    receiver.inbound("SMd", NOBODY, "¿quién es?")
    receiver.inbound("SMe", LUIS, "ok", MessagingServiceSid=SERVICE)
    result = drain(store, receiver.inbox)
    assert (result.replies, result.unsolicited) == (5, 2)
    rows = query(
        store,
        "SELECT provider_id, campaign_id, seq, step, country, sender, outcome "
        "FROM replies ORDER BY provider_id",
    )
    assert rows == [
        ("SMa", "c-new", 1, "confirm", "XX", SENDER, None),
        ("SMb", "c-new", 2, "confirm", "XX", SENDER, None),
        ("SMc", None, 1, None, None, "+15005550099", "unsolicited"),
        ("SMd", None, 1, None, None, SENDER, "unsolicited"),
        ("SMe", "c-other", 1, "ask", "MX", SENDER, None),
    ]


def test_a_number_in_two_running_campaigns_answers_the_latest_and_a_stopped_one_yields(
    receiver: Receiver, store: StoreSettings
):
    """Among campaigns still running, the most recent outbound message wins; a stopped
    campaign gets a reply only when no running campaign wrote to the number."""
    with write_transaction(store) as conn:
        for campaign, status in (("c-a", "launched"), ("c-b", "launched"), ("c-c", "stopped")):
            conn.execute(
                "INSERT INTO campaigns (id, name, chatbot_id, chatbot_version, status, "
                "contacts_file, contacts_sha256, contact_count, send_rate, send_enabled) "
                "VALUES (?, ?, 'bot', 1, ?, 'f.tsv', '0', 1, 10, true)",
                [campaign, campaign, status],
            )
    wrote(store, "c-a", ANA, sent_at=T0 - timedelta(hours=2))
    wrote(store, "c-b", ANA, sent_at=T0 - timedelta(hours=1))  # the latest running one
    wrote(store, "c-c", ANA, sent_at=T0)  # later still, but stopped
    wrote(store, "c-c", LUIS, sent_at=T0)  # only a stopped campaign wrote to Luis
    receiver.inbound("SMa", ANA, "Sí")
    receiver.inbound("SMb", LUIS, "Sí")
    drain(store, receiver.inbox)
    assert query(store, "SELECT provider_id, campaign_id FROM replies ORDER BY provider_id") == [
        ("SMa", "c-b"),
        ("SMb", "c-c"),
    ]


def test_a_reply_nobody_wrote_to_waits_a_while_for_its_message(
    receiver: Receiver, store: StoreSettings
):
    receiver.inbound("SMa", ANA, "Sí")
    waiting = drain_inbox(store, receiver.inbox)  # default grace: the sender may record it yet
    assert (waiting.replies, waiting.waiting, waiting.left) == (0, 1, 1)
    wrote(store, "c-new", ANA)
    time.sleep(1.05)
    assert drain_inbox(store, receiver.inbox).replies == 1
    assert query(store, "SELECT campaign_id FROM replies") == [("c-new",)]


def test_twilio_21610_records_an_opt_out_once(receiver: Receiver, store: StoreSettings):
    wrote(store, "c-new", ANA, sid="SM1", sent_at=None)
    wrote(store, "c-old", ANA, sid="SM2", sent_at=None)
    for sid in ("SM1", "SM2"):
        receiver.status(sid, "failed", ErrorCode="21610")
    result = drain(store, receiver.inbox)
    assert result.opt_outs == 1
    rows = query(store, "SELECT phone, campaign_id, source, keyword, opted_in_at FROM opt_outs")
    assert rows == [(ANA, "c-new", "aggregator", None, None)]  # the first refused message's
    assert query(store, "SELECT DISTINCT status, error_code FROM messages") == [("failed", 21610)]
    receiver.status("SM1", "failed", ErrorCode="21610")  # a redelivery after the drain
    receiver.status("SM3", "failed", ErrorCode="21610")  # a message we don't know
    drain(store, receiver.inbox, status_wait=0)
    assert query(store, "SELECT count(*) FROM opt_outs") == [(1,)]


# --- the sandbox's real callbacks and replies ---------------------------------------------------

REPLY_SCRIPT = f"""
replies:
  - number: "{ANA}"
    after_text: "SI o NO"
    delay: 50ms
    say: "Sí"
fail:
  - number: "{LUIS}"
    error_code: 30005
"""


def test_the_sandboxs_callbacks_and_replies_land_in_the_store(tmp_path: Path, store: StoreSettings):
    script = tmp_path / "replies.yaml"
    script.write_text(REPLY_SCRIPT, encoding="utf-8")
    for phone in (ANA, LUIS):
        wrote(store, "c-new", phone, sent_at=None)
    with receiving(tmp_path / "inbox.sqlite", store, drain_every=0.2) as receiver:
        config = SandboxConfig(
            account_sid=ACCOUNT,
            auth_token=TOKEN,
            sent_delay=0.05,
            delivered_delay=0.05,
            inbound_url=receiver.url + "/sms/inbound",
            reply_script=script,
        )
        with running_sandbox(config) as sandbox:
            api = f"{sandbox}/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
            sids = {}
            for phone in (ANA, LUIS):
                form = {
                    "To": phone,
                    "From": SENDER,
                    "Body": "Hola, ¿pagarás? Responde SI o NO",
                    "StatusCallback": receiver.url + "/sms/status",
                }
                answer = httpx.post(api, data=form, auth=(ACCOUNT, TOKEN))
                assert answer.status_code == 201, answer.text
                sids[phone] = answer.json()["sid"]
            # As the sender does, after the aggregator answered: the callbacks may come first.
            with write_transaction(store) as conn:
                for phone, sid in sids.items():
                    conn.execute(
                        "UPDATE messages SET provider_id = ?, sender = ?, status = 'sending', "
                        "sending_at = now() WHERE phone = ?",
                        [sid, SENDER, phone],
                    )
            posts = wait_for(lambda: deliveries(sandbox, count=5))  # 2 x sent + final, 1 reply
            assert all(p["ok"] and p["attempts"] == 1 for p in posts), posts
            wait_for(lambda: counts(receiver.inbox).pending == 0, timeout=10)
    rows = query(store, "SELECT phone, status, error_code FROM messages ORDER BY phone")
    assert rows == [(ANA, "delivered", None), (LUIS, "undelivered", 30005)]
    replies = query(store, "SELECT campaign_id, phone, body, step, sender FROM replies")
    assert replies == [("c-new", ANA, "Sí", "ask", SENDER)]


def deliveries(sandbox: str, count: int) -> list[dict[str, Any]] | None:
    posts: list[dict[str, Any]] = httpx.get(sandbox + "/sandbox/deliveries").json()["deliveries"]
    return posts if len(posts) >= count else None


def wait_for(check: Callable[[], Any], timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s")


# --- the commands -------------------------------------------------------------------------------


CLI = "from smartchat.cli import main; main()"


def test_serve_records_drains_and_stops_cleanly_on_ctrl_c(tmp_path: Path, store: StoreSettings):
    wrote(store, "c-new", ANA, sid="SM1")
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "SMARTCHAT_DB": str(store.path),
        "SMARTCHAT_INBOX": str(tmp_path / "inbox.sqlite"),
        "SMARTCHAT_PUBLIC_URL": public,
        "SMARTCHAT_AUTH_TOKEN": TOKEN,
        "COLUMNS": "200",
    }
    started = time.monotonic()
    server = subprocess.Popen(
        [sys.executable, "-c", CLI, "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        banner = "".join(iter(server.stdout.readline, "Ctrl-C stops it, after a last drain.\n"))
        assert f"Receiving webhooks on http://127.0.0.1:{port}" in banner
        assert f"status callbacks   {public}/sms/status" in banner
        assert f"incoming messages  {public}/sms/inbound" in banner
        wait_for(lambda: _healthy(public), timeout=10)
        assert time.monotonic() - started < 5  # no Prefect, nothing slow at start
        with httpx.Client() as http:
            receiver = Receiver(public, tmp_path / "inbox.sqlite", http)
            assert receiver.status("SM1", "delivered").status_code == 204
            assert receiver.inbound("SMin1", ANA, "Sí").status_code == 200
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=20)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0, err
    assert "Stopped." in out and "Traceback" not in err and TOKEN not in out + err
    assert query(store, "SELECT status FROM messages") == [("delivered",)]
    assert query(store, "SELECT provider_id FROM replies") == [("SMin1",)]


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


runner = CliRunner()


@pytest.mark.parametrize("command", ["serve", "sandbox"])
def test_a_port_in_use_is_one_sentence_and_exit_2(command: str, tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"SMARTCHAT_INBOX": str(tmp_path / "inbox.sqlite"), "COLUMNS": "200"}
        result = runner.invoke(cli, [command, "--port", str(port)], env=env)
    assert result.exit_code == 2
    assert f"Port {port} on 127.0.0.1 is already in use" in result.output
    assert "Traceback" not in result.output


def test_sandbox_runs_with_the_gateway_settings(monkeypatch: pytest.MonkeyPatch):
    import tasks.gateway.sandbox as sandbox

    started: list[tuple[SandboxConfig, int]] = []
    monkeypatch.setattr(sandbox, "serve", lambda config, port: started.append((config, port)))
    env = {
        "SMARTCHAT_ACCOUNT_SID": ACCOUNT,
        "SMARTCHAT_AUTH_TOKEN": TOKEN,
        "SMARTCHAT_PUBLIC_URL": "https://hooks.example.com/",
    }
    args = ["sandbox", "--port", str(free_port()), "--rate", "0", "--fail-rate", "0.1",
            "--reply-script", str(ROOT / "data" / "sample-reply-script.yaml")]  # fmt: skip
    result = runner.invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    [(config, _)] = started
    assert (config.account_sid, config.auth_token) == (ACCOUNT, TOKEN)
    assert config.inbound_url == "https://hooks.example.com/sms/inbound"
    assert (config.rate, config.fail_rate) == (None, 0.1)
    assert TOKEN not in result.output


@pytest.mark.parametrize("command", ["serve", "sandbox"])
def test_the_server_commands_explain_themselves(command: str):
    result = runner.invoke(cli, [command, "--help"])
    assert result.exit_code == 0 and "--port" in result.output
