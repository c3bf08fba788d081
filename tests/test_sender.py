"""The sender (issue 9) against a real sandbox aggregator on a free loopback port and real DuckDB
files: exactly once through faults, retries, a stop and kill -9; the campaign's rate; the Twilio
error mapping; the Prefect flow and the CLI's refusals.

Every contact's messages are counted at the sandbox (`GET /sandbox/messages`), the aggregator's
own record of what it accepted: "exactly once" means one message per contact there, and the
store's sid for it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from schemas.chatbot import load_chatbot
from smartchat.cli import app
from smartchat.errors import (
    CampaignNotFound,
    CampaignStateError,
    GatewayRateLimited,
    GatewayRejected,
    GatewayUnauthorized,
    RecipientOptedOut,
)
from smartchat.settings import GatewaySettings, SendingSettings
from tasks import campaigns
from tasks.gateway.reply_script import parse_reply_script
from tasks.gateway.sandbox import SandboxConfig, running_sandbox
from tasks.gateway.twilio import (
    GatewayOutcomeUnknown,
    GatewayUnreachable,
    TwilioClient,
    answer_error,
    retry_after_seconds,
)
from tasks.sending import RateLimiter, SendLock, SendReport, plan, run_send
from tasks.sms import segments
from tasks.store import open_store, write_transaction
from tasks.store.messages import claim as claim_rows
from tests.conftest import CHATBOT_YAML, ROOT, at, contact_rows, write_contacts

# Callbacks go to a port where nothing listens (the sandbox gives up on them quietly).
NOWHERE = "http://127.0.0.1:9"
FAST = SendingSettings(
    reconcile_delay=0.05, retry_backoff=0.02, retry_max_wait=0.2, max_attempts=4, concurrency=20
)
TOKEN = "sandbox-auth-token"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[str]:
    # sent_delay: messages stay `queued` at the aggregator (no callbacks) during a test.
    with running_sandbox(SandboxConfig(sent_delay=3600)) as url:
        yield url


@pytest.fixture(autouse=True)
def _fresh_sandbox(request: pytest.FixtureRequest) -> None:
    if "sandbox" in request.fixturenames:
        httpx.post(request.getfixturevalue("sandbox") + "/sandbox/reset").raise_for_status()


def gateway(url: str, **changes: Any) -> GatewaySettings:
    return GatewaySettings(**{"url": url, "public_url": NOWHERE, "timeout": 5, **changes})


def launch(db: Path, folder: Path, n: int, *, rate: float = 1000.0, **plan: Any) -> str:
    start = plan.pop("start", 0)
    contacts = write_contacts(folder / f"contacts-{start}-{n}.tsv", contact_rows(n, start=start))
    result = campaigns.launch(
        at(db),
        "payment-reminder",
        contacts,
        plan=campaigns.LaunchPlan(rate=rate, **plan),
        max_message_chars=1600,
    )
    assert result.campaign is not None
    return result.campaign.id


def send(
    db: Path, url: str, campaign_id: str, sending: SendingSettings = FAST, **kw: Any
) -> SendReport:
    gw = kw.pop("gw", None) or gateway(url)
    return asyncio.run(run_send(at(db), gw, sending, campaign_id, **kw))


def at_sandbox(url: str) -> list[dict[str, Any]]:
    messages = httpx.get(url + "/sandbox/messages", timeout=30).json()["messages"]
    return [m for m in messages if m["direction"] == "outbound-api"]


def stored(db: Path, campaign_id: str) -> list[dict[str, Any]]:
    with open_store(at(db), read_only=True) as conn:
        cursor = conn.execute(
            "SELECT phone, seq, status, provider_id, attempts, error_code, error, sender, body, "
            "segments, sending_at, sent_at, failed_at FROM messages WHERE campaign_id = ? "
            "ORDER BY phone",
            [campaign_id],
        )
        names = [d[0] for d in cursor.description or []]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def assert_exactly_once(url: str, db: Path, campaign_id: str, contacts: int) -> None:
    """One message per contact at the aggregator, each recorded sent with its sid."""
    rows = stored(db, campaign_id)
    per_phone = Counter(m["to"] for m in at_sandbox(url))
    assert len(rows) == contacts
    assert {r["phone"] for r in rows} == set(per_phone)
    assert max(per_phone.values()) == 1, per_phone.most_common(3)
    sids = {m["to"]: m["sid"] for m in at_sandbox(url)}
    assert {r["status"] for r in rows} == {"sent"}
    assert all(r["provider_id"] == sids[r["phone"]] for r in rows)


# --- the Twilio contract ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "headers", "error", "retryable"),
    [
        (429, {"code": 20429, "message": "Too Many Requests"}, {"retry-after": "3"},
         GatewayRateLimited, True),
        (400, {"code": 21611, "message": "queue full"}, {}, GatewayRateLimited, True),
        (401, {"code": 20003, "message": "Authenticate"}, {}, GatewayUnauthorized, False),
        (403, {}, {}, GatewayUnauthorized, False),
        (404, {"code": 20404, "message": "not found"}, {}, GatewayUnauthorized, False),
        (400, {"code": 21211, "message": "Invalid 'To'"}, {}, GatewayRejected, False),
        (400, {"code": 21614, "message": "not a mobile"}, {}, GatewayRejected, False),
        (400, {"code": 21617, "message": "too long"}, {}, GatewayRejected, False),
        (400, {"code": 21610, "message": "unsubscribed"}, {}, RecipientOptedOut, False),
        (500, {"code": 20500, "message": "oops"}, {}, GatewayOutcomeUnknown, True),
        (503, b"<html>down</html>", {}, GatewayOutcomeUnknown, True),
    ],
)  # fmt: skip
def test_answers_map_to_the_error_classes_by_status_and_code(
    status: int, body: Any, headers: dict[str, str], error: type, retryable: bool
) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    exc = answer_error(status, headers, content)
    assert type(exc) is error and exc.retryable is retryable
    assert exc.status_code == status
    if status == 429:
        assert exc.retry_after == 3 and exc.code == 20429  # type: ignore[attr-defined]


def test_retry_after_is_seconds_or_an_http_date() -> None:
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    later = datetime.now(UTC).timestamp() + 30
    http_date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(later))
    assert 25 <= (retry_after_seconds(http_date) or 0) <= 31


def test_the_request_is_twilios_form_and_the_token_never_shows(sandbox: str) -> None:
    service = "MG" + "ab" * 16
    client = TwilioClient(gateway(sandbox, auth_token=TOKEN))
    form = client.form("+525512000001", "Hola Ana & co: 100% ¿sí?", None)
    assert form.decode() == (
        "To=%2B525512000001&Body=Hola+Ana+%26+co%3A+100%25+%C2%BFs%C3%AD%3F"
        "&From=%2B15005550006&StatusCallback=http%3A%2F%2F127.0.0.1%3A9%2Fsms%2Fstatus"
    )
    assert b"MessagingServiceSid=" + service.encode() in client.form("+1", "x", service)
    assert TOKEN not in repr(client)

    async def go() -> list[Any]:
        async with TwilioClient(gateway(sandbox)) as ok:
            sent = await ok.send_message("+525512000001", "Hola")
            found = await ok.find_sent(
                "+525512000001", "Hola", None, datetime(2020, 1, 1, tzinfo=UTC)
            )
        errors = []
        async with TwilioClient(gateway(sandbox, auth_token="wrong-token")) as bad:
            for call in (bad.check(), bad.send_message("+525512000001", "x")):
                try:
                    await call
                except GatewayUnauthorized as exc:
                    errors.append(exc)
        return [sent, found, errors]

    sent, found, errors = asyncio.run(go())
    assert sent.sid.startswith("SM") and sent.status == "queued" and sent.num_segments == 1
    assert [m.sid for m in found] == [sent.sid]
    assert len(errors) == 2 and all("wrong-token" not in str(e) for e in errors)


def test_the_rate_limiter_paces_starts_and_bursts_little() -> None:
    limiter = RateLimiter(100.0)  # burst max(1, 100/20) = 5
    waits = [limiter.reserve() for _ in range(105)]
    assert waits[:5] == [0.0] * 5
    assert waits[-1] == pytest.approx(1.0, abs=0.02)  # 100 more starts take 1 s: none early
    unlimited = RateLimiter(None)
    assert unlimited.reserve() == 0.0
    unlimited.throttle(2.0)  # a 429 holds even an unlimited sender for its Retry-After
    assert unlimited.reserve() == pytest.approx(2.0, abs=0.05)


# --- sending ------------------------------------------------------------------------------------


def test_every_contact_gets_the_rendered_opening_message_once(
    sandbox: str, db: Path, tmp_path: Path
) -> None:
    campaign_id = launch(db, tmp_path, 30)
    report = send(db, sandbox, campaign_id)

    assert (report.planned, report.sent, report.failed) == (30, 30, 0)
    assert_exactly_once(sandbox, db, campaign_id, 30)
    bot = load_chatbot(CHATBOT_YAML)
    contacts = {row[0]: row for row in contact_rows(30)}
    for row in stored(db, campaign_id):
        name, due, amount = contacts[row["phone"]][1:]
        values = {"NAME": name, "DUE_DATE": due, "AMOUNT": amount}
        assert row["body"] == bot.first_message(values)
        assert (row["seq"], row["sender"], row["attempts"]) == (1, "+15005550006", 1)
        assert row["segments"] == segments(row["body"]) == 2  # ¿ and á: UCS-2, 70 a part
        assert row["sending_at"] <= row["sent_at"]
    callbacks = {m["status_callback"] for m in at_sandbox(sandbox)}
    assert callbacks == {NOWHERE + "/sms/status"}

    again = send(db, sandbox, campaign_id)  # nothing left: nothing sent twice
    assert (again.planned, again.sent, again.requests) == (0, 0, 0)
    assert len(at_sandbox(sandbox)) == 30


def test_never_above_the_rate_and_close_to_it(db: Path, tmp_path: Path) -> None:
    # The aggregator itself refuses anything faster than 110% of our rate (burst 2).
    config = SandboxConfig(sent_delay=3600, rate=22, burst=2)
    campaign_id = launch(db, tmp_path, 60, rate=20)
    with running_sandbox(config) as url:
        report = send(db, url, campaign_id)
        created = [parsedate_to_datetime(m["date_created"]) for m in at_sandbox(url)]
    assert report.sent == 60 and report.throttled == 0
    assert report.request_rate <= 20 * 1.02  # the pace, first request to last
    assert report.request_rate >= 20 * 0.95
    span = max(created) - min(created)
    assert span.total_seconds() >= 2  # 59 intervals of 50 ms, at whole-second resolution
    per_second = Counter(created)
    assert max(per_second.values()) <= 22  # no 1-second window above 110%


def test_a_429_is_honoured_and_nothing_is_dropped(sandbox: str, db: Path, tmp_path: Path) -> None:
    campaign_id = launch(db, tmp_path, 20)
    httpx.post(sandbox + "/sandbox/faults", json={"next": ["429"], "burst_429": 3})
    started = time.monotonic()
    report = send(db, sandbox, campaign_id)
    assert time.monotonic() - started >= 1.0  # Retry-After: 1
    assert report.throttled >= 1 and report.sent == 20
    assert_exactly_once(sandbox, db, campaign_id, 20)


def test_permanent_errors_fail_at_once_transient_ones_are_retried(
    sandbox: str, db: Path, tmp_path: Path
) -> None:
    refused = launch(db, tmp_path, 3)
    invalid = "+5255"  # stored by hand: the aggregator refuses it (21211)
    with write_transaction(at(db)) as conn:
        conn.execute(
            "UPDATE campaign_contacts SET phone = ? WHERE campaign_id = ? AND row_number = 2",
            [invalid, refused],
        )
    report = send(db, sandbox, refused)
    bad = next(r for r in stored(db, refused) if r["phone"] == invalid)
    assert (bad["status"], bad["error_code"], bad["attempts"]) == ("failed", 21211, 1)
    assert "Invalid 'To' Phone Number" in bad["error"] and bad["failed_at"] is not None
    assert (report.sent, report.failed) == (2, 1)

    retried = launch(db, tmp_path, 5, start=100)
    httpx.post(sandbox + "/sandbox/faults", json={"next": ["5xx", "5xx", "drop"]})
    report = send(db, sandbox, retried, FAST.model_copy(update={"concurrency": 1}))
    rows = stored(db, retried)
    assert {r["status"] for r in rows} == {"sent"} and report.sent == 5
    assert sum(r["attempts"] for r in rows) == 5 + 3  # each fault cost one more request
    assert Counter(m["to"] for m in at_sandbox(sandbox)).most_common(1)[0][1] == 1


def test_after_max_attempts_a_message_fails_with_its_last_reason(
    sandbox: str, db: Path, tmp_path: Path
) -> None:
    campaign_id = launch(db, tmp_path, 3)
    httpx.post(sandbox + "/sandbox/faults", json={"fail_rate": 1.0, "kinds": ["5xx"]})
    report = send(db, sandbox, campaign_id, FAST.model_copy(update={"max_attempts": 3}))
    rows = stored(db, campaign_id)
    assert report.failed == 3 and at_sandbox(sandbox) == []
    assert {(r["status"], r["attempts"]) for r in rows} == {("failed", 3)}
    assert {r["error_code"] for r in rows} <= {20500, 20503}
    assert all(r["error"].startswith("The aggregator failed (HTTP 50") for r in rows)


def test_answers_lost_after_acceptance_are_found_not_resent(
    sandbox: str, db: Path, tmp_path: Path
) -> None:
    campaign_id = launch(db, tmp_path, 40)
    lost = ["drop-accepted", "5xx-accepted", "slow", "drop-accepted", "5xx-accepted"]
    httpx.post(sandbox + "/sandbox/faults", json={"next": lost, "slow_seconds": 1.5})
    report = send(db, sandbox, campaign_id, gw=gateway(sandbox, timeout=0.5))
    assert report.recovered == 5 and report.sent == 40
    assert_exactly_once(sandbox, db, campaign_id, 40)


def test_random_faults_of_every_kind_never_duplicate(
    sandbox: str, db: Path, tmp_path: Path
) -> None:
    campaign_id = launch(db, tmp_path, 120)
    kinds = ["5xx", "drop", "429", "slow", "5xx-accepted", "drop-accepted"]
    httpx.post(
        sandbox + "/sandbox/faults",
        json={"fail_rate": 0.15, "kinds": kinds, "slow_seconds": 0.8, "burst_429": 2, "seed": 7},
    )
    report = send(
        db, sandbox, campaign_id, FAST.model_copy(update={"max_attempts": 8}),
        gw=gateway(sandbox, timeout=0.4),
    )  # fmt: skip
    assert report.sent == 120 and report.failed == 0
    assert_exactly_once(sandbox, db, campaign_id, 120)


def test_a_crash_after_claiming_is_settled_before_sending(
    sandbox: str, db: Path, tmp_path: Path
) -> None:
    """Left `sending` by a crash: 5 were at the aggregator (found, not resent), 5 never left."""
    campaign_id = launch(db, tmp_path, 10)
    plan(at(db), campaign_id, "+15005550006")
    with write_transaction(at(db)) as conn:
        claimed = claim_rows(conn, campaign_id, 10, datetime.now(UTC))

    async def reached_the_aggregator() -> None:
        async with TwilioClient(gateway(sandbox)) as client:
            for m in claimed[:5]:
                await client.send_message(m.phone, m.body, m.sender)

    asyncio.run(reached_the_aggregator())
    report = send(db, sandbox, campaign_id)
    assert (report.reconciled.found, report.reconciled.requeued) == (5, 5)
    assert report.sent == 5 and report.requests == 5
    assert_exactly_once(sandbox, db, campaign_id, 10)


def test_one_sender_per_campaign_at_a_time(sandbox: str, db: Path, tmp_path: Path) -> None:
    campaign_id = launch(db, tmp_path, 3)
    with SendLock(at(db), campaign_id):  # another process sending it, as far as flock knows
        with pytest.raises(CampaignStateError, match=f"pid {os.getpid()}"):
            send(db, sandbox, campaign_id)
    assert at_sandbox(sandbox) == []
    assert send(db, sandbox, campaign_id).sent == 3  # released: the next send goes


def test_a_messaging_service_sender_is_found_by_its_sid(
    sandbox: str, db: Path, tmp_path: Path
) -> None:
    service = "MG" + "ab" * 16
    campaign_id = launch(db, tmp_path, 6)
    httpx.post(sandbox + "/sandbox/faults", json={"next": ["drop-accepted", "5xx-accepted"]})
    report = send(db, sandbox, campaign_id, gw=gateway(sandbox, sender=service))
    assert report.recovered == 2
    assert_exactly_once(sandbox, db, campaign_id, 6)
    assert {m["messaging_service_sid"] for m in at_sandbox(sandbox)} == {service}
    assert {r["sender"] for r in stored(db, campaign_id)} == {service}


def test_stop_halts_a_send_within_a_batch(sandbox: str, db: Path, tmp_path: Path) -> None:
    campaign_id = launch(db, tmp_path, 200, rate=50)
    settings = FAST.model_copy(update={"batch_seconds": 0.2})  # batches of 10 at 50/s

    async def send_then_stop() -> SendReport:
        running = asyncio.ensure_future(run_send(at(db), gateway(sandbox), settings, campaign_id))
        await asyncio.sleep(1.0)
        await asyncio.to_thread(campaigns.stop, at(db), campaign_id)
        stopped_at = time.monotonic()
        report = await running
        assert time.monotonic() - stopped_at < 1.0  # a batch of 10 at 50/s is 0.2 s
        return report

    report = asyncio.run(send_then_stop())
    rows = stored(db, campaign_id)
    statuses = Counter(r["status"] for r in rows)
    assert report.stopped == "stopped" and 20 <= report.sent < 120
    assert statuses == {"sent": report.sent, "queued": 200 - report.sent}
    assert len(at_sandbox(sandbox)) == report.sent
    with pytest.raises(CampaignStateError, match="is stopped"):
        send(db, sandbox, campaign_id)


def test_opted_out_numbers_are_recorded_and_never_texted_again(db: Path, tmp_path: Path) -> None:
    stopper = contact_rows(3)[1][0]
    script = parse_reply_script(f'replies:\n  - number: "{stopper}"\n    delay: 0\n    say: STOP\n')
    config = SandboxConfig(sent_delay=0.01, delivered_delay=0.01, reply_script=script)
    first = launch(db, tmp_path, 3)
    with running_sandbox(config) as url:
        send(db, url, first)
        deadline = time.monotonic() + 5  # the STOP reply arrives after delivery
        while not any(
            m["direction"] == "inbound"
            for m in httpx.get(url + "/sandbox/messages").json()["messages"]
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        campaigns.stop(at(db), first)  # the same file again: a new campaign, once stopped
        second = launch(db, tmp_path, 3)
        report = send(db, url, second)
        campaigns.stop(at(db), second)
        third = launch(db, tmp_path, 3)
        skipped = send(db, url, third)
    refused = [r for r in stored(db, second) if r["status"] == "failed"]
    assert [(r["phone"], r["error_code"]) for r in refused] == [(stopper, 21610)]
    assert report.opted_out == 1
    with open_store(at(db), read_only=True) as conn:
        opt_outs = conn.execute("SELECT phone, source, campaign_id FROM opt_outs").fetchall()
    assert opt_outs == [(stopper, "aggregator", second)]
    assert skipped.skipped_opted_out == 1 and skipped.sent == 2
    assert stopper not in {r["phone"] for r in stored(db, third)}


def test_kill_9_at_a_random_moment_then_send_again_texts_everyone_once(
    sandbox: str, db: Path, tmp_path: Path
) -> None:
    contacts = 400
    campaign_id = launch(db, tmp_path, contacts, rate=250)
    env = {
        **os.environ,
        "SMARTCHAT_GATEWAY_URL": sandbox,
        "SMARTCHAT_PUBLIC_URL": NOWHERE,
        "SMARTCHAT_SEND_RECONCILE_DELAY": "0.05",
        "SMARTCHAT_SEND_BATCH_SECONDS": "0.2",
    }
    child = subprocess.Popen(
        [sys.executable, "-c", "from smartchat.cli import main; main()",
         "send", campaign_id, "--db", str(db), "--json"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    try:
        while len(at_sandbox(sandbox)) < 50:  # sending for sure
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(random.uniform(0, 0.8))
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(10)
    before = len(at_sandbox(sandbox))
    assert 50 <= before < contacts
    report = send(db, sandbox, campaign_id)
    assert report.reconciled.found + report.reconciled.requeued > 0  # it left some `sending`
    assert_exactly_once(sandbox, db, campaign_id, contacts)


# --- the Prefect flow ---------------------------------------------------------------------------


def test_the_flow_sends_a_campaign_with_artifacts(
    prefect_harness: None, sandbox: str, db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.send_campaign import send_campaign
    from tests.test_launch_flow import latest_artifact

    monkeypatch.setenv("SMARTCHAT_GATEWAY_URL", sandbox)
    monkeypatch.setenv("SMARTCHAT_PUBLIC_URL", NOWHERE)
    monkeypatch.setenv("SMARTCHAT_SEND_RECONCILE_DELAY", "0.05")
    monkeypatch.setenv("SMARTCHAT_SEND_BATCH_SIZE", "10")
    campaign_id = launch(db, tmp_path, 35)
    httpx.post(sandbox + "/sandbox/faults", json={"next": ["drop-accepted", "5xx"]})
    summary = asyncio.run(send_campaign(campaign_id, db=str(db)))

    assert summary["sent"] == 35 and summary["failed"] == 0
    assert summary["messages"]["sent"] == 35
    assert_exactly_once(sandbox, db, campaign_id, 35)
    progress = latest_artifact("campaign-send-progress")
    assert progress.type == "progress" and float(progress.data) == 100.0
    markdown = latest_artifact("campaign-send")
    assert campaign_id in markdown.data and "| sent | 35 |" in markdown.data


# --- the CLI ------------------------------------------------------------------------------------


def run_cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, list(args), env={"SMARTCHAT_PUBLIC_URL": NOWHERE, **(env or {})})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_cli_sends_and_prints_json(sandbox: str, db: Path, tmp_path: Path) -> None:
    campaign_id = launch(db, tmp_path, 8)
    result = run_cli("send", campaign_id, "--db", str(db), "--json", "--rate", "500",
                     env={"SMARTCHAT_GATEWAY_URL": sandbox})  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["sent"], report["failed"], report["rate"]) == (8, 0, 500)
    assert report["messages"]["sent"] == 8


def test_cli_refusals_are_one_sentence_and_send_nothing(
    sandbox: str, db: Path, tmp_path: Path
) -> None:
    env = {"SMARTCHAT_GATEWAY_URL": sandbox}
    stopped = launch(db, tmp_path, 2)
    campaigns.stop(at(db), stopped)
    no_send = launch(db, tmp_path, 2, start=10, send=False)
    unsent = launch(db, tmp_path, 2, start=20)
    cases = [
        (("send", "c-20200101-0000"), env, 1, "No campaign 'c-20200101-0000'"),
        (("send", stopped), env, 1, f"Campaign {stopped} is stopped"),
        (("send", no_send), env, 1, "launched not to send (--no-send)"),
        (("send", unsent, "--rate", "0"), env, 2, "--rate must be"),
        (("send", unsent), {"SMARTCHAT_GATEWAY_URL": f"http://127.0.0.1:{closed_port()}"},
         2, "can't be reached"),
        (("send", unsent), {**env, "SMARTCHAT_AUTH_TOKEN": "not-the-token"}, 2,
         "refused the account's credentials"),
    ]  # fmt: skip
    for args, case_env, code, message in cases:
        result = run_cli(*args, "--db", str(db), env=case_env)
        assert result.exit_code == code, (args, result.output)
        assert message in " ".join(result.output.split()), result.output
        assert "Traceback" not in result.output and "not-the-token" not in result.output
    assert at_sandbox(sandbox) == []
    with open_store(at(db), read_only=True) as conn:
        assert conn.execute(
            "SELECT count(*) FROM messages WHERE status <> 'queued'"
        ).fetchall() == [(0,)]


def test_a_closed_port_is_unreachable_and_an_unknown_campaign_is_refused(
    sandbox: str, db: Path
) -> None:
    async def check() -> None:
        async with TwilioClient(gateway(f"http://127.0.0.1:{closed_port()}")) as client:
            await client.check()

    with pytest.raises(GatewayUnreachable, match="can't be reached"):
        asyncio.run(check())
    with pytest.raises(CampaignNotFound):
        send(db, sandbox, "c-20200101-0000")


def test_opening_messages_due_in_quiet_hours_wait_until_they_end(
    sandbox: str, db: Path, tmp_path: Path
) -> None:
    """Quiet hours are in each recipient's local time: a window covering every hour but one
    minute holds every opening message until that minute, and the claims skip them."""
    from datetime import UTC, datetime, time, timedelta

    from tasks.quiet_hours import QuietHours
    from tasks.store import messages as message_rows

    campaign_id = launch(db, tmp_path, 6)
    now = datetime.now(UTC)
    almost_always = QuietHours(time(0, 0), time(23, 59))
    report = send(db, sandbox, campaign_id, quiet=almost_always)
    assert (report.planned, report.sent, report.held) == (6, 0, 6)
    assert report.held_until is not None and report.held_until > now
    assert at_sandbox(sandbox) == []
    with open_store(at(db), read_only=True) as conn:
        held = conn.execute(
            "SELECT count(*) FROM messages WHERE status = 'queued' AND not_before > ?", [now]
        ).fetchall()
        assert held == [(6,)]
        assert message_rows.campaigns_due(conn, now) == []  # nothing may go yet
        later = report.held_until + timedelta(seconds=1)
        assert message_rows.campaigns_due(conn, later) == [campaign_id]
    # An answer to a contact's own reply never waits: only planned opening messages are held.
    assert {r["seq"] for r in stored(db, campaign_id)} == {1}


def test_without_quiet_hours_nothing_waits(sandbox: str, db: Path, tmp_path: Path) -> None:
    from datetime import time

    from tasks.quiet_hours import QuietHours

    campaign_id = launch(db, tmp_path, 4)
    report = send(db, sandbox, campaign_id, quiet=QuietHours(time(8, 0), time(8, 0)))
    assert (report.sent, report.held) == (4, 0)
