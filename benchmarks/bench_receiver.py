"""Figures for the webhook receiver. Prints them; not part of the test suite.

    .venv/bin/python -m benchmarks.bench_receiver [--posts 20000] [--clients 50]

A burst of signed posts (half status callbacks: `sent` and `delivered` for a quarter as many
messages, in random order; half inbound replies, 5% of them redeliveries of an earlier one) from
`--clients` concurrent aiohttp connections to `smartchat serve` (its own process, uvicorn on
uvloop + httptools when installed), while another process holds the DuckDB file open read-write.
Then the holder lets go and the server's drainer moves the inbox into DuckDB.

Prints requests/s and p50/p99 latency of the burst, how long the drain took once the store was
free, and checks in DuckDB that nothing acknowledged was lost or stored twice: every message
ends `delivered`, and every distinct reply is in `replies` once, attributed to its campaign.
Client and server share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import polars as pl

from smartchat.settings import StoreSettings
from tasks.gateway.signature import SIGNATURE_HEADER, twilio_signature
from tasks.receiver.inbox import counts
from tasks.store import open_store, write_transaction
from tasks.store.messages import insert as insert_messages

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-auth-token"
ACCOUNT = "AC" + "0" * 32
SENDER = "+15005550006"
CAMPAIGN = "c-20261201-bench"
HOLDER = """
import sys, time, duckdb
conn = duckdb.connect(sys.argv[1])
print("holding", flush=True)
sys.stdin.read()
conn.close()
"""

Post = tuple[str, bytes, str]  # path, form body, signature


def prepare_store(store: StoreSettings, messages: int) -> list[str]:
    """A campaign whose `messages` messages left for the aggregator; returns their phones."""
    phones = [f"+525512{i:06d}" for i in range(messages)]
    frame = pl.DataFrame(
        {
            "phone": phones,
            "seq": [1] * messages,
            "step": ["ask"] * messages,
            "kind": ["say"] * messages,
            "country": ["MX"] * messages,
            "body": ["Hola, ¿pagarás a tiempo? Responde SI o NO"] * messages,
            "segments": [1] * messages,
            "status": ["queued"] * messages,
        }
    )
    sids = pl.DataFrame({"phone": phones, "sid": [f"SMout{i:08d}" for i in range(messages)]})
    with write_transaction(store) as conn:
        conn.execute(
            "INSERT INTO campaigns (id, name, chatbot_id, chatbot_version, status, contacts_file, "
            "contacts_sha256, contact_count, send_rate, send_enabled) "
            "VALUES (?, 'bench', 'bot', 1, 'launched', 'f.tsv', 'abc', ?, 10, true)",
            [CAMPAIGN, messages],
        )
        insert_messages(conn, CAMPAIGN, frame)
        conn.register("bench_sids", sids)
        conn.execute(
            "UPDATE messages AS m SET provider_id = s.sid, sender = ?, status = 'sending', "
            "sending_at = now() FROM bench_sids s WHERE m.phone = s.phone",
            [SENDER],
        )
        conn.unregister("bench_sids")
    return phones


def signed(public: str, path: str, form: list[tuple[str, str]]) -> Post:
    return path, urlencode(form).encode(), twilio_signature(TOKEN, public + path, form)


def build_posts(public: str, phones: list[str], total: int) -> tuple[list[Post], int]:
    """`total` signed posts, shuffled; returns them and how many distinct replies they carry."""
    posts: list[Post] = []
    for i, phone in enumerate(phones):
        for status in ("sent", "delivered"):
            form = [
                ("SmsSid", f"SMout{i:08d}"),
                ("SmsStatus", status),
                ("MessageStatus", status),
                ("To", phone),
                ("MessageSid", f"SMout{i:08d}"),
                ("AccountSid", ACCOUNT),
                ("From", SENDER),
                ("ApiVersion", "2010-04-01"),
            ]
            posts.append(signed(public, "/sms/status", form))
    inbound = total - len(posts)
    distinct = inbound - inbound // 20  # 5% are redeliveries
    replies = []
    for j in range(distinct):
        sid = f"SMin{j:08d}"
        form = [
            ("ToCountry", "US"),
            ("ToState", ""),
            ("SmsMessageSid", sid),
            ("NumMedia", "0"),
            ("SmsSid", sid),
            ("SmsStatus", "received"),
            ("Body", random.choice(["Sí", "si", "NO", "ok, gracias"])),
            ("To", SENDER),
            ("NumSegments", "1"),
            ("MessageSid", sid),
            ("AccountSid", ACCOUNT),
            ("From", phones[j % len(phones)]),
            ("ApiVersion", "2010-04-01"),
        ]
        replies.append(signed(public, "/sms/inbound", form))
    posts += replies + random.sample(replies, inbound - distinct)
    random.shuffle(posts)
    return posts, distinct


async def burst(base: str, posts: list[Post], clients: int) -> tuple[float, list[float], int]:
    """Send every post from `clients` connections: (seconds, latencies, non-2xx answers)."""
    import aiohttp

    latencies: list[float] = []
    failures = 0
    queue = iter(posts)

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        for path, body, signature in queue:
            headers = {
                "Content-Type": "application/x-www-form-urlencoded",
                SIGNATURE_HEADER: signature,
            }
            started = time.perf_counter()
            async with session.post(base + path, data=body, headers=headers) as answer:
                await answer.read()
                failures += not 200 <= answer.status < 300
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies, failures


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > timeout:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.05)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    random.seed(7)

    with tempfile.TemporaryDirectory() as tmp:
        store = StoreSettings(path=Path(tmp) / "smartchat.duckdb")
        inbox = Path(tmp) / "inbox.sqlite"
        phones = prepare_store(store, args.posts // 4)
        messages = len(phones)
        port = free_port()
        public = f"http://127.0.0.1:{port}"
        posts, distinct_replies = build_posts(public, phones, args.posts)

        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(store.path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "holding"
        env = {
            **os.environ,
            "SMARTCHAT_DB": str(store.path),
            "SMARTCHAT_INBOX": str(inbox),
            "SMARTCHAT_PUBLIC_URL": public,
            "SMARTCHAT_AUTH_TOKEN": TOKEN,
        }
        server = subprocess.Popen(
            [sys.executable, "-c", "from smartchat.cli import main; main()", "serve",
             "--port", str(port)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            import urllib.request

            def healthy() -> bool:
                try:
                    with urllib.request.urlopen(public + "/health", timeout=1):
                        return True
                except OSError:
                    return False

            start_s = wait_until(healthy, 30, "the receiver to start")
            elapsed, latencies, failures = asyncio.run(burst(public, posts, args.clients))
            held = counts(inbox)
            holder.stdin.close()  # the other process lets go of the store
            holder.wait(10)
            drain_s = wait_until(lambda: counts(inbox).pending == 0, 300, "the drain")
            server.send_signal(signal.SIGINT)
            out, err = server.communicate(timeout=60)
        finally:
            for child in (server, holder):
                if child.poll() is None:
                    child.kill()
                    child.wait()

        with open_store(store, read_only=True) as conn:
            delivered, with_times = conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'delivered'), "
                "count(*) FILTER (WHERE sent_at IS NOT NULL AND delivered_at IS NOT NULL) "
                "FROM messages"
            ).fetchone() or (0, 0)
            stored, distinct, attributed = conn.execute(
                "SELECT count(*), count(DISTINCT provider_id), count(campaign_id) FROM replies"
            ).fetchone() or (0, 0, 0)

    latencies.sort()
    print(f"receiver: {args.posts:,} signed posts from {args.clients} concurrent aiohttp clients")
    print(f"  while another process held the DuckDB file (server up in {start_s:.2f} s)")
    print(f"  requests/s            {len(posts) / elapsed:,.0f}   ({elapsed:.2f} s)")
    print(f"  latency p50 / p99     {statistics.median(latencies) * 1000:.1f} ms / "
          f"{latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms")  # fmt: skip
    print(f"  non-2xx answers       {failures}")
    expected = len(posts) - (len(posts) - 2 * messages - distinct_replies)
    print(f"  inbox during the hold {held.events:,} events, {held.pending:,} pending "
          f"(expected {expected:,}: a redelivery once)")  # fmt: skip
    print(f"  drain once released   {drain_s:.2f} s (every event in DuckDB)")
    lost_statuses = messages - delivered
    print(f"  messages delivered    {delivered:,} of {messages:,} ({with_times:,} with sent_at "
          f"and delivered_at): {lost_statuses} lost")  # fmt: skip
    print(f"  replies stored        {stored:,} ({distinct:,} distinct, {attributed:,} "
          f"attributed) of {distinct_replies:,}: {distinct_replies - distinct} lost, "
          f"{stored - distinct} duplicated")  # fmt: skip
    if failures or lost_statuses or stored != distinct or distinct != distinct_replies:
        print(out, err, sep="\n")
        sys.exit("FAILED: something was lost or duplicated")


if __name__ == "__main__":
    main()
