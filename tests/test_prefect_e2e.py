"""End to end through a real Prefect server, work pool, worker and the deployments of prefect.yaml.

    prefect server start (its own PREFECT_HOME)  →  work pool `smartchat` (process)
    →  prefect deploy (validate-contacts, launch-campaign, send-campaign from prefect.yaml)
    →  prefect worker start --pool smartchat (SMARTCHAT_DB, the gateway: a sandbox, in tmp)
    →  runs of validate-contacts and launch-campaign;  `smartchat schedule` a few seconds ahead
    →  through Prefect's client: COMPLETED, named and tagged after the campaign, artifacts
    →  the launch run's page in headless Chromium (skipped only when Chromium isn't installed)

About a minute: every flow run is a fresh Python process, as in production.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx
import pytest
from typer.testing import CliRunner

from tasks.scheduling import schedule_flow_run
from tests.conftest import CHATBOT_YAML, ROOT, at, free_port

SAMPLE = ROOT / "data" / "sample-contacts.tsv"  # 12 valid contacts
BIN = Path(sys.executable).parent
SCREENSHOT = ROOT / "benchmarks" / "out" / "prefect-e2e-flow-run.png"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def wait_until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class Stack:
    """A Prefect server, its deployments and a worker, all in child processes."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.db = tmp / "store" / "smartchat.duckdb"
        self.env = {
            **os.environ,
            "PREFECT_HOME": str(tmp / "prefect-home"),
            "PREFECT_API_URL": self.api,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "1",
            "SMARTCHAT_DB": str(self.db),
            "SMARTCHAT_INBOX": str(tmp / "inbox.sqlite"),
        }
        self.env.pop("PREFECT_PROFILE", None)
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, log: str) -> subprocess.Popen[bytes]:
        out = open(self.tmp / log, "wb")  # noqa: SIM115  (closed with the process)
        process = subprocess.Popen(
            [str(BIN / "prefect"), *args], cwd=ROOT, env=self.env, stdout=out, stderr=out
        )
        self.processes.append(process)
        return process

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [str(BIN / "prefect"), *args], cwd=ROOT, env=self.env, capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.api}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def flow_run(self, run_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.api}/flow_runs/{run_id}", timeout=5)
        response.raise_for_status()
        return dict(response.json())

    def finished(self, run_id: str, timeout: float = 60) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            run = self.flow_run(run_id)
            return run if run["state_type"] in TERMINAL else None

        try:
            return dict(wait_until(done, timeout, f"flow run {run_id}"))
        except AssertionError:
            raise AssertionError(f"{self.flow_run(run_id)}\n{self.logs()}") from None

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.tmp.glob("*.log")
        )

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from tasks.campaigns import register_chatbot
    from tasks.gateway.sandbox import SandboxConfig, running_sandbox

    tmp = tmp_path_factory.mktemp("prefect-e2e")
    stack = Stack(tmp)
    register_chatbot(at(stack.db), CHATBOT_YAML, max_message_chars=1600)
    try:
        with running_sandbox(SandboxConfig(sent_delay=0.1, delivered_delay=0.2)) as gateway:
            stack.env["SMARTCHAT_GATEWAY_URL"] = gateway
            stack.start(
                "server", "start", "--host", "127.0.0.1", "--port", str(stack.port),
                log="server.log",
            )  # fmt: skip
            wait_until(stack.healthy, 60, f"the Prefect server on port {stack.port}")
            stack.run("work-pool", "create", "smartchat", "--type", "process")
            stack.run(
                "--no-prompt", "deploy", "--prefect-file", str(ROOT / "prefect.yaml"),
                "-n", "validate-contacts", "-n", "launch-campaign", "-n", "send-campaign",
            )  # fmt: skip
            stack.start("worker", "start", "--pool", "smartchat", log="worker.log")
            yield stack
    finally:
        stack.stop()


def schedule(*args: str) -> Any:
    from smartchat.cli import app

    return CliRunner().invoke(app, ["schedule", *args])


def client(stack: Stack) -> Any:
    from prefect.client.orchestration import SyncPrefectClient

    return SyncPrefectClient(stack.api)


