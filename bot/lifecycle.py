"""Keeps each run's state true: applies the agent's signed events in order, ends runs whose workflow ended without a
word (webhooks and the periodic sweep), cancels runs, and prunes what is kept only for a while."""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta

from bot.cards import Cards
from bot.comparisons import Comparisons
from bot.core import Core
from bot.github.port import GitHubError, run_id_from_name
from bot.github.sansio import WorkflowJobEvent, WorkflowRunEvent
from bot.store import NewRun, Run
from bot.store.errors import StoreError
from commands.events import (
    EVENTS_FILE,
    EVENTS_SIGNATURE_FILE,
    Event,
    event_from_json,
    events_artifact,
    events_from_log,
    verify_body,
)
from commands.jobspec import JobSpec, SpecError, job_from_dict, to_dict
from commands.plan import PlanError, PRFacts, adapter_identities, base_result_keys, plan_baseline, stored_result_keys
from commands.results import Results, reported_backends, results_from_events

log = logging.getLogger(__name__)

# A signed event log holds every event of a run (per-question outcomes of a full CMMLU are ~1 MB).
MAX_EVENT_LOG = 64 << 20
_STATUS_TO_STATE = {"succeeded": "succeeded", "failed": "failed", "cancelled": "cancelled"}


def _job_of(run: Run) -> JobSpec | None:
    try:
        return job_from_dict(run.job_spec) if run.job_spec else None
    except SpecError:
        return None


