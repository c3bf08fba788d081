"""`smartchat run` end to end, as a person runs it: a real process, real servers on loopback, a
real Prefect flow run (its ephemeral API), a real DuckDB file."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import duckdb

from tests.conftest import CHATBOT_YAML, contact_rows, free_port, write_contacts

SMARTCHAT = Path(sys.executable).parent / "smartchat"
SCRIPT = """
replies:
  - number: "*"
    share: 10%
    after: 1
    delay: 200ms
    say: BAJA
  - number: "*"
    share: 30%
    after: 1
    delay: 200ms
    say: "quizás"
  - number: "*"
    after_text: "Perdona, no entendí"
    delay: 200ms
    say: "no"
  - number: "*"
    share: 80%
    after_text: "Responde SI o NO"
    delay: 200ms
    say: ["Sí", "no"]
unsolicited:
  - from: "+525599990000"
    say: "¿Quién es?"
    delay: 200ms
"""


def test_run_carries_a_campaign_to_the_end(tmp_path: Path):
    contacts = write_contacts(tmp_path / "c.tsv", contact_rows(40))
    script = tmp_path / "replies.yaml"
    script.write_text(SCRIPT, encoding="utf-8")
    db = tmp_path / "data" / "s.duckdb"
    env = {
        **os.environ,
        "SMARTCHAT_GATEWAY_URL": f"http://127.0.0.1:{free_port()}",
        "SMARTCHAT_PUBLIC_URL": f"http://127.0.0.1:{free_port()}",
        "SMARTCHAT_INBOX": str(tmp_path / "data" / "inbox.sqlite"),
        "SMARTCHAT_DB": str(db),
    }
    done = subprocess.run(
        [
            str(SMARTCHAT),
            "run",
            "--chatbot",
            str(CHATBOT_YAML),
            "--contacts",
            str(contacts),
            "--reply-script",
            str(script),
            "--expire",
            "4",
            "--json",
        ],  # fmt: skip
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert (summary["status"], summary["contacts"], summary["reached"]) == ("completed", 40, 40)
    with duckdb.connect(str(db), read_only=True) as conn:
        outcomes = dict(conn.execute("SELECT outcome, count(*) FROM replies GROUP BY 1").fetchall())
        per_contact = conn.execute(
            "SELECT max(n) FROM (SELECT count(*) n FROM messages GROUP BY campaign_id, phone, seq)"
        ).fetchall()
        states = dict(
            conn.execute("SELECT state, count(*) FROM conversations GROUP BY 1").fetchall()
        )
    assert {"option", "fallback", "opt_out", "unsolicited"} <= set(outcomes)
    assert per_contact == [(1,)]  # exactly one of each message
    assert set(states) <= {"finished", "expired", "opted_out"}
    assert sum(states.values()) == 40
    assert summary["finished"] == states.get("finished", 0)
    # The run's summary artifact links to the campaign report, written beside the store.
    report = Path(summary["report"])
    assert report.parent == (db.parent / "reports").resolve() and report.stat().st_size > 100_000


def test_a_port_in_use_is_one_sentence_before_anything_starts(tmp_path: Path):
    contacts = write_contacts(tmp_path / "c.tsv", contact_rows(2))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "SMARTCHAT_PUBLIC_URL": f"http://127.0.0.1:{port}"}
        done = subprocess.run(
            [str(SMARTCHAT), "run", "--chatbot", str(CHATBOT_YAML), "--contacts", str(contacts)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    message = " ".join(done.stderr.split())
    assert f"can't listen on port {port}" in message and "Traceback" not in done.stderr
    assert not (tmp_path / "data" / "smartchat.duckdb").exists()  # nothing started
