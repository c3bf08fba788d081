"""Prefect's overhead on a 1,000,000-message send (issue 11): task runs, and orchestration time.

The `send_campaign` flow (in its own process's event loop, the default) sends a campaign of
1,000,000 contacts to the sandbox aggregator (its own process) as fast as they go, with a real
`prefect server start` of its own recording every task run, as a deployment would. Printed:

- task runs of the flow run (counted by the Prefect API), against the issue's 2,000;
- wall time, the time requests were in flight, the time in the store (DuckDB), and
  orchestration: wall time minus the time in HTTP or DuckDB (the union of the two), against
  the issue's 10% of wall time;
- messages/s, and what the store says was sent.

Run from the project root: `.venv/bin/python -m benchmarks.bench_send_prefect` (about 7
minutes on 2 cores; `--messages N` for a smaller run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.common import launched_campaign, prefect_server
from smartchat.settings import StoreSettings
from tasks.gateway.sandbox import SandboxConfig, running_sandbox
from tasks.store import open_store

NOWHERE = "http://127.0.0.1:9"
UNLIMITED = 100_000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        store = StoreSettings(path=tmp / "smartchat.duckdb")
        campaign_id = launched_campaign(store.path, args.messages, UNLIMITED)
        with (
            running_sandbox(SandboxConfig(sent_delay=3600), process=True) as url,
            prefect_server(tmp) as api,
        ):
            os.environ.update(
                SMARTCHAT_GATEWAY_URL=url,
                SMARTCHAT_PUBLIC_URL=NOWHERE,
                SMARTCHAT_DB=str(store.path),
                SMARTCHAT_QUIET_HOURS="00:00-00:00",  # the figure must not depend on the hour
            )
            from flows.send_campaign import send_campaign

            print(
                f"{args.messages:,} messages, no rate limit, the flow in this process, a "
                "Prefect server of its own, the sandbox in its own process:"
            )
            started = time.perf_counter()
            state = asyncio.run(send_campaign(campaign_id, return_state=True))
            wall = time.perf_counter() - started
            summary = state.result()
            flow_run_id = str(state.state_details.flow_run_id)
            task_runs = httpx.post(
                f"{api}/task_runs/count",
                json={"flow_runs": {"id": {"any_": [flow_run_id]}}},
                timeout=60,
            ).json()
        with open_store(store, read_only=True) as conn:
            statuses = dict(
                conn.execute("SELECT status, count(*) FROM messages GROUP BY ALL").fetchall()
            )
        timing = summary["timing"]
        share = 100 * timing["orchestration_seconds"] / timing["seconds"]
        print(f"  task runs: {task_runs:,} (issue: at most 2,000)")
        print(
            f"  flow wall {timing['seconds']:.1f} s ({wall:.1f} s with the flow run's start and "
            f"end): requests in flight {timing['http_seconds']:.1f} s, store "
            f"{timing['store_seconds']:.1f} s, orchestration (neither) "
            f"{timing['orchestration_seconds']:.1f} s = {share:.1f}% of wall (issue: at most 10%)"
        )
        print(
            f"  {summary['sent'] / timing['seconds']:,.0f} messages/s; store: {statuses}; "
            f"sent {summary['sent']:,}, failed {summary['failed']:,}"
        )


if __name__ == "__main__":
    main()
