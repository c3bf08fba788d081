"""`smartchat report`: one self-contained HTML page of a campaign's figures and Plotly charts,
built from a real DuckDB campaign, and drawn by headless Chromium (skipped only without it)."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner, Result

from schemas.keywords import load_keywords
from smartchat.errors import CampaignNotFound, OutputFileExists
from tasks import campaigns, conversations
from tasks.campaign_report import build_report, write_report
from tasks.store import messages as message_rows
from tasks.store import open_store, write_transaction
from tasks.store import replies as reply_rows
from tests.conftest import at, contact_rows, write_contacts

SENDER = "+15005550006"
T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
NAME = 'Pagos </script><script>alert("x")</script> & <b>diciembre</b>'
CONTACTS = 12
# (contact index, reply, minutes after T0): 4 answers, 1 fallback, 2 opt-outs, across countries.
REPLIES = [
    (0, "si", 1),
    (1, "no", 2),
    (2, "sí", 2),
    (3, "quizás", 5),
    (4, "STOP", 7),
    (5, "BAJA", 9),
    (6, "no", 12),
]
FAILED = {10, 11}  # contacts whose opening message failed


@pytest.fixture
def campaign(db: Path, tmp_path: Path) -> str:
    """12 contacts in 6 countries: 10 delivered, 2 failed, 7 replies read by the engine."""
    rows = contact_rows(CONTACTS)
    launched = campaigns.launch(
        at(db),
        "payment-reminder",
        write_contacts(tmp_path / "c.tsv", rows),
        plan=campaigns.LaunchPlan(name=NAME),
        max_message_chars=1600,
    ).campaign
    assert launched is not None
    cid = launched.id
    with open_store(at(db), read_only=True) as conn:
        country = dict(
            conn.execute(
                "SELECT phone, country FROM campaign_contacts WHERE campaign_id = ?", [cid]
            ).fetchall()
        )
    phones = [r[0] for r in rows]
    n = len(phones)
    with write_transaction(at(db)) as conn:
        message_rows.insert(
            conn,
            cid,
            pl.DataFrame(
                {
                    "phone": phones,
                    "seq": [1] * n,
                    "step": ["ask"] * n,
                    "kind": ["say"] * n,
                    "country": [country[p] for p in phones],
                    "body": ["Hola"] * n,
                    "segments": [1] * n,
                    "status": ["queued"] * n,
                    "sender": [SENDER] * n,
                }
            ),
        )
        for status, chosen in (
            ("sent", phones),
            ("delivered", [p for i, p in enumerate(phones) if i not in FAILED]),
            ("failed", [p for i, p in enumerate(phones) if i in FAILED]),
        ):
            message_rows.apply_status_changes(
                conn,
                pl.DataFrame(
                    {
                        "campaign_id": [cid] * len(chosen),
                        "phone": chosen,
                        "seq": [1] * len(chosen),
                        "status": [status] * len(chosen),
                        "at": [T0] * len(chosen),
                    }
                ),
            )
        reply_rows.insert(
            conn,
            pl.DataFrame(
                {
                    "campaign_id": [cid] * len(REPLIES),
                    "phone": [phones[i] for i, _, _ in REPLIES],
                    "country": [country[phones[i]] for i, _, _ in REPLIES],
                    "body": [body for _, body, _ in REPLIES],
                    "step": ["ask"] * len(REPLIES),
                    "matched_option": [None] * len(REPLIES),
                    "goto_step": [None] * len(REPLIES),
                    "opt_out": [False] * len(REPLIES),
                    "provider_id": [f"SM{k:032x}" for k in range(len(REPLIES))],
                    "received_at": [T0 + timedelta(minutes=m) for _, _, m in REPLIES],
                    "sender": [SENDER] * len(REPLIES),
                },
                schema_overrides={"matched_option": pl.String, "goto_step": pl.String},
            ),
        )
    result = conversations.process_batch(at(db), load_keywords(), now=T0 + timedelta(minutes=30))
    assert result.replies == len(REPLIES)
    return cid


def figure(page: str, label: str) -> str:
    """The value shown in the header card's tile `label`."""
    found = re.search(
        rf'data-figure="{re.escape(label)}">.*?<span class="value">(.*?)</span>', page
    )
    assert found, label
    return found.group(1)


CHARTS = ("chart-funnel", "chart-countries", "chart-replies", "chart-opt-outs")


