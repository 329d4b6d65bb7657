"""The asyncio client: the blocking one's API, awaited."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import datetime
from types import TracebackType
from typing import Any, BinaryIO

import httpx
import structlog

from jobengine import tracing
from jobengine.client import _backfills, _base, _limits, _runs, _schedules
from jobengine.client._backfills import Backfill, BackfillCreated, BackfillRequest, BackfillSource
from jobengine.client._base import Call, Follow, RetryConfig
from jobengine.client._errors import ApiError, TransportError, WaitTimeout
from jobengine.client._limits import RateLimit
from jobengine.client._models import (
    Artifact,
    Downloaded,
    HistoryEntry,
    Job,
    JobEvent,
    JobPage,
    JobRequest,
    JobStatus,
    JobType,
)
from jobengine.client._runs import Run, RunDetail, RunEvent, RunJobRequest, RunPage, RunRequest
from jobengine.client._schedules import Schedule, ScheduleRequest, ScheduleSlot
from jobengine.domain.status import RunStatus

log = structlog.get_logger("jobengine.client")


class AsyncJobEngineClient:
    """The jobengine REST API from Python: typed results, safe retries, streams that resume.

    Every request names ``tenant_id``. A request is repeated (with jittered backoff) when the
    server's error says ``retryable``, or when the connection failed and the request is safe
    to send again: GET, DELETE, and POST with an idempotency key, which ``create`` always has.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str,
        tenant_id: str,
        timeout: float = _base.DEFAULT_TIMEOUT,
        retry: RetryConfig | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._retry = retry or RetryConfig()
        self._http = httpx.AsyncClient(
            base_url=_base.api_url(base_url),
            headers=_base.base_headers(api_key, tenant_id),
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> AsyncJobEngineClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create(
        self,
        type: str,
        payload: Any = None,
        *,
        project_id: str,
        queue: str | None = None,
        priority: int | None = None,
        not_before: datetime | None = None,
        retry_policy: dict[str, Any] | None = None,
        time_limit_seconds: float | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Create one job. Without ``idempotency_key`` a fresh one is made for this call and
        reused by its retries, so a lost response never creates the job twice."""
        request = JobRequest(
            type=type,
            project_id=project_id,
            payload=payload,
            queue=queue,
            priority=priority,
            not_before=not_before,
            retry_policy=retry_policy,
            time_limit_seconds=time_limit_seconds,
            idempotency_key=idempotency_key,
        )
        return Job.from_json(await self._json(_base.create_call(request)))

    async def create_many(self, requests: Sequence[JobRequest]) -> list[Job]:
        """Create jobs in one request, in order. Give each an ``idempotency_key`` to make the
        batch safe to retry after a broken connection; without keys it is sent once."""
        body = await self._json(_base.batch_call(requests))
        return [Job.from_json(item) for item in body["jobs"]]

    async def get(self, job_id: int) -> Job:
        return Job.from_json(await self._json(Call("GET", _base.job_path(job_id), repeatable=True)))

    async def job_types(self) -> list[JobType]:
        """Every job type in the fleet's catalogue, by name, with its payload JSON Schema."""
        return _base.parse_job_types(
            await self._json(Call("GET", _base.job_type_path(), repeatable=True))
        )

    async def job_type(self, name: str) -> JobType:
        """One job type; ``ApiError`` with code ``JOB_TYPE_NOT_FOUND`` if no worker announced it."""
        return JobType.from_json(
            await self._json(Call("GET", _base.job_type_path(name), repeatable=True))
        )

    async def list_page(
        self,
        *,
        status: JobStatus | str | None = None,
        type: str | None = None,
        queue: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobPage:
        params = _base.list_params(
            status=status,
            type=type,
            queue=queue,
            created_after=created_after,
            created_before=created_before,
            limit=limit,
            cursor=cursor,
        )
        body = await self._json(Call("GET", "/jobs", params=params, repeatable=True))
        return _base.parse_page(body)

    async def list_jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        type: str | None = None,
        queue: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[Job]:
        """Every matching job, page after page, fetched as the iteration reaches it."""
        cursor: str | None = None
        while True:
            page = await self.list_page(
                status=status,
                type=type,
                queue=queue,
                created_after=created_after,
                created_before=created_before,
                limit=page_size,
                cursor=cursor,
            )
            for job in page.items:
                yield job
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def cancel(self, job_id: int) -> Job:
        """Cancel; repeating it changes nothing, so it is retried like a GET."""
        call = Call("DELETE", _base.job_path(job_id), repeatable=True)
        return Job.from_json(await self._json(call))

    async def retry(self, job_id: int) -> Job:
        """Schedule a failed job again. Sent once on a broken connection: a second try could
        meet the job already running again."""
        return Job.from_json(await self._json(Call("POST", _base.job_path(job_id, "/retry"))))

    async def history(self, job_id: int) -> list[HistoryEntry]:
        call = Call("GET", _base.job_path(job_id, "/history"), repeatable=True)
        body = await self._json(call)
        return [HistoryEntry.from_json(item) for item in body["items"]]

    async def events(
        self, job_id: int, *, last_event_id: str | None = None
    ) -> AsyncIterator[JobEvent]:
        """The job's events from ``last_event_id`` (from its first event without one) until it
        is final, reconnecting with ``Last-Event-ID`` when the connection drops."""
        follow = Follow(job_id, last_event_id, deadline=None, timeout=None)
        async for event in self._follow(follow):
            yield event

    async def wait(self, job_id: int, timeout: float | None = None) -> Job:
        """Follow the job's events until it is final and return it as the server has it.

        Raises ``WaitTimeout`` after ``timeout`` seconds (None: wait as long as it takes).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        follow = Follow(job_id, None, deadline=deadline, timeout=timeout)
        async for _ in self._follow(follow):
            pass
        assert follow.final is not None
        return follow.final

    async def _follow(self, follow: Follow) -> AsyncIterator[JobEvent]:
        """Stream, resume, and at each clean end ask the server whether the job is final:
        the stream may close for reasons of its own (a restart, a proxy), and a ``failed`` the
        retry policy took back to ``scheduled`` is not an end."""
        while True:
            remaining = self._remaining(follow)
            headers = {"Accept": "text/event-stream"}
            if follow.last_event_id:
                headers["Last-Event-ID"] = follow.last_event_id
            decoder = _base.SSEDecoder()
            try:
                async with self._http.stream(
                    "GET",
                    _base.job_path(follow.job_id, "/events"),
                    headers=headers,
                    timeout=_base.stream_timeout(self._http.timeout, remaining),
                ) as response:
                    if not response.is_success:
                        await response.aread()
                        error = _base.error_of(response)
                        if not error.retryable:
                            raise error
                        await self._stream_failed(
                            follow, error, response.headers.get("retry-after")
                        )
                        continue
                    async for line in response.aiter_lines():
                        message = decoder.feed(line)
                        if message is None:
                            continue
                        event = _base.to_event(message)
                        follow.last_event_id, follow.failures = event.id, 0
                        yield event
            except httpx.ReadTimeout:
                continue  # an idle stream; the deadline is checked on the way round
            except httpx.TransportError as exc:
                await self._stream_failed(follow, exc, None)
                continue
            job = await self.get(follow.job_id)
            if job.is_final:
                follow.final = job
                return
            await self._sleep(follow, decoder.retry_seconds or self._retry.delay(1))

    def _remaining(self, follow: Follow) -> float | None:
        if follow.deadline is None:
            return None
        remaining = follow.deadline - time.monotonic()
        if remaining <= 0:
            assert follow.timeout is not None
            raise WaitTimeout(follow.job_id, follow.timeout)
        return remaining

    async def _stream_failed(
        self, follow: Follow, error: Exception, retry_after: str | None
    ) -> None:
        follow.failures += 1
        if follow.failures >= self._retry.attempts:
            if isinstance(error, httpx.TransportError):
                raise TransportError(f"event stream of job {follow.job_id}: {error}") from error
            raise error
        log.debug("client_stream_reconnect", job_id=follow.job_id, error=str(error))
        await self._sleep(follow, self._retry.delay(follow.failures, retry_after))

    async def _sleep(self, follow: Follow, seconds: float) -> None:
        remaining = self._remaining(follow)
        await asyncio.sleep(seconds if remaining is None else min(seconds, remaining))

    # ---- rate limits (admin keys) -------------------------------------------------------

    async def set_limit(
        self,
        name: str,
        *,
        rate: float,
        burst: int,
        scope: str = "type",
        per: str = "second",
        job_type: str | None = None,
        key_path: str | None = None,
        units: int = 1,
        units_path: str | None = None,
    ) -> RateLimit:
        """Create or replace a rate limit; ``ApiError`` ``RATE_LIMIT_INVALID`` names a bad field."""
        call = _limits.set_limit_call(
            name,
            rate=rate,
            burst=burst,
            scope=scope,
            per=per,
            job_type=job_type,
            key_path=key_path,
            units=units,
            units_path=units_path,
        )
        return RateLimit.from_json(await self._json(call))

    async def limits(self) -> list[RateLimit]:
        """Every rate limit, with its tokens, waiting jobs and next admission now."""
        body = await self._json(Call("GET", _limits.limit_path(), repeatable=True))
        return [RateLimit.from_json(item) for item in body["items"]]

    async def limit(self, name: str) -> RateLimit:
        """One rate limit; ``ApiError`` with code ``RATE_LIMIT_NOT_FOUND`` if there is none."""
        return RateLimit.from_json(
            await self._json(Call("GET", _limits.limit_path(name), repeatable=True))
        )

    async def delete_limit(self, name: str) -> None:
        """Delete a rate limit; jobs waiting for it keep their slots."""
        await self._send(Call("DELETE", _limits.limit_path(name), repeatable=True))

    # ---- schedules (issue 15) ----

    async def create_schedule(self, request: ScheduleRequest) -> Schedule:
        """Create a schedule; it fires nothing now (its first slot is the first after now).
        ``ApiError`` ``INVALID_CADENCE`` / ``INVALID_SCHEDULE`` names a bad field."""
        return Schedule.from_json(await self._json(_schedules.create_call(request)))

    async def schedules(
        self, *, cursor: str | None = None, limit: int = 100
    ) -> tuple[list[Schedule], str | None]:
        """A page of schedules by id, and the cursor of the next page (None: the last)."""
        return _schedules.parse_schedules(await self._json(_schedules.list_call(cursor, limit)))

    async def schedule(self, schedule_id: int) -> Schedule:
        """One schedule; ``ApiError`` ``SCHEDULE_NOT_FOUND`` if there is none."""
        call = Call("GET", _schedules.schedule_path(schedule_id), repeatable=True)
        return Schedule.from_json(await self._json(call))

    async def update_schedule(self, schedule_id: int, **changes: Any) -> Schedule:
        """Change fields, named as REST does (``cron=``, ``intervalSeconds=``, ``job=``…);
        the next slot becomes the first after now, so the edit fires nothing."""
        return Schedule.from_json(await self._json(_schedules.update_call(schedule_id, changes)))

    async def pause_schedule(self, schedule_id: int) -> Schedule:
        return Schedule.from_json(await self._json(_schedules.pause_call(schedule_id, True)))

    async def resume_schedule(self, schedule_id: int) -> Schedule:
        """From the first slot after now: the slots that passed while paused are not fired."""
        return Schedule.from_json(await self._json(_schedules.pause_call(schedule_id, False)))

    async def delete_schedule(self, schedule_id: int) -> None:
        """Delete a schedule and its slot records; the jobs it created stay."""
        await self._send(Call("DELETE", _schedules.schedule_path(schedule_id), repeatable=True))

    async def schedule_slots(self, schedule_id: int, *, limit: int = 100) -> list[ScheduleSlot]:
        """The slots decided, latest first."""
        body = await self._json(_schedules.slots_call(schedule_id, limit))
        return [ScheduleSlot.from_json(item) for item in body["items"]]

    # ---- end schedules ----

    # ---- artifacts (issue 13) ----

    async def list_artifacts(self, job_id: int) -> list[Artifact]:
        """The job's artifacts, by name."""
        call = Call("GET", _base.artifacts_path(job_id), repeatable=True)
        return _base.parse_artifacts(await self._json(call))

    async def list_run_artifacts(self, run_id: int) -> list[Artifact]:
        """Every artifact of the run's jobs, in the order they were attached."""
        call = Call("GET", _base.run_artifacts_path(run_id), repeatable=True)
        return _base.parse_artifacts(await self._json(call))

    async def download_artifact(
        self, job_id: int, name: str, *, to: str | os.PathLike[str] | BinaryIO
    ) -> Downloaded:
        """Stream one artifact to ``to`` and check its size and sha256 against the server's.

        To a path, it is written beside it (``.partial``) and renamed into place once checked,
        so the path never holds part of it, and a broken download is tried again like a GET;
        to an open binary stream it is sent once. ``DownloadCorrupt`` when the bytes disagree.
        """
        if not isinstance(to, str | os.PathLike):
            return await self._download(job_id, name, to, None)
        path = os.fspath(to)
        partial = _base.partial_path(path)
        failures = 0
        while True:
            try:
                with open(partial, "wb") as out:
                    got = await self._download(job_id, name, out, path)
                os.replace(partial, path)
                return got
            except (ApiError, TransportError) as exc:
                failures += 1
                if not _base.download_retryable(exc) or failures >= self._retry.attempts:
                    raise
                await asyncio.sleep(self._retry.delay(failures))
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(partial)

    async def _download(
        self, job_id: int, name: str, out: BinaryIO, path: str | None
    ) -> Downloaded:
        where = _base.artifacts_path(job_id, name)
        try:
            async with self._http.stream("GET", where) as response:
                if not response.is_success:
                    await response.aread()
                    raise _base.error_of(response)
                received = _base.Received.of(job_id, name, response)
                async for chunk in response.aiter_bytes():
                    out.write(received.add(chunk))
        except httpx.TransportError as exc:
            raise TransportError(f"GET {where}: {exc}") from exc
        return received.checked(path)

    async def _json(self, call: Call) -> Any:
        return (await self._send(call)).json()

    async def _send(self, call: Call) -> httpx.Response:
        """Sends ``call`` inside a client span whose context travels in its headers."""
        path = self._http.base_url.path.rstrip("/") + call.path  # the API's, as it sees it
        with tracing.client_call(call.method, path) as carried:
            if carried:
                call = replace(call, headers={**call.headers, **carried})
            return await self._send_call(call)

    async def _send_call(self, call: Call) -> httpx.Response:
        failures = 0
        while True:
            try:
                response = await self._http.request(
                    call.method, call.path, params=call.params, json=call.json, headers=call.headers
                )
            except httpx.TransportError as exc:
                failures += 1
                allowed = call.repeatable or _base.nothing_was_sent(exc)
                if not allowed or failures >= self._retry.attempts:
                    raise TransportError(f"{call.method} {call.path}: {exc}") from exc
                log.debug("client_retry", method=call.method, path=call.path, error=str(exc))
                await asyncio.sleep(self._retry.delay(failures))
                continue
            if response.is_success:
                return response
            error = _base.error_of(response)
            failures += 1
            if not error.retryable or failures >= self._retry.attempts:
                raise error
            log.debug("client_retry", method=call.method, path=call.path, code=error.code)
            await asyncio.sleep(self._retry.delay(failures, response.headers.get("retry-after")))

    # ---- runs: workflows of jobs and the edges between them -----------------------------

    async def create_run(
        self,
        name: str,
        jobs: Sequence[RunJobRequest],
        edges: Sequence[tuple[str, str]] = (),
        *,
        project_id: str,
        idempotency_key: str | None = None,
    ) -> RunDetail:
        """Submit a run; ``edges`` are ``(parent key, child key)``. Keyed like ``create``, so a
        lost response is retried without submitting the run twice."""
        request = RunRequest(name, project_id, jobs, edges, idempotency_key)
        return RunDetail.from_json(await self._json(_runs.create_run_call(request)))

    async def get_run(self, run_id: int) -> RunDetail:
        call = Call("GET", _runs.run_path(run_id), repeatable=True)
        return RunDetail.from_json(await self._json(call))

    async def list_runs_page(
        self,
        *,
        status: RunStatus | str | None = None,
        project_id: str | None = None,
        name: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> RunPage:
        params = _runs.list_runs_params(
            status=status, project_id=project_id, name=name, limit=limit, cursor=cursor
        )
        return _runs.parse_run_page(
            await self._json(Call("GET", "/runs", params=params, repeatable=True))
        )

    async def list_runs(
        self,
        *,
        status: RunStatus | str | None = None,
        project_id: str | None = None,
        name: str | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[Run]:
        """Every matching run, page after page, fetched as the iteration reaches it."""
        cursor: str | None = None
        while True:
            page = await self.list_runs_page(
                status=status, project_id=project_id, name=name, limit=page_size, cursor=cursor
            )
            for run in page.items:
                yield run
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def cancel_run(self, run_id: int) -> RunDetail:
        """Cancel every job of the run that is not final; repeating it changes nothing, so it
        is retried like a GET."""
        call = Call("POST", _runs.run_path(run_id, "/cancel"), repeatable=True)
        return RunDetail.from_json(await self._json(call))

    async def stream_run_events(
        self, run_id: int, *, last_event_id: str | None = None
    ) -> AsyncIterator[RunEvent]:
        """The run's events (its jobs' transitions and progress, its status changes) from
        ``last_event_id`` (from its first without one) until the run is final, reconnecting
        with ``Last-Event-ID`` when the connection drops."""
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_event_id:
                headers["Last-Event-ID"] = last_event_id
            decoder = _base.SSEDecoder()
            try:
                async with self._http.stream(
                    "GET",
                    _runs.run_path(run_id, "/events"),
                    headers=headers,
                    timeout=_base.stream_timeout(self._http.timeout, None),
                ) as response:
                    if not response.is_success:
                        await response.aread()
                        error = _base.error_of(response)
                        failures += 1
                        if not error.retryable or failures >= self._retry.attempts:
                            raise error
                        await asyncio.sleep(
                            self._retry.delay(failures, response.headers.get("retry-after"))
                        )
                        continue
                    async for line in response.aiter_lines():
                        message = decoder.feed(line)
                        if message is None:
                            continue
                        event = _runs.run_event(message)
                        last_event_id, failures = event.id, 0
                        yield event
            except httpx.ReadTimeout:
                continue  # an idle stream: reconnect from the last event
            except httpx.TransportError as exc:
                failures += 1
                if failures >= self._retry.attempts:
                    raise TransportError(f"event stream of run {run_id}: {exc}") from exc
                log.debug("client_stream_reconnect", run_id=run_id, error=str(exc))
                await asyncio.sleep(self._retry.delay(failures))
                continue
            if (await self.get_run(run_id)).run.is_final:
                return
            await asyncio.sleep(decoder.retry_seconds or self._retry.delay(1))

    # ---- backfills: a source's slots over a range, and its watermark --------------------

    async def create_backfill(
        self, request: BackfillRequest, *, dry_run: bool = False
    ) -> BackfillCreated:
        """Record a backfill (the leader creates its jobs a batch a tick), or with ``dry_run``
        count and list its slots and write nothing; ``ApiError`` ``BACKFILL_INVALID`` names a
        bad field."""
        call = _backfills.create_backfill_call(request, dry_run=dry_run)
        return BackfillCreated.from_json(await self._json(call))

    async def get_backfill(self, backfill_id: int) -> Backfill:
        """One backfill with its progress (slots queued, running, completed, failed)."""
        call = Call("GET", _backfills.backfill_path(backfill_id), repeatable=True)
        return Backfill.from_json(await self._json(call))

    async def list_backfills(
        self, *, source: str | None = None, status: str | None = None, limit: int | None = None
    ) -> list[Backfill]:
        """The newest backfills first (one page of at most ``limit``)."""
        body = await self._json(_backfills.list_backfills_call(source, status, limit))
        return [Backfill.from_json(item) for item in body["items"]]

    async def cancel_backfill(self, backfill_id: int, *, cancel_queued: bool = False) -> Backfill:
        """Stop creating its jobs; with ``cancel_queued`` cancel those not yet claimed too."""
        call = _backfills.cancel_backfill_call(backfill_id, cancel_queued=cancel_queued)
        return Backfill.from_json((await self._json(call))["backfill"])

    async def backfill_sources(self, name: str | None = None) -> list[BackfillSource]:
        """Sources with their watermark and the slot that holds it."""
        body = await self._json(_backfills.sources_call(name))
        return [BackfillSource.from_json(item) for item in body["items"]]
