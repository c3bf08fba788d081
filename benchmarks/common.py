"""What the benchmarks share: synthetic contact files, and timing a `smartchat` command as a
fresh process (wall time and its own peak RSS).

The peak comes from the child's /proc VmHWM, read at exit: rusage's maxrss (wait4, getrusage)
would also count the pages of the large benchmark process the child was forked from.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl

_CLI = """
import atexit, os
def _peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            open(os.environ["SMARTCHAT_BENCH_PEAK"], "w").write(line.split()[1])
atexit.register(_peak)
from smartchat.cli import main
main()
"""


def run_smartchat(
    *args: str, ok: tuple[int, ...] = (0,), python: str = sys.executable
) -> tuple[float, float, int]:
    """Run `smartchat ARGS` as its own process: (wall seconds, peak RSS in MB, exit code).

    `python`: another environment's interpreter with smartchat installed (e.g. with pandas).
    """
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak-kb"
        start = time.perf_counter()
        done = subprocess.run(
            [python, "-c", _CLI, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "SMARTCHAT_BENCH_PEAK": str(peak_file)},
        )
        wall = time.perf_counter() - start
        if done.returncode not in ok:
            sys.exit(f"smartchat {' '.join(args)} failed: {done.stderr.decode()[-800:]}")
        return wall, int(peak_file.read_text()) / 1024, done.returncode


# Prefixes whose every completion is a valid number (checked against phonenumbers), with the
# number of digits a counter fills: 8 countries, 1M distinct numbers.
PREFIXES = (
    ("+525512", 6),
    ("+3461", 7),
    ("+57321", 7),
    ("+5511961", 6),
    ("+447400", 6),
    ("+5491123", 6),
    ("+12025", 6),
    ("+3462", 7),
)
NAMES = ("Ana", "Luis", "María", "José", "Carmen", "Pedro", "Lucía", "Diego")


def synthetic_contacts(n: int, seed: int = 7) -> pl.DataFrame:
    """n distinct valid contacts for the payment-reminder chatbot over 8 countries, shuffled."""
    k = len(PREFIXES)
    i = pl.int_range(0, n)
    serial = (i // k).cast(pl.String)
    phone = pl.coalesce(
        pl.when(i % k == j).then(pl.lit(prefix) + serial.str.zfill(digits))
        for j, (prefix, digits) in enumerate(PREFIXES)
    )
    frame = pl.select(
        phone.alias("CONTACT"),
        pl.lit(pl.Series(NAMES)).gather(i % len(NAMES)).alias("NAME"),
        (pl.lit("2026-12-") + ((i % 28) + 1).cast(pl.String).str.zfill(2)).alias("DUE_DATE"),
        (100 + i % 9000).cast(pl.String).alias("AMOUNT"),
    )
    return frame.sample(fraction=1.0, shuffle=True, seed=seed)


def launched_campaign(store_path: Path, n: int, rate: float, seed: int = 7) -> str:
    """A store at `store_path` with the sample chatbot and one launched campaign of n synthetic
    contacts (their file beside the store) at `rate` messages/s; returns its id."""
    from smartchat.settings import StoreSettings
    from tasks import campaigns

    store = StoreSettings(path=store_path)
    contacts = store_path.with_name(f"{store_path.stem}-contacts.tsv")
    synthetic_contacts(n, seed=seed).write_csv(contacts, separator="\t")
    chatbot = Path(__file__).resolve().parents[1] / "data" / "payment-reminder.yaml"
    campaigns.register_chatbot(store, chatbot, max_message_chars=1600)
    result = campaigns.launch(
        store,
        "payment-reminder",
        contacts,
        plan=campaigns.LaunchPlan(rate=rate),
        max_message_chars=1600,
    )
    assert result.campaign is not None
    return result.campaign.id


@contextmanager
def prefect_server(folder: Path) -> Iterator[str]:
    """A `prefect server start` of its own (PREFECT_HOME in `folder`) for the `with` block, as
    a deployment has; yields its API URL, which this process's flows then use."""
    import socket

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(folder / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    }
    env.pop("PREFECT_API_URL", None)
    log = open(folder / "prefect-server.log", "wb")  # noqa: SIM115  (closed below)
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1",
         "--port", str(port)],
        env=env, stdout=log, stderr=log,
    )  # fmt: skip
    previous = os.environ.get("PREFECT_API_URL")
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{api}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"The Prefect server did not start: see {folder / 'prefect-server.log'}")
            time.sleep(0.5)
        os.environ["PREFECT_API_URL"] = api
        yield api
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous
        server.terminate()
        server.wait(timeout=30)
        log.close()