class Lifecycle:
    def __init__(self, core: Core, cards: Cards, comparisons: Comparisons) -> None:
        self.core = core
        self.cards = cards
        self.comparisons = comparisons
        self._run_locks: dict[str, asyncio.Lock] = {}
        # Called with a training run whose runner died mid-run (the service resumes it once from its checkpoint).
        self.on_runner_lost: Callable[[Run], Awaitable[None]] | None = None
        for name, kind, text in [
            ("callbacks_total", "counter", "Agent callbacks by outcome."),
            ("runs_finished_total", "counter", "Runs finished by state."),
        ]:
            core.metrics.describe(name, kind, text)

    # --- agent callbacks ----------------------------------------------------------------------------------------------

    async def accept_callback(self, run_id: str, body: bytes, signature: str | None) -> tuple[int, str]:
        metrics = self.core.metrics
        run = await self.core.store.get_run(run_id)
        if run is None:
            metrics.inc("callbacks_total", labels={"outcome": "unknown_run"})
            return 404, "unknown run"
        if not verify_body(run.run_token, body, signature):
            metrics.inc("callbacks_total", labels={"outcome": "bad_signature"})
            return 401, "bad signature"
        try:
            event = event_from_json(body)
        except SpecError as exc:
            metrics.inc("callbacks_total", labels={"outcome": "malformed"})
            return 400, str(exc)
        if event.run_id != run_id:
            metrics.inc("callbacks_total", labels={"outcome": "wrong_run"})
            return 400, f"event for run {event.run_id} posted to run {run_id}"
        if run.finished and event.seq > run.last_seq:
            # A finished run's story is told: nothing after its end is stored (a retried event it already has
            # still gets its "duplicate" answer below). An agent still working on a cancelled run is told to stop.
            metrics.inc("callbacks_total", labels={"outcome": "after_finish"})
            if run.state == "cancelled":
                return 410, "run cancelled"
            return 409, f"run {run_id} already {run.state}"
        outcome = await self.core.store.append_event(event, now=self.core.now())
        metrics.inc("callbacks_total", labels={"outcome": outcome})
        await self.apply_ready(run_id)
        if run.state == "cancelled" and not event.is_final:
            return 410, "run cancelled"  # tells the agent to stop
        return (200, "duplicate") if outcome == "duplicate" else (202, "accepted")

    async def apply_ready(self, run_id: str) -> None:
        """Apply stored events strictly in sequence order; a gap waits for the missing event."""
        store = self.core.store
        lock = self._run_locks.setdefault(run_id, asyncio.Lock())
        async with lock:
            run = await store.get_run(run_id)
            if run is None:
                return
            ready = await store.ready_events(run_id)
            if not ready:
                return
            final = None
            now = self.core.now()
            for ev in ready:
                final = await self._apply(run, ev, now) or final
            await store.mark_events_applied(run_id, expected_last_seq=run.last_seq, last_seq=ready[-1].seq, now=now)
        if final is not None:
            await self._finish(run_id, final)
        else:
            await self.cards.refresh(run_id)

    async def _apply(self, run: Run, ev: Event, now: datetime) -> Event | None:
        store, rid, d = self.core.store, run.run_id, ev.data
        if ev.type in ("accepted", "phase", "progress", "heartbeat") and not run.finished:
            started, changed = await store.advance_run(rid, "running", now=now)
            if changed:
                await self.cards.check_started(started)
        if ev.type == "phase":
            await store.update_run(rid, now=now, phase=str(d["phase"]))
            if self.core.chat is not None:
                fresh = await store.get_run(rid)
                if fresh is not None:
                    await self.core.chat.milestone(fresh, f"phase:{d['phase']}", str(d["phase"]))
        elif ev.type == "progress":
            await store.update_run(rid, now=now, progress=dict(d))
        elif ev.type == "finished":
            return ev
        return None

    async def _finish(self, run_id: str, ev: Event) -> None:
        store, now = self.core.store, self.core.now()
        state = _STATUS_TO_STATE.get(str(ev.data["status"]), "failed")
        run, _ = await store.advance_run(run_id, state, now=now, reason=ev.data.get("reason"))  # type: ignore[arg-type]
        await self._charge(run)
        self.core.metrics.inc("runs_finished_total", labels={"state": run.state})
        results = await self._save_results(run)
        compared = False
        if results is not None and results.benchmarks:
            compared = await self.comparisons.compare_finished(run)
        if not compared:
            await self.cards.finished(run)
        if run.state != "succeeded" and run.backfill_for is not None:
            # A baseline that will not land: the PRs waiting on it hear so, and why, instead of waiting forever.
            await self.comparisons.baselines.baseline_failed(run)
        elif run.state != "succeeded" and run.compare_ref is not None and run.number is not None:
            # A run the comparison waits on for its head side (a seed `/compare … seeds=N` trains or evaluates)
            # that will not land: same notice.
            await self.comparisons.baselines.head_failed(run)
        if self.core.chat is not None:
            await self.core.chat.run_changed(run, await self.cards.view(run), final=True)

    async def _save_results(self, run: Run) -> Results | None:
        events = await self.core.store.events_after(run.run_id, -1)
        results = results_from_events(run.run_id, run.state, events)
        if not results.benchmarks:
            return None
        wanted = dict(run.benchmark_keys or {})
        keys = {b: wanted.get(b) or f"run:{run.run_id}:{b}" for b in results.benchmarks}
        job = _job_of(run)
        if job is not None and job.benchmarks:
            # Keyed on the backend that really produced each score (a served job that could not start its server
            # was scored natively): results of different backends never share a key, so never answer each other.
            trained = run.result_key if job.trains else await self._adapter_training_key(run, job)
            keys = stored_result_keys(job, self.core.catalog, run.run_id, results.benchmarks, wanted,
                                      reported_backends(events), adapter_identities(job, trained))
        await self.core.store.save_results(run.run_id, results, keys, run.repo, run.head_sha or "", None,
                                           now=self.core.now())
        if job is not None and results.base_benchmarks and run.state == "succeeded":
            await self._save_base_scores(run, job, results, reported_backends(events, base=True))
        return results

    async def _adapter_training_key(self, run: Run, job: JobSpec) -> str | None:
        source = await self.core.store.get_run(job.adapter.run_id) if job.adapter is not None else None
        return source.result_key if source is not None and source.repo == run.repo else None

    async def _save_base_scores(self, run: Run, job: JobSpec, results: Results, used: dict[str, str]) -> None:
        """The base model's scores of an `eval_base` job, stored as what they are: an evaluation of the base model,
        under the keys a plain `/eval` of it gets (on the backend that really scored it), so that any later request
        for them (a `/compare base-model`, another PR's baseline) is answered without a run. They are kept as a
        run of their own (`<run>-base`, never dispatched) because a run stores one result per benchmark."""
        store, now = self.core.store, self.core.now()
        served = all(used.get(b, job.eval_backend) == "served" for b in results.base_benchmarks)
        base_id = f"{run.run_id}-base"
        try:
            keys = base_result_keys(job, self.core.catalog, results.base_benchmarks, used)
            planned = plan_baseline(replace(job, eval_backend="served" if served else None),
                                    PRFacts(repo=run.repo, head_sha=job.sha), self.core.catalog, base_id)
        except (PlanError, SpecError) as exc:
            log.warning("run %s: the base model's scores are not stored for reuse: %s", run.run_id, exc)
            return
        benches = {b: r for b, r in results.base_benchmarks.items() if b in keys}
        new = NewRun(run_id=base_id, repo=run.repo, actor=run.actor, kind="eval", run_token=secrets.token_urlsafe(32),
                     command=f"{run.command} (the base model, scored in the same evaluation as {run.run_id})",
                     head_sha=run.head_sha, model=run.model, job_spec=to_dict(planned.job),
                     result_key=planned.result_key, trigger_key=f"base-scores:{run.run_id}", benchmark_keys=keys)
        try:
            await store.create_run(new, now=now)
            await store.update_run(base_id, now=now, workflow_url=run.workflow_url, gpu_seconds=0.0)
            await store.advance_run(base_id, "succeeded", now=now, reason=f"scored in run {run.run_id}")
            await store.save_results(base_id, Results(base_id, "succeeded", benches,
                                                      manifest={"scored_in": run.run_id}),
                                     keys, run.repo, run.head_sha or "", None, now=now)
        except StoreError as exc:  # the run's own results are saved; only the reuse of these is lost
            log.warning("run %s: the base model's scores are not stored for reuse: %s", run.run_id, exc)

    # --- the workflow's side of the story -----------------------------------------------------------------------------

    async def _run_for_workflow(self, ev: WorkflowRunEvent) -> Run | None:
        """The run this workflow run executes, if it is one the bot dispatched.

        A workflow run is bound to a run only if it is the bot's own dispatch: a `workflow_dispatch` of the tunebot
        workflow file, taken from the default branch, in the run's repository, named exactly as the bot named it,
        while the run is active and not yet bound. A PR title or another workflow's `run-name` that merely holds a
        run id binds nothing (it could otherwise end or repoint someone else's run).
        """
        store = self.core.store
        bound = await store.find_run_by_workflow_run(ev.id)
        if bound is not None:
            return bound if bound.repo == ev.repo else None
        run_id = run_id_from_name(ev.display_title)
        if run_id is None or ev.event != "workflow_dispatch" or ev.run_attempt != 1:
            return None
        if ev.path.split("@", 1)[0] != f".github/workflows/{self.core.config.workflow_file}":
            return None
        run = await store.find_run_by_name_token(run_id)
        if run is None or run.repo != ev.repo or run.finished or run.workflow_run_id is not None:
            return None
        if ev.head_branch != await self.core.github.default_branch(ev.repo):
            return None
        return await store.bind_workflow_run(run.run_id, ev.id, now=self.core.now())

    async def on_workflow_run(self, ev: WorkflowRunEvent) -> None:
        run = await self._run_for_workflow(ev)
        if run is None:
            return
        if run.workflow_url is None:
            await self.core.store.update_run(run.run_id, now=self.core.now(), workflow_url=ev.html_url)
        if ev.status == "completed":
            await self.workflow_completed(run, ev.conclusion, ev.html_url)

    async def on_workflow_job(self, ev: WorkflowJobEvent) -> None:
        run = await self.core.store.find_run_by_workflow_run(ev.run_id)
        if run is None or run.repo != ev.repo or run.finished:
            return
        if ev.status == "in_progress":
            await self.core.store.advance_run(run.run_id, "running", now=self.core.now())
            await self.cards.refresh(run.run_id)

    async def workflow_completed(self, run: Run, conclusion: str | None, url: str) -> None:
        """The workflow ended. If the agent's last callback never arrived, its signed event log (uploaded by the
        workflow) tells how the run ended; without one the run ends here, with the link to find out why."""
        await asyncio.sleep(0)  # let a final callback that raced this webhook land first
        store = self.core.store
        fresh = await store.get_run(run.run_id)
        if fresh is None or fresh.finished:
            return
        problem = await self._finish_from_log(fresh)
        fresh = await store.get_run(run.run_id) or fresh
        if fresh.finished:
            return
        if conclusion == "cancelled":
            state, reason = "cancelled", f"the workflow run was cancelled: {url}"
        else:
            state = "failed"
            reason = (f"the workflow ended ({conclusion or 'unknown'}) before the agent reported a result; "
                      f"see {url}")
        if problem:
            reason += f" ({problem})"
        ended, _ = await store.advance_run(run.run_id, state, now=self.core.now(), reason=reason)  # type: ignore[arg-type]
        await self._charge(ended)
        self.core.metrics.inc("runs_finished_total", labels={"state": state})
        latest = await store.get_run(run.run_id) or fresh
        await self.cards.finished(latest)
        if self.core.chat is not None:
            await self.core.chat.run_changed(latest, await self.cards.view(latest), final=True)
        if state == "failed" and self.on_runner_lost is not None:
            await self.on_runner_lost(latest)

    async def _finish_from_log(self, run: Run) -> str | None:
        """Apply the events of the run's uploaded event log that never reached us; None, or why it could not."""
        if run.workflow_run_id is None:
            return None
        try:
            archive = await self.core.github.download_artifact(run.repo, run.workflow_run_id,
                                                               events_artifact(run.run_id), max_bytes=MAX_EVENT_LOG)
        except GitHubError as exc:
            return f"its event log could not be downloaded: {exc}"
        if archive is None:
            return None  # nothing was uploaded: the workflow failed before the agent ran
        try:
            with zipfile.ZipFile(io.BytesIO(archive)) as zf:
                body = zf.read(EVENTS_FILE)
                signature = zf.read(EVENTS_SIGNATURE_FILE).decode("ascii")
            events = events_from_log(run.run_token, body, signature, run.run_id)
            now = self.core.now()
            for ev in events:
                await self.core.store.append_event(ev, now=now)
        except (KeyError, zipfile.BadZipFile, UnicodeDecodeError, SpecError, StoreError) as exc:
            log.warning("run %s: the uploaded event log was refused: %s", run.run_id, exc)
            return f"its uploaded event log was refused: {exc}"
        self.core.metrics.inc("callbacks_total", labels={"outcome": "from_event_log"})
        log.info("run %s: %d events read from the uploaded event log", run.run_id, len(events))
        await self.apply_ready(run.run_id)
        return None

    async def _charge(self, run: Run) -> None:
        """Record the GPU time of a run that just ended (from the agent's start to the end), however it ended, so
        the repository's daily quota counts it."""
        if run.finished_at is not None and run.gpu_seconds is None:
            used = (run.finished_at - run.started_at).total_seconds() if run.started_at else 0.0
            await self.core.store.update_run(run.run_id, now=self.core.now(), gpu_seconds=max(0.0, used))

    async def cancel(self, run: Run, reason: str) -> None:
        run, changed = await self.core.store.advance_run(run.run_id, "cancelled", now=self.core.now(), reason=reason)
        if changed:
            await self._charge(run)
        if run.workflow_run_id is not None:
            await self.core.write(f"cancel:{run.run_id}", "cancel",
                                  {"repo": run.repo, "workflow_run_id": run.workflow_run_id}, run_id=run.run_id)
        if changed:
            await self.cards.finished(run)

    # --- housekeeping -------------------------------------------------------------------------------------------------

    async def prune(self) -> int:
        """Delete what is kept only for a while: finished deliveries (with their bodies) and performed outbox writes
        older than the retention. Returns how many rows went."""
        days = self.core.config.delivery_retention_days
        if days <= 0:
            return 0
        before = self.core.now() - timedelta(days=days)
        deliveries = await self.core.store.prune_deliveries(before=before)
        writes = await self.core.store.prune_outbox(before=before)
        if deliveries or writes:
            log.info("pruned %d finished deliveries and %d performed writes older than %g days", deliveries, writes,
                     days)
        return deliveries + writes

    async def sweep(self) -> int:
        """Ask GitHub about runs that went quiet: a dead runner or a workflow that failed before the agent spoke."""
        store, now = self.core.store, self.core.now()
        cutoff = now - timedelta(seconds=self.core.config.stale_run_after_s)
        ended = 0
        for run in await store.active_runs(updated_before=cutoff):
            if run.workflow_run_id is None:
                if run.dispatched_at is None and run.created_at and run.created_at < cutoff:
                    ended, _ = await store.advance_run(run.run_id, "failed", now=now,
                                                       reason="the workflow was never started (dispatch failed?)")
                    await self._charge(ended)
                    await self.cards.refresh(run.run_id, final=True)
                    ended += 1
                continue
            try:
                wf = await self.core.github.get_workflow_run(run.repo, run.workflow_run_id)
            except GitHubError as exc:
                log.warning("sweep: cannot read workflow run %s: %s", run.workflow_run_id, exc)
                continue
            if wf.status == "completed":
                await self.workflow_completed(run, wf.conclusion, wf.html_url)
                ended += 1
        return ended
