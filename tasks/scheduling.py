"""Scheduling a flow run of a deployment for a local time, through Prefect's REST API.

Plain httpx against the server PREFECT_API_URL names (the caller passes it): nothing here
imports Prefect, so `smartchat schedule` starts as fast as any other command.

    local_to_utc          "2026-12-07 09:00" in America/Mexico_City → an aware UTC datetime
    find_deployment       GET  /deployments/name/{flow}/{deployment}   → its id
    schedule_flow_run     POST /deployments/{id}/create_flow_run (state SCHEDULED at that time)

A worker of the deployment's pool picks the run up at its scheduled time. Every failure is a
`SchedulingError` whose message is one sentence saying what to do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from smartchat.errors import SmartChatError

TIME_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S")
TIMEOUT = httpx.Timeout(10.0)


class SchedulingError(SmartChatError):
    """A run can't be scheduled: the time, the zone, the Prefect server or its deployment."""


@dataclass(frozen=True)
class ScheduledRun:
    id: str
    name: str
    deployment: str  # flow-name/deployment-name
    scheduled_time: datetime  # UTC
    ui_url: str

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["scheduled_time"] = self.scheduled_time.isoformat()
        return data


def local_to_utc(when: str, zone: str, now: datetime | None = None) -> datetime:
    """`when` (YYYY-MM-DD HH:MM, wall-clock time in `zone`) as an aware UTC datetime.

    Refused: an unknown zone, a malformed time, a time the clocks skip (a DST gap), a time
    not in the future.
    """
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SchedulingError(
            f"Unknown time zone {zone!r}: give an IANA name such as America/Mexico_City, "
            "Europe/Madrid or UTC."
        ) from None
    naive = _parse(when)
    local = naive.replace(tzinfo=tz)
    utc = local.astimezone(UTC)
    if utc.astimezone(tz).replace(tzinfo=None) != naive:
        raise SchedulingError(
            f"{when} does not exist in {zone} (the clocks skip it when summer time starts): "
            "choose another time."
        )
    now = now or datetime.now(UTC)
    if utc <= now:
        shown_now = now.astimezone(tz).strftime("%Y-%m-%d %H:%M")
        raise SchedulingError(
            f"{when} in {zone} is in the past (it is {shown_now} there now): give a future time."
        )
    return utc


def _parse(when: str) -> datetime:
    for fmt in TIME_FORMATS:
        try:
            return datetime.strptime(when.strip(), fmt)
        except ValueError:
            continue
    raise SchedulingError(
        f"{when!r} is not a date and time: write it as YYYY-MM-DD HH:MM, e.g. 2026-12-07 09:00."
    )


def find_deployment(api_url: str, flow_name: str, deployment_name: str) -> str:
    """The id of deployment `flow_name/deployment_name` on the server at `api_url`."""
    response = _request("GET", api_url, f"/deployments/name/{flow_name}/{deployment_name}", None)
    if response.status_code == 404:
        raise SchedulingError(
            f"The Prefect server at {api_url} has no deployment {flow_name}/{deployment_name}: "
            "run `prefect deploy --all` from the project folder first (and keep a worker of the "
            "smartchat pool running: prefect worker start --pool smartchat)."
        )
    _check(response, api_url)
    return str(response.json()["id"])


def schedule_flow_run(
    api_url: str,
    flow_name: str,
    deployment_name: str,
    *,
    parameters: dict[str, Any],
    at: datetime,
    name: str | None = None,
    tags: list[str] | None = None,
    ui_url: str | None = None,
) -> ScheduledRun:
    """Create a flow run of the deployment, SCHEDULED for `at` (aware); returns it."""
    if at.tzinfo is None:
        raise ValueError("`at` must be timezone-aware")
    deployment_id = find_deployment(api_url, flow_name, deployment_name)
    body: dict[str, Any] = {
        "parameters": parameters,
        "state": {
            "type": "SCHEDULED",
            "name": "Scheduled",
            "state_details": {"scheduled_time": at.astimezone(UTC).isoformat()},
        },
    }
    if name:
        body["name"] = name
    if tags:
        body["tags"] = tags
    response = _request("POST", api_url, f"/deployments/{deployment_id}/create_flow_run", body)
    _check(response, api_url)
    run = response.json()
    run_id = str(run["id"])
    return ScheduledRun(
        id=run_id,
        name=str(run.get("name") or name or ""),
        deployment=f"{flow_name}/{deployment_name}",
        scheduled_time=at.astimezone(UTC),
        ui_url=flow_run_url(ui_url or ui_url_for(api_url), run_id),
    )


def ui_url_for(api_url: str) -> str:
    """The UI's address for an API address (a local server serves both: /api and /)."""
    base = api_url.rstrip("/")
    return base.removesuffix("/api")


def flow_run_url(ui_url: str, run_id: str) -> str:
    return f"{ui_url.rstrip('/')}/runs/flow-run/{run_id}"


def _request(method: str, api_url: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
    url = api_url.rstrip("/") + path
    try:
        return httpx.request(method, url, json=body, timeout=TIMEOUT)
    except httpx.HTTPError as exc:
        raise SchedulingError(
            f"No Prefect server answers at {api_url} ({type(exc).__name__}): start one with "
            "`prefect server start` and point PREFECT_API_URL at it."
        ) from None


def _check(response: httpx.Response, api_url: str) -> None:
    if response.is_success:
        return
    detail = response.text[:300]
    raise SchedulingError(
        f"The Prefect server at {api_url} refused the request ({response.status_code}: {detail})."
    )
