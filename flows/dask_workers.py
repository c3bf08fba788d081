"""Where a send's batches are delivered: the flow's own event loop, or Dask workers.

    InProcess  two batches in flight in the flow's loop, one sender (pool and rate) for both
    OnDask     2 batches per worker thread in flight, on Prefect's DaskTaskRunner: a temporary
               local cluster (`workers=N` processes), or an existing scheduler (`address`)

Either way the flow stays the campaign's one writer (it claims and records every batch) and the
workers only talk HTTP, so they need no store and may run on other machines. On Dask, the
campaign's rate is a Prefect global concurrency limit every worker draws from
(tasks.shared_rate), and the flow's Prefect API is the workers' too.

A Dask scheduler re-runs a task whose worker died (`allowed-failures`, 3 by default): for a
batch that had texted half its contacts, that would text them twice. The local cluster is made
with 0, and an existing scheduler that allows re-runs is refused before anything is claimed.
A failed batch instead stays `sending`, and the flow's settle step looks its messages up.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, nullcontext
from typing import Any, Protocol

from smartchat.errors import SettingsError
from smartchat.settings import GatewaySettings, SendingSettings
from tasks.send_tasks import SendPlan, deliver_batch_task, prepare_worker
from tasks.sending import BatchOutcome
from tasks.store.messages import ClaimedMessage

IN_PROCESS_IN_FLIGHT = 2  # one batch's store work overlaps the other's requests
PER_THREAD_IN_FLIGHT = 2  # one queued behind each running batch: no worker waits for the flow
# Two batches at once per worker process: while one starts or ends (a Prefect task run's own
# round trips), the other sends at the worker's whole share of the rate.
THREADS_PER_WORKER = 2


class Deliveries(Protocol):
    in_flight: int

    def deliver(self, batch: list[ClaimedMessage]) -> asyncio.Future[BatchOutcome]: ...


class InProcess:
    """Batches delivered by tasks in the flow's event loop, sharing its sender."""

    def __init__(self, gateway: GatewaySettings, settings: SendingSettings, plan: SendPlan):
        self.in_flight = IN_PROCESS_IN_FLIGHT
        self._args = (gateway, settings, plan)

    def deliver(self, batch: list[ClaimedMessage]) -> asyncio.Future[BatchOutcome]:
        return asyncio.ensure_future(deliver_batch_task(*self._args, batch))


class OnDask:
    """Batches delivered by tasks on Dask workers, paced by the campaign's shared limit."""

    def __init__(self, runner: Any, parameters: dict[str, Any], workers: int, threads: int) -> None:
        self.in_flight = PER_THREAD_IN_FLIGHT * threads
        self._runner = runner
        # Each worker paces its batches at its share, so the shared limit is a ceiling rather
        # than a queue (tasks.shared_rate says why).
        self.pace = parameters["plan"].rate / workers
        self._parameters = {**parameters, "pace": self.pace}
        # Waiting on a Dask future blocks a thread: these, not the loop's default executor
        # (which the store's claims and records need meanwhile).
        self._waiters = ThreadPoolExecutor(self.in_flight, thread_name_prefix="dask-batch")

    def deliver(self, batch: list[ClaimedMessage]) -> asyncio.Future[BatchOutcome]:
        future = self._runner.submit(deliver_batch_task, {**self._parameters, "batch": batch})
        return asyncio.get_running_loop().run_in_executor(self._waiters, future.result)

    def close(self) -> None:
        self._waiters.shutdown(wait=False)


@asynccontextmanager
async def dask_deliveries(
    workers: int,
    address: str | None,
    gateway: GatewaySettings,
    settings: SendingSettings,
    plan: SendPlan,
    shared_rate: str,
) -> AsyncIterator[OnDask]:
    """Prefect's DaskTaskRunner on `address`, or on `workers` local processes, for the send."""
    import dask
    from prefect.settings import get_current_settings
    from prefect_dask.task_runners import DaskTaskRunner

    api = await _flow_api_for_workers()
    config = {
        "distributed.scheduler.allowed-failures": 0,
        "distributed.comm.timeouts.connect": "10s",  # a wrong address fails soon, not in 30 s
    }
    with api, dask.config.set(config):
        if address:
            runner = DaskTaskRunner(address=address)
        else:
            runner = DaskTaskRunner(
                cluster_kwargs={
                    "n_workers": workers,
                    "threads_per_worker": THREADS_PER_WORKER,
                    "processes": True,
                    "dashboard_address": ":0",
                }
            )
        with runner:
            try:
                client = runner.client  # starts the local cluster, or connects
            except (OSError, TimeoutError) as exc:
                raise SettingsError(
                    f"No Dask scheduler answers at {address or 'the local cluster'} ({exc}). "
                    "Start one (dask scheduler), or correct SMARTCHAT_DASK_ADDRESS / the "
                    "dask_address parameter, then send again."
                ) from None
            _refuse_reruns(client, address)
            found = client.scheduler_info()["workers"].values()
            threads = sum(w["nthreads"] for w in found)
            if threads == 0:
                raise SettingsError(
                    f"The Dask scheduler at {address} has no workers: start some "
                    f"(dask worker {address}), then send again."
                )
            parameters = {
                "gateway": gateway,
                "settings": settings,
                "plan": plan,
                "shared_rate": shared_rate,
            }
            deliveries = OnDask(runner, parameters, len(found), threads)
            # Every worker imports the send's code and takes its first grants now, not when
            # its first batch arrives: a worker starting late would send late.
            api_url = str(get_current_settings().api.url)
            client.run(prepare_worker, shared_rate, deliveries.pace, plan.rate, api_url)
            try:
                yield deliveries
            finally:
                deliveries.close()


def _refuse_reruns(client: Any, address: str | None) -> None:
    allowed = client.run_on_scheduler(_allowed_failures)
    if allowed:
        raise SettingsError(
            f"The Dask scheduler at {address or 'the local cluster'} re-runs a task whose worker "
            f"died (distributed.scheduler.allowed-failures = {allowed}): a batch could text "
            "its contacts twice. Start the scheduler with "
            "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=0, then send again."
        )


def _allowed_failures(dask_scheduler: Any) -> int:
    return int(dask_scheduler.allowed_failures)


async def _flow_api_for_workers() -> Any:
    """With no PREFECT_API_URL (Prefect's ephemeral API), each Dask worker would start a
    server of its own: point them at the flow's instead (the task runner hands its settings
    to the workers)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    if get_current_settings().api.url:
        return nullcontext()
    async with get_client() as client:
        url = str(client.api_url)
    return temporary_settings(updates={PREFECT_API_URL: url})
