"""One campaign's report: a single self-contained HTML page of its figures and charts.

The figures are the `campaign_summary` row (a header card); the charts are drawn by Plotly
(plotly.js inlined once in the page, so it opens with no network): the step funnel, delivery
and replies by country, replies over time by outcome, and opt-outs over time. Everything is read
in one short read-only open of the store. Every value placed in the HTML is escaped; the charts'
data is JSON that Plotly writes with `<` and `/` escaped, so no value can close a <script>.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from smartchat.settings import StoreSettings
from tasks.safe_write import atomic_output
from tasks.store import Connection, open_store
from tasks.store import campaigns as campaign_rows
from tasks.store.campaigns import Campaign, CampaignProgress

# Replies and opt-outs are counted per bucket of this size, chosen from the time they span so
# a chart has tens to a few hundred bars: per minute up to 6 hours, per hour up to 14 days.
_BUCKETS = (
    (timedelta(hours=6), "minute"),
    (timedelta(days=14), "hour"),
    (timedelta.max, "day"),
)
# What a reply was, as the replies chart groups it (replies.outcome; NULL: not read yet).
_REPLY_GROUPS = ("answered", "not understood", "keyword", "after the end", "not read yet")
_REPLY_COLOURS = ("#2a9d8f", "#e9c46a", "#8d99ae", "#bcb8b1", "#dee2e6")
_OUTCOME_GROUP = """
    CASE
        WHEN outcome = 'option' THEN 'answered'
        WHEN outcome = 'fallback' THEN 'not understood'
        WHEN outcome IN ('opt_out', 'opt_in', 'help') THEN 'keyword'
        WHEN outcome IS NULL THEN 'not read yet'
        ELSE 'after the end'
    END
"""
# A time bar is drawn 80% as wide as its bucket (in ms, as Plotly's date axes count).
_BAR_WIDTH_MS = {"minute": 48_000, "hour": 2_880_000, "day": 69_120_000}
_CHART_HEIGHT = 400
_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


@dataclass(frozen=True)
class CountryRow:
    country: str
    contacts: int
    reached: int
    delivered: int
    failed: int
    replied: int
    reply_rate: float | None
    opted_out: int


@dataclass(frozen=True)
class StepRow:
    step: str
    reached: int
    answered: int
    fallbacks: int


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows, read in one open of the store."""

    campaign: Campaign
    progress: CampaignProgress
    countries: list[CountryRow]
    steps: list[StepRow]
    bucket: str  # minute, hour or day
    replies: list[tuple[datetime, str, int]]  # bucket start (UTC), outcome group, replies
    opt_outs: list[tuple[datetime, int]]  # bucket start (UTC), opt-outs
    first_reply: datetime | None
    last_reply: datetime | None
    generated_at: datetime


def read_report_data(store: StoreSettings, campaign_id: str) -> ReportData:
    """The report's data, in one short read-only open (CampaignNotFound for an unknown id)."""
    with open_store(store, read_only=True) as conn:
        campaign = campaign_rows.get(conn, campaign_id)
        progress = campaign_rows.progress(conn, campaign_id)[0]
        countries = [
            CountryRow(*row)
            for row in conn.execute(
                "SELECT country, contacts, reached, delivered, failed, replied, reply_rate, "
                "opted_out FROM campaign_country_summary WHERE campaign_id = ? "
                "ORDER BY contacts DESC, country",
                [campaign_id],
            ).fetchall()
        ]
        steps = [
            StepRow(*row)
            for row in conn.execute(
                "SELECT step, reached, answered, fallbacks FROM step_funnel "
                "WHERE campaign_id = ? ORDER BY reached DESC, step",
                [campaign_id],
            ).fetchall()
        ]
        first, last = conn.execute(
            "SELECT min(received_at), max(received_at) FROM replies WHERE campaign_id = ?",
            [campaign_id],
        ).fetchall()[0]
        bucket = _bucket(first, last)
        replies = _reply_counts(conn, campaign_id, bucket)
        opt_outs = _opt_out_counts(conn, campaign_id, bucket)
        now = conn.execute("SELECT current_timestamp").fetchall()[0][0]
    return ReportData(
        campaign, progress, countries, steps, bucket, replies, opt_outs, first, last, now
    )