def artifacts_of(stack: Stack, run_id: str) -> dict[str, Any]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with client(stack) as c:
        found = c.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(run_id)]))
        )
    return {a.key: a for a in found if a.key}


def now_run(stack: Stack, deployment: str, parameters: dict[str, Any]) -> str:
    return schedule_flow_run(
        stack.api, deployment, deployment, parameters=parameters, at=datetime.now(UTC)
    ).id


def test_deployed_flows_run_on_a_worker_named_tagged_and_with_artifacts(stack: Stack) -> None:
    from prefect.client.schemas.objects import StateType

    validate_id = now_run(
        stack,
        "validate-contacts",
        {"contacts_path": str(SAMPLE), "chatbot_path": str(CHATBOT_YAML)},
    )
    launch_id = now_run(
        stack,
        "launch-campaign",
        {"chatbot_id": "payment-reminder", "contacts_path": str(SAMPLE), "db": str(stack.db)},
    )
    stack.finished(validate_id)
    stack.finished(launch_id)

    with client(stack) as c:
        validate = c.read_flow_run(validate_id)
        launch = c.read_flow_run(launch_id)
    assert validate.state is not None and validate.state.type == StateType.COMPLETED
    assert launch.state is not None and launch.state.type == StateType.COMPLETED, stack.logs()
    assert validate.name == "validate · payment-reminder · sample-contacts.tsv"
    assert launch.name == "launch · payment-reminder · sample-contacts.tsv"
    # The deployment's tag, and the chatbot's added as the run started.
    assert {"smartchat", "payment-reminder"} <= set(launch.tags)
    assert {"smartchat", "payment-reminder"} <= set(validate.tags)

    launched = artifacts_of(stack, launch_id)
    assert launched["campaign-launch-validation"].type == "table"
    assert launched["campaign-launch"].type == "markdown"
    assert "12" in str(launched["campaign-launch"].data)
    assert artifacts_of(stack, validate_id)["contact-validation"].type == "table"

    shoot(stack, launch_id)


