"""Figures for conversations (issue 10). Prints them; not part of the test suite.

    .venv/bin/python -m benchmarks.bench_conversations [--contacts 100000] [--skip-run]

1. Replies end to end: a campaign of `--contacts` contacts whose opening messages went out; each
   contact replies once ("Sí"/"no", signed, 50 concurrent clients) to the webhook receiver (its
   own process). Printed: the receiver's own intake rate; then, from the first drain to the last
   answer accepted by the sandbox aggregator (its own process): drain the inbox into DuckDB,
   read every reply (the engine, a transaction per 5,000), send every answer (the sender). Checks
   that every reply was recorded once and answered exactly once (at the sandbox too).
2. `smartchat run` on the bundled sample (1,000 contacts, the sample reply script): wall time,
   and the share of it Prefect's orchestration takes: the same steps run again as plain
   functions, without Prefect (servers, launch, send, then drain, read, send and expire once a
   second until the campaign completes), and the difference is Prefect's (its import, the
   ephemeral API's start, flow and task runs).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import polars as pl

from benchmarks.bench_receiver import ACCOUNT, SENDER, TOKEN, burst, free_port, signed
from schemas.keywords import load_keywords
from smartchat.settings import GatewaySettings, SendingSettings, StoreSettings
from tasks import campaigns, conversations
from tasks.gateway.sandbox import SandboxConfig, running_sandbox
from tasks.receiver.drain import drain_inbox
from tasks.sending import run_send
from tasks.store import open_store, write_transaction

ROOT = Path(__file__).resolve().parents[1]
BOT = ROOT / "data" / "payment-reminder.yaml"
SAMPLE = ROOT / "data" / "sample-campaign.tsv"
SAMPLE_REPLIES = ROOT / "data" / "sample-campaign-replies.yaml"
SMARTCHAT = str(Path(sys.executable).parent / "smartchat")


def launch(store: StoreSettings, contacts: int, folder: Path) -> tuple[str, list[str]]:
    """A launched campaign whose opening messages were sent (straight into the store)."""
    from benchmarks.common import synthetic_contacts

    path = folder / "contacts.tsv"
    synthetic_contacts(contacts).write_csv(path, separator="\t")
    campaigns.register_chatbot(store, BOT, max_message_chars=1600)
    plan = campaigns.LaunchPlan(send=True)
    campaign = campaigns.launch(store, "payment-reminder", path, plan=plan, max_message_chars=1600)
    assert campaign.campaign is not None
    campaign_id = campaign.campaign.id
    with write_transaction(store) as conn:
        conn.execute(
            """
            INSERT INTO messages (campaign_id, phone, seq, step, kind, country, body, segments,
                                  status, sender, provider_id, sent_at)
            SELECT campaign_id, phone, 1, 'ask', 'say', country, 'Hola', 1, 'sent', ?,
                   'SMopen' || row_number, now()
            FROM campaign_contacts WHERE campaign_id = ?
            """,
            [SENDER, campaign_id],
        )
        phones = [r[0] for r in conn.execute("SELECT phone FROM campaign_contacts").fetchall()]
    return campaign_id, phones


def reply_posts(public: str, phones: list[str]) -> list[tuple[str, bytes, str]]:
    posts = []
    for j, phone in enumerate(phones):
        sid = f"SMin{j:010d}"
        form = [
            ("SmsMessageSid", sid),
            ("NumMedia", "0"),
            ("SmsSid", sid),
            ("SmsStatus", "received"),
            ("Body", random.choice(["Sí", "no"])),
            ("To", SENDER),
            ("NumSegments", "1"),
            ("MessageSid", sid),
            ("AccountSid", ACCOUNT),
            ("From", phone),
            ("ApiVersion", "2010-04-01"),
        ]
        posts.append(signed(public, "/sms/inbound", form))
    random.shuffle(posts)
    return posts


def replies_end_to_end(contacts: int) -> None:
    print(f"\nReplies end to end: {contacts:,} contacts, each replying once")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = StoreSettings(path=folder / "smartchat.duckdb", lock_timeout=60)
        inbox = folder / "inbox.sqlite"
        campaign_id, phones = launch(store, contacts, folder)
        port = free_port()
        public = f"http://127.0.0.1:{port}"
        # The receiver in its own process, recording only (no drain): the pipeline below
        # drains, timed.
        server = subprocess.Popen(
            [sys.executable, "-c", _RECEIVER, TOKEN, public, str(inbox), str(port)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
        )
        try:
            _wait_healthy(public)
            posts = reply_posts(public, phones)
            elapsed, latencies, failures = asyncio.run(burst(public, posts, 50))
            latencies.sort()
            print(
                f"  receiver intake: {len(posts) / elapsed:,.0f} posts/s "
                f"(p99 {latencies[int(len(latencies) * 0.99)] * 1000:.0f} ms), "
                f"{failures} refused"
            )
            # The receiver stays up, recording the answers' status callbacks, as in production.
            gateway = GatewaySettings(account_sid=ACCOUNT, auth_token=TOKEN, public_url=public)
            sandbox = SandboxConfig(account_sid=ACCOUNT, auth_token=TOKEN, honor_stop=False)
            with running_sandbox(sandbox, process=True) as url:
                gateway = gateway.model_copy(update={"url": url})
                keywords = load_keywords()
                started = time.perf_counter()
                drained = drain_inbox(store, inbox, batch=20_000)
                t_drain = time.perf_counter() - started
                read = 0
                while batch := conversations.process_batch(store, keywords).replies:
                    read += batch
                t_read = time.perf_counter() - started - t_drain
                report = asyncio.run(
                    run_send(store, gateway, SendingSettings(), campaign_id, rate=100_000)
                )
                total = time.perf_counter() - started
                at_sandbox = httpx.get(f"{url}/sandbox/messages", timeout=120).json()
        finally:
            assert server.stdin is not None
            server.stdin.close()
            server.wait(30)
        at_sandbox = at_sandbox.get("messages", at_sandbox)
        with open_store(store, read_only=True) as conn:
            stored = conn.execute(
                "SELECT count(*), count(DISTINCT phone), count(outcome) FROM replies"
            ).fetchall()[0]
            answers = conn.execute(
                "SELECT count(*), count(DISTINCT phone), count(sent_at) FROM messages WHERE seq = 2"
            ).fetchall()[0]
        sent_to = pl.Series([m["to"] for m in at_sandbox if m["direction"] != "inbound"])
        print(
            f"  drain {drained.replies:,} replies {t_drain:.1f} s, engine {read:,} replies "
            f"{t_read:.1f} s, sender {report.sent:,} answers {total - t_drain - t_read:.1f} s"
        )
        print(
            f"  inbox to answer accepted: {contacts / total:,.0f} replies/s "
            f"({contacts:,} in {total:.1f} s; target >= 2,000/s)"
        )
        duplicates = sent_to.len() - sent_to.n_unique()
        print(
            f"  replies stored {stored[0]:,} (distinct contacts {stored[1]:,}, read {stored[2]:,});"
            f" answers {answers[0]:,} queued, {answers[2]:,} sent; at the sandbox "
            f"{sent_to.len():,} messages, {duplicates} duplicates, "
            f"{contacts - sent_to.n_unique()} missing"
        )


_RECEIVER = """
import sys
from pathlib import Path
from smartchat.settings import GatewaySettings
from tasks.receiver.app import ReceiverApp
from tasks.receiver.server import listen, running_receiver