def build_report(store: StoreSettings, campaign_id: str) -> str:
    """The campaign's report as one HTML page that needs no network to open."""
    return render_report(read_report_data(store, campaign_id))


def write_report(
    store: StoreSettings, campaign_id: str, out: Path, *, overwrite: bool = False
) -> Path:
    """Write the report to `out` (complete or not at all); an existing file only with overwrite."""
    with atomic_output(out, what="the report", overwrite=overwrite) as path:
        _write_text(path, build_report(store, campaign_id))
    return out


def report_beside_store(store: StoreSettings, campaign_id: str) -> Path:
    """Write the campaign's report to reports/<campaign>.html beside the store, replacing an
    earlier one (the flows' artifacts link there); returns its absolute path."""
    out = (store.path.parent / "reports" / f"{campaign_id}.html").resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_report(store, campaign_id, out, overwrite=True)


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _bucket(first: datetime | None, last: datetime | None) -> str:
    span = (last - first) if first is not None and last is not None else timedelta(0)
    return next(name for limit, name in _BUCKETS if span <= limit)


def _reply_counts(
    conn: Connection, campaign_id: str, bucket: str
) -> list[tuple[datetime, str, int]]:
    # `bucket` is one of _BUCKETS' names, never user input. Times are shown in UTC.
    rows = conn.execute(
        f"SELECT date_trunc('{bucket}', timezone('UTC', received_at)) AS t, "
        f"{_OUTCOME_GROUP} AS grp, count(*) FROM replies WHERE campaign_id = ? "
        "GROUP BY ALL ORDER BY t, grp",
        [campaign_id],
    ).fetchall()
    return [(t, group, n) for t, group, n in rows]


def _opt_out_counts(conn: Connection, campaign_id: str, bucket: str) -> list[tuple[datetime, int]]:
    rows = conn.execute(
        f"SELECT date_trunc('{bucket}', timezone('UTC', opted_out_at)) AS t, count(*) "
        "FROM opt_outs WHERE campaign_id = ? GROUP BY ALL ORDER BY t",
        [campaign_id],
    ).fetchall()
    return [(t, n) for t, n in rows]


# --- the page --------------------------------------------------------------------------------


def render_report(data: ReportData) -> str:
    """The HTML page of `data`: header card, then the charts (plotly.js inlined once)."""
    from plotly.offline import get_plotlyjs

    p = data.progress
    charts = [
        ("funnel", "Step funnel", _funnel_figure(data)),
        ("countries", "Delivery and replies by country", _country_figure(data)),
        ("replies", f"Replies per {data.bucket} (UTC)", _replies_figure(data)),
        ("opt-outs", "Opt-outs over time (UTC)", _opt_out_figure(data)),
    ]
    sections = "\n".join(
        f'<section class="chart"><h2>{_e(title)}</h2>{_chart_html(fig, name)}</section>'
        for name, title, fig in charts
    )
    title = f"{p.name} · {p.campaign_id}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="SmartChat">
<title>{_e(title)}</title>
<style>{_CSS}</style>
<script>{get_plotlyjs()}</script>
</head>
<body>
<header>
  <p class="kicker">SmartChat campaign report</p>
  <h1>{_e(p.name)}</h1>
  <p class="meta">{_e(p.campaign_id)} · chatbot {_e(p.chatbot_id)} version {p.chatbot_version}
    · <span class="status status-{_e(p.status)}">{_e(p.status)}</span></p>
</header>
<main>
{_figures_card(data)}
<div class="charts">
{sections}
</div>
</main>
<footer>Generated {_e(_when(data.generated_at))} from {_e(data.campaign.contacts_file)}.
  Figures as the campaign_summary, campaign_country_summary and step_funnel views count them.