def test_schedule_sends_the_campaign_at_the_local_time(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.schemas.objects import StateType

    from smartchat.cli import app
    from tasks.store import campaigns, open_store

    zone = "America/Mexico_City"
    soon = datetime.now(ZoneInfo(zone)) + timedelta(seconds=4)
    monkeypatch.setenv("PREFECT_API_URL", stack.api)
    monkeypatch.setenv("SMARTCHAT_DB", str(stack.db))
    result = CliRunner().invoke(
        app,
        [
            "schedule", "--chatbot", "payment-reminder", "--contacts", str(SAMPLE),
            "--at", soon.strftime("%Y-%m-%d %H:%M:%S"), "--tz", zone, "--rate", "50",
            "--name", "e2e", "--again", "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    import json

    scheduled = json.loads(result.stdout)
    run_id, campaign_id = scheduled["flow_run"]["id"], scheduled["campaign"]["id"]
    expected = soon.replace(microsecond=0).astimezone(UTC)
    assert datetime.fromisoformat(scheduled["flow_run"]["scheduled_time"]) == expected
    assert scheduled["flow_run"]["ui_url"].endswith(f"/runs/flow-run/{run_id}")
    assert stack.flow_run(run_id)["state_type"] == "SCHEDULED"

    stack.finished(run_id, timeout=60)
    with client(stack) as c:
        send = c.read_flow_run(run_id)
    assert send.state is not None and send.state.type == StateType.COMPLETED, stack.logs()
    assert send.name == f"send · payment-reminder · {campaign_id}"
    assert {"smartchat", campaign_id, "payment-reminder"} <= set(send.tags)
    assert send.start_time is not None and send.start_time >= expected
    assert artifacts_of(stack, run_id)["campaign-send"].type == "markdown"
    with open_store(at(stack.db), read_only=True) as conn:
        assert campaigns.get(conn, campaign_id).name == "e2e"
        sent = conn.execute(
            "SELECT count(*) FROM messages WHERE campaign_id = ? AND status <> 'queued'",
            [campaign_id],
        ).fetchall()
    assert sent == [(12,)]


def shoot(stack: Stack, run_id: str) -> None:
    """The run's page in the Prefect UI, rendered by headless Chromium: not a blank page."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium installed (apt-get install chromium): the UI check is skipped")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    profile = stack.tmp / "chromium-profile"
    subprocess.run(
        [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=15000",
            f"--screenshot={SCREENSHOT}", "--window-size=1400,900",
            f"http://127.0.0.1:{stack.port}/runs/flow-run/{run_id}",
        ],
        capture_output=True, timeout=90, check=False,
    )  # fmt: skip
    assert SCREENSHOT.exists(), "chromium wrote no screenshot"
    assert SCREENSHOT.stat().st_size > 20_000, "the screenshot is blank"


# --- the schedule command's refusals: one sentence each, exit 2, nothing launched ------------

SCHEDULE = ["--chatbot", "payment-reminder", "--contacts", str(SAMPLE)]


def test_schedule_help_says_what_it_does() -> None:
    result = schedule("--help")
    assert result.exit_code == 0
    for words in ("--at", "--tz", "--json", "send-campaign", "PREFECT_API_URL", "worker"):
        assert words in result.output


def test_schedule_without_a_prefect_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    result = schedule(*SCHEDULE, "--at", "2099-12-07 09:00", "--tz", "America/Mexico_City")
    assert result.exit_code == 2
    assert "prefect server start" in result.output and "PREFECT_API_URL" in result.output


@pytest.mark.parametrize(
    ("when", "zone", "says"),
    [
        ("2020-12-07 09:00", "America/Mexico_City", "is in the past"),
        ("2099-12-07 09:00", "Mars/Olympus_Mons", "Unknown time zone"),
        ("next monday", "UTC", "is not a date and time"),
        ("2099-03-29 02:30", "Europe/Madrid", "does not exist in Europe/Madrid"),
    ],
)
def test_schedule_refuses_a_bad_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, when: str, zone: str, says: str
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # never reached
    monkeypatch.setenv("SMARTCHAT_DB", str(tmp_path / "none.duckdb"))
    result = schedule(*SCHEDULE, "--at", when, "--tz", zone, "--json")
    assert result.exit_code == 2
    assert says in result.output
    assert not (tmp_path / "none.duckdb").exists()


def test_local_time_to_utc() -> None:
    from tasks.scheduling import local_to_utc

    now = datetime(2026, 12, 1, tzinfo=UTC)
    assert local_to_utc("2026-12-07 09:00", "America/Mexico_City", now) == datetime(
        2026, 12, 7, 15, 0, tzinfo=UTC
    )
    assert local_to_utc("2026-12-07T09:00:30", "Europe/Madrid", now) == datetime(
        2026, 12, 7, 8, 0, 30, tzinfo=UTC
    )


def test_schedule_without_the_deployment(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from smartchat.cli import scheduling

    monkeypatch.setattr(scheduling, "DEPLOYMENT", "not-deployed")
    monkeypatch.setenv("PREFECT_API_URL", stack.api)
    monkeypatch.setenv("SMARTCHAT_DB", str(tmp_path / "none.duckdb"))
    result = schedule(*SCHEDULE, "--at", "2099-12-07 09:00", "--tz", "UTC")
    assert result.exit_code == 2
    assert "prefect deploy --all" in result.output
    assert not (tmp_path / "none.duckdb").exists()


def test_run_names_without_prefect(tmp_path: Path) -> None:
    from flows.naming import name_for, tags_for

    launch = {"chatbot_id": "payment-reminder", "contacts_path": "/x/file.tsv"}
    assert name_for("launch", launch) == "launch · payment-reminder · file.tsv"
    assert tags_for("launch", launch) == ["payment-reminder"]
    unknown = {"campaign_id": "c-20261201-3639", "db": str(tmp_path / "missing.duckdb")}
    assert name_for("send", unknown) == "send · c-20261201-3639"  # the store can't say
    assert tags_for("send", unknown) == ["c-20261201-3639"]
    run = {"chatbot_path": str(CHATBOT_YAML), "contacts_path": "c.tsv"}
    assert name_for("run", run) == "run · payment-reminder · c.tsv"
    assert name_for("replies", {}).startswith("replies · ")