token, public, inbox, port = sys.argv[1:5]
app = ReceiverApp(GatewaySettings(auth_token=token, public_url=public), Path(inbox))
with running_receiver(app, listen("127.0.0.1", int(port))):
    sys.stdin.read()
"""


def _wait_healthy(base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    sys.exit("the receiver did not start")


def run_sample() -> None:
    print("\n`smartchat run` on the bundled sample (1,000 contacts, the sample reply script)")
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "SMARTCHAT_DB": f"{tmp}/smartchat.duckdb",
            "SMARTCHAT_INBOX": f"{tmp}/inbox.sqlite",
        }
        command = [
            SMARTCHAT, "run", "--chatbot", str(BOT), "--contacts", str(SAMPLE),
            "--reply-script", str(SAMPLE_REPLIES), "--json",
        ]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(done.stderr[-2000:])
    plain = run_plain()
    print(
        f"  wall {wall:.1f} s (target < 60 s); the same steps without Prefect {plain:.1f} s: "
        f"Prefect's orchestration {wall - plain:.1f} s ({(wall - plain) / wall:.0%} of the run)"
    )


def run_plain() -> float:
    """The run_campaign flow's steps as plain functions, in a fresh process: its wall time."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "SMARTCHAT_DB": f"{tmp}/s.duckdb", "SMARTCHAT_INBOX": f"{tmp}/i.db"}
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", _PLAIN, str(BOT), str(SAMPLE), str(SAMPLE_REPLIES)],
            env=env,
            check=True,
            cwd=ROOT,
        )
        return time.perf_counter() - started


_PLAIN = """
import asyncio, sys, time
from schemas.keywords import load_keywords
from smartchat.settings import load_settings
from tasks import campaigns, conversations
from tasks.receiver.drain import drain_inbox
from tasks.sending import run_send
from flows.run_campaign import _servers

settings = load_settings()
store, keywords = settings.store, load_keywords()
bot = campaigns.register_chatbot(store, sys.argv[1], max_message_chars=1600).chatbot
with _servers(settings, bot.load(), sys.argv[3]):
    plan = campaigns.LaunchPlan(rate=500.0, again=True, separate=True)
    campaign = campaigns.launch(
        store, bot.id, sys.argv[2], plan=plan, max_message_chars=1600
    ).campaign
    send = lambda: asyncio.run(run_send(store, settings.gateway, settings.sending, campaign.id))
    send()
    while True:
        drain_inbox(store, settings.receiver.inbox, reply_wait=20)
        answered = set()
        while (batch := conversations.process_batch(store, keywords, expire_after=20)).replies:
            answered.update(batch.campaigns)
        if answered:
            send()
        if campaign.id in conversations.expire_and_complete(store, expire_after=20)[1]:
            break
        time.sleep(1.0)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--skip-run", action="store_true")
    args = parser.parse_args()
    random.seed(7)
    replies_end_to_end(args.contacts)
    if not args.skip_run:
        run_sample()


if __name__ == "__main__":
    main()