def test_the_report_is_one_self_contained_page_with_the_figures(
    db: Path, campaign: str, tmp_path: Path
) -> None:
    out = write_report(at(db), campaign, tmp_path / "report.html")
    page = out.read_text(encoding="utf-8")
    # Self-contained: no script, stylesheet or image fetched from anywhere.
    assert not re.search(r"<script[^>]*\bsrc=", page, re.IGNORECASE)
    assert not re.search(r"<link[^>]*\bhref=", page, re.IGNORECASE)
    assert "Plotly.newPlot" in page and len(page) > 1_000_000  # plotly.js is inside
    assert [figure(page, k) for k in ("Contacts", "Reached", "Delivered", "Failed")] == [
        "12",
        "12",
        "10",
        "2",
    ]
    assert figure(page, "Replied") == "7"
    assert figure(page, "Reply rate") == "58.3%"
    assert figure(page, "Opted out") == "2"
    assert figure(page, "Finished") == "4"
    assert figure(page, "Segments") != ""
    assert "2026-12-01 09:01 UTC" in page  # the first reply
    for chart in CHARTS:
        assert f'id="{chart}"' in page
    # Every country and step reached the charts' data.
    for code in ("MX", "ES", "CO", "BR", "GB", "AR"):
        assert f'"{code}"' in page


def test_a_campaign_name_cannot_break_out_of_the_page(db: Path, campaign: str) -> None:
    page = build_report(at(db), campaign)
    assert NAME not in page
    assert "<script>alert" not in page
    assert "<b>diciembre" not in page
    assert "Pagos &lt;/script&gt;&lt;script&gt;alert(&quot;x&quot;)" in page
    # Exactly the page's own scripts: plotly.js, then one per chart.
    assert page.count("<script") == page.count("</script>") == 1 + len(CHARTS)


def test_an_existing_file_is_replaced_only_when_asked(
    db: Path, campaign: str, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    out.write_text("mine", encoding="utf-8")
    with pytest.raises(OutputFileExists):
        write_report(at(db), campaign, out)
    assert out.read_text(encoding="utf-8") == "mine"
    write_report(at(db), campaign, out, overwrite=True)
    assert "Plotly.newPlot" in out.read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_an_unknown_campaign_writes_nothing(db: Path, tmp_path: Path) -> None:
    with pytest.raises(CampaignNotFound):
        write_report(at(db), "c-20260101-dead", tmp_path / "report.html")
    assert list(tmp_path.iterdir()) == [db.parent]


def test_a_campaign_nobody_answered_says_so(db: Path, tmp_path: Path) -> None:
    launched = campaigns.launch(
        at(db),
        "payment-reminder",
        write_contacts(tmp_path / "c.tsv", contact_rows(2)),
        plan=campaigns.LaunchPlan(send=False),
        max_message_chars=1600,
    ).campaign
    assert launched is not None
    page = build_report(at(db), launched.id)
    assert figure(page, "Contacts") == "2"
    assert figure(page, "Reply rate") == "–"
    assert "No replies yet" in page and "No opt-outs" in page


# --- the command -------------------------------------------------------------------------------


def smartchat(*args: str) -> Result:
    from smartchat.cli import app

    return CliRunner().invoke(app, list(args))


def test_the_command_writes_the_report_and_refuses_to_replace_it(
    db: Path, campaign: str, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"
    done = smartchat("report", campaign, "-o", str(out), "--db", str(db))
    assert done.exit_code == 0, done.output
    assert "Wrote the report" in done.output and out.stat().st_size > 1_000_000
    again = smartchat("report", campaign, "-o", str(out), "--db", str(db))
    assert again.exit_code == 2
    assert "already exists" in again.output and "--force" in again.output
    forced = smartchat("report", campaign, "-o", str(out), "--db", str(db), "--force")
    assert forced.exit_code == 0, forced.output


def test_the_command_refuses_an_unknown_campaign_and_a_name_that_is_not_html(
    db: Path, tmp_path: Path
) -> None:
    unknown = smartchat("report", "c-x", "-o", str(tmp_path / "r.html"), "--db", str(db))
    assert unknown.exit_code == 1 and "c-x" in unknown.output
    not_html = smartchat("report", "c-x", "-o", str(tmp_path / "r.pdf"), "--db", str(db))
    assert not_html.exit_code == 2 and "r.html" in not_html.output
    assert not (tmp_path / "r.html").exists()


def test_the_command_help() -> None:
    done = smartchat("report", "--help")
    assert done.exit_code == 0
    for flag in ("CAMPAIGN", "--output", "-o", "--force", "--db"):
        assert flag in done.output


# --- drawn by a browser ------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium")


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            CHROMIUM or "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND",  # no network: the page must not need it
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_chromium_draws_every_chart_offline(db: Path, campaign: str, tmp_path: Path) -> None:
    out = write_report(at(db), campaign, tmp_path / "report.html")
    dom = chromium(out, tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    # Plotly replaced each empty div with a drawn plot: a plot-container holding main-svg layers.
    assert html.count('class="plot-container plotly"') == len(CHARTS)
    for chart in CHARTS:
        drawn = re.search(rf'<div id="{chart}" class="[^"]*js-plotly-plot[^"]*"', html)
        assert drawn, f"{chart} was not drawn"
    assert html.count('class="main-svg"') >= len(CHARTS)
    assert html.count('class="point"') >= 10  # bars were drawn, not just axes
    shot = tmp_path / "report.png"
    done = chromium(out, tmp_path / "profile2", f"--screenshot={shot}", "--window-size=1400,1800")
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.stat().st_size > 50_000  # a blank page is a few KB