</footer>
</body>
</html>
"""


def _figures_card(data: ReportData) -> str:
    p = data.progress
    rate = "–" if p.reply_rate is None else f"{p.reply_rate:.1%}"
    figures = [
        ("Contacts", f"{p.contacts:,}", ""),
        ("Reached", f"{p.reached:,}", _share(p.reached, p.contacts, "of contacts")),
        ("Delivered", f"{p.delivered:,}", f"of {p.sent:,} messages sent"),
        ("Failed", f"{p.failed:,}", "messages"),
        ("Replied", f"{p.replied:,}", f"{p.replies:,} replies"),
        ("Reply rate", rate, "replied / reached"),
        ("Finished", f"{p.finished:,}", "conversations"),
        ("Expired", f"{p.expired:,}", "conversations"),
        ("Opted out", f"{p.opted_out:,}", _share(p.opted_out, p.reached, "of reached")),
        ("Segments", f"{p.segments:,}", "SMS parts billed"),
    ]
    tiles = "\n".join(
        f'<div class="figure" data-figure="{_e(label)}"><span class="label">{_e(label)}</span>'
        f'<span class="value">{_e(value)}</span><span class="note">{_e(note)}</span></div>'
        for label, value, note in figures
    )
    dates = [
        ("Launched", _when(p.launched_at)),
        ("First reply", _when(data.first_reply)),
        ("Last reply", _when(data.last_reply)),
        ("Stopped", _when(p.stopped_at)),
        ("Completed", _when(p.completed_at)),
        ("Replaces", p.replaces or ""),
    ]
    facts = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in dates if v)
    return f'<section class="card"><div class="figures">\n{tiles}\n</div><dl>{facts}</dl></section>'


def _chart_html(fig: Any, name: str) -> str:
    import plotly.io as pio

    fig.update_layout(
        template="plotly_white",
        height=_CHART_HEIGHT,
        margin={"l": 60, "r": 50, "t": 30, "b": 40},
        # Below the plot: the mode bar (zoom, download as PNG) has the top right corner.
        legend={"orientation": "h", "yanchor": "top", "y": -0.14, "x": 0},
        font={"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12},
    )
    # Counts: a chart of small numbers gets whole-number ticks, not 0.5 steps.
    highest = max((max(t.y, default=0) for t in fig.data if t.y is not None), default=0)
    if highest < 6:
        fig.update_yaxes(dtick=1)
    text: str = pio.to_html(
        fig,
        include_plotlyjs=False,  # inlined once in <head>
        full_html=False,
        div_id=f"chart-{name}",
        config=_PLOTLY_CONFIG,
        default_height=f"{_CHART_HEIGHT}px",
    )
    return text


def _funnel_figure(data: ReportData) -> Any:
    import plotly.graph_objects as go

    steps = [s.step for s in data.steps]
    fig = go.Figure()
    for label, values, colour in (
        ("reached", [s.reached for s in data.steps], "#264653"),
        ("answered", [s.answered for s in data.steps], "#2a9d8f"),
        ("fallbacks", [s.fallbacks for s in data.steps], "#e9c46a"),
    ):
        fig.add_trace(go.Bar(name=label, x=steps, y=values, marker_color=colour))
    fig.update_layout(barmode="group", yaxis_title="contacts / replies")
    return _empty_note(fig, not data.steps, "No message sent yet")


def _country_figure(data: ReportData) -> Any:
    import plotly.graph_objects as go

    rows = data.countries
    countries = [r.country or "?" for r in rows]
    rates = ["–" if r.reply_rate is None else f"{r.reply_rate:.1%}" for r in rows]
    fig = go.Figure()
    for label, values, colour in (
        ("contacts", [r.contacts for r in rows], "#ced4da"),
        ("delivered", [r.delivered for r in rows], "#264653"),
        ("failed", [r.failed for r in rows], "#e76f51"),
        ("replied", [r.replied for r in rows], "#2a9d8f"),
        ("opted out", [r.opted_out for r in rows], "#6d597a"),
    ):
        fig.add_trace(
            go.Bar(
                name=label,
                x=countries,
                y=values,
                marker_color=colour,
                customdata=rates,
                hovertemplate="%{x}: %{y:,} " + label + " (reply rate %{customdata})"
                "<extra></extra>",
            )
        )
    fig.update_layout(barmode="group", yaxis_title="contacts / messages")
    return _empty_note(fig, not rows, "No contacts")


def _replies_figure(data: ReportData) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for group, colour in zip(_REPLY_GROUPS, _REPLY_COLOURS, strict=True):
        points = [(t, n) for t, g, n in data.replies if g == group]
        if points:
            fig.add_trace(
                go.Bar(
                    name=group,
                    x=[t for t, _ in points],
                    y=[n for _, n in points],
                    marker_color=colour,
                    width=_BAR_WIDTH_MS[data.bucket],
                )
            )
    fig.update_layout(barmode="stack", yaxis_title="replies")
    return _empty_note(fig, not data.replies, "No replies yet")


def _opt_out_figure(data: ReportData) -> Any:
    import plotly.graph_objects as go

    times = [t for t, _ in data.opt_outs]
    counts = [n for _, n in data.opt_outs]
    total, running = 0, []
    for n in counts:
        total += n
        running.append(total)
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            name=f"per {data.bucket}",
            x=times,
            y=counts,
            marker_color="#6d597a",
            width=_BAR_WIDTH_MS[data.bucket],
        )
    )
    fig.add_trace(
        go.Scatter(
            name="total so far",
            x=times,
            y=running,
            mode="lines+markers",
            line={"shape": "hv", "color": "#e76f51"},
            yaxis="y2",  # its own scale on the right: the total dwarfs the bars
        )
    )
    fig.update_layout(
        yaxis_title=f"opt-outs per {data.bucket}",
        yaxis2={
            "title": "total",
            "overlaying": "y",
            "side": "right",
            "rangemode": "tozero",
            "showgrid": False,
        },
    )
    return _empty_note(fig, not data.opt_outs, "No opt-outs")


def _empty_note(fig: Any, empty: bool, note: str) -> Any:
    """An empty chart says so, rather than showing bare axes."""
    if empty:
        fig.update_layout(
            xaxis={"visible": False},
            yaxis={"visible": False},
            yaxis2={"visible": False},
            showlegend=False,
            annotations=[
                {
                    "text": note,
                    "showarrow": False,
                    "font": {"size": 16, "color": "#6c757d"},
                    "xref": "paper",
                    "yref": "paper",
                    "x": 0.5,
                    "y": 0.5,
                }
            ],
        )
    return fig


def _share(part: int, whole: int, of: str) -> str:
    return f"{part / whole:.1%} {of}" if whole else ""


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M %Z}".strip() if moment else ""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


_CSS = """
:root { color-scheme: light; --ink: #1d2733; --muted: #6c757d; --line: #e3e7ec; }
* { box-sizing: border-box; }
body { margin: 0; background: #f5f7fa; color: var(--ink);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { padding: 28px 40px 18px; background: #264653; color: #fff; }
header h1 { margin: 4px 0; font-size: 26px; overflow-wrap: anywhere; }
.kicker { margin: 0; text-transform: uppercase; letter-spacing: .08em; font-size: 12px;
  opacity: .75; }
.meta { margin: 0; opacity: .9; }
.status { padding: 1px 8px; border-radius: 10px; background: rgba(255,255,255,.18); }
main { padding: 24px 40px; max-width: 1400px; margin: 0 auto; }
.card, .chart { background: #fff; border: 1px solid var(--line); border-radius: 10px;
  padding: 18px 20px; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr));
  gap: 14px; }
.figure { display: flex; flex-direction: column; }
.figure .label { font-size: 12px; color: var(--muted); text-transform: uppercase;
  letter-spacing: .05em; }
.figure .value { font-size: 26px; font-weight: 600; font-variant-numeric: tabular-nums; }
.figure .note { font-size: 12px; color: var(--muted); min-height: 1em; }
dl { display: flex; flex-wrap: wrap; gap: 4px 24px; margin: 16px 0 0; padding-top: 12px;
  border-top: 1px solid var(--line); font-size: 13px; }
dl div { display: flex; gap: 6px; } dt { color: var(--muted); } dd { margin: 0; }
/* Two fixed columns: each chart is drawn as its script is read, before the next exists, so
   a grid that grows with its items would give the first one the whole width. */
.charts { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 20px;
  margin-top: 20px; }
@media (max-width: 1000px) { .charts { grid-template-columns: minmax(0, 1fr); }
  header, main, footer { padding-left: 16px; padding-right: 16px; } }
.chart h2 { margin: 0 0 8px; font-size: 16px; }
footer { padding: 8px 40px 28px; color: var(--muted); font-size: 12px; max-width: 1400px;
  margin: 0 auto; }
"""
