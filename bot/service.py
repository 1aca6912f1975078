"""The bot's behaviour: turns verified deliveries and agent callbacks into decisions (via `commands/`), durable
state (the store) and writes (the outbox) — the comment flow, the run lifecycle, comparisons and reconciliation."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.coalesce import Coalescer
from bot.github.port import RUN_NAME_INPUT, GitHubError, GitHubPort, PullInfo
from bot.github.sansio import (
    Event as GHEvent,
)
from bot.github.sansio import (
    IssueComment,
    PullRequestEvent,
    WebhookError,
    WorkflowJobEvent,
    WorkflowRunEvent,
    parse_event,
)
from bot.metrics import Metrics
from bot.outbox import GITHUB_KINDS, Outbox
from bot.store import NewRun, Run, Store
from bot.store.models import Delivery, OutboxItem
from commands import authz
from commands.catalog import Catalog
from commands.compare import CompareError, Comparison, Conclusion, compare_results, decide
from commands.decision import Command, Ignore, Parsed, Reply
from commands.events import Event, event_from_json, sign_body, verify_body
from commands.jobspec import Callback, JobSpec, SpecError, job_from_dict, job_to_json, to_dict
from commands.parse import parse_comment
from commands.plan import (
    PlanError,
    PlannedJob,
    PRFacts,
    TrainedRun,
    auto_train_matches,
    plan,
    plan_baseline,
    plan_config_file,
)
from commands.policy import DEFAULT_POLICY, POLICY_FILE, Policy, PolicyError, parse_policy
from commands.render import (
    LeaderboardEntry,
    ProgressView,
    ReportLinks,
    RunView,
    ScoreView,
    check_run_output,
    render_cached_reply,
    render_comparison,
    render_leaderboard,
    render_run_card,
    render_status_list,
    run_marker,
)
from commands.results import BenchmarkResult, Results, SubsetScore

log = logging.getLogger(__name__)

CHECK_NAME = "tunebot"
_STATUS_TO_STATE = {"succeeded": "succeeded", "failed": "failed", "cancelled": "cancelled"}
_RUN_STATE_TO_CHECK = {"queued": "queued", "dispatched": "queued", "running": "in_progress"}


@dataclass(frozen=True)
class Thread:
    """Where a command was given and by whom: the conversation the bot answers in."""

    repo: str
    number: int
    is_pr: bool
    actor: str
    association: str
    trigger: str  # idempotency base for everything this comment causes
    policy: Policy
    comment_id: int | None = None
    installation_id: int | None = None
    echo: Callable[[str], Awaitable[None]] | None = None  # another place that hears the replies (Slack)


class Service:
    def __init__(self, *, config: Any, store: Store, github: GitHubPort, catalog: Catalog, metrics: Metrics,
                 clock: Callable[[], float] = time.time, chat: Any = None) -> None:
        self.config = config
        self.store = store
        self.github = github
        self.catalog = catalog
        self.metrics = metrics
        self.clock = clock
        self.chat = chat
        self.bot_login = config.bot_login
        self.outbox = Outbox(store=store, github=github, bot_login=config.bot_login, metrics=metrics, clock=clock,
                             chat=chat.performers() if chat is not None else None, on_done=self._on_outbox_done)
        self._policies: dict[str, tuple[float, Policy | PolicyError]] = {}
        self._run_locks: dict[str, asyncio.Lock] = {}
        # GitHub's secondary limits allow no edit per progress line: one card edit per interval per run.
        self._cards = Coalescer(config.card_edit_interval_s)
        for name, kind, text in [
            ("deliveries_processed_total", "counter", "Deliveries processed by event and outcome."),
            ("commands_total", "counter", "Commands by verb and outcome."),
            ("callbacks_total", "counter", "Agent callbacks by outcome."),
            ("runs_finished_total", "counter", "Runs finished by state."),
        ]:
            metrics.describe(name, kind, text)

    # --- helpers ------------------------------------------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    async def settle(self) -> None:
        """Write the card edits still waiting for their interval (tests, shutdown)."""
        await self._cards.flush()

    async def policy_for(self, repo: str) -> Policy | PolicyError:
        """The repo's `.tunebot.yml` from its default branch — never from the PR, whose author could rewrite it."""
        cached = self._policies.get(repo)
        if cached is not None and self.clock() - cached[0] < 60:
            return cached[1]
        try:
            text = await self.github.get_file(repo, POLICY_FILE)
        except GitHubError as exc:
            log.warning("cannot read %s of %s: %s; using defaults", POLICY_FILE, repo, exc)
            text = None
        policy = parse_policy(text, catalog=self.catalog)
        self._policies[repo] = (self.clock(), policy)
        return policy

    async def _write(self, key: str, kind: str, payload: Mapping[str, Any], *, run_id: str | None = None,
                     replace_: bool = False, pump: bool = True) -> None:
        await self.store.enqueue(key, kind, dict(payload), self.now(), run_id=run_id, replace=replace_)
        if pump:
            await self.outbox.pump(kinds=GITHUB_KINDS)

    async def reply(self, thread: Thread, key: str, text: str) -> None:
        body = text if len(text) < 60000 else text[:60000] + "\n\n…(truncated)"
        if thread.echo is not None:
            try:
                await thread.echo(text)
            except Exception:  # chat is best effort; the PR reply below is the record
                log.exception("echoing a reply to chat failed")
        await self._write(f"reply:{thread.trigger}:{key}", "comment_create",
                          {"repo": thread.repo, "number": thread.number, "body": body})

    # --- deliveries ---------------------------------------------------------------------------------------------------

    async def process_delivery(self, delivery: Delivery) -> None:
        try:
            event: GHEvent = parse_event(delivery.event, delivery.payload())
        except (WebhookError, ValueError) as exc:
            log.warning("delivery %s (%s) is malformed: %s", delivery.delivery_id, delivery.event, exc)
            self.metrics.inc("deliveries_processed_total", labels={"event": delivery.event, "outcome": "malformed"})
            return
        remember = getattr(self.github, "remember_installation", None)
        installation = getattr(event, "installation_id", None)
        if remember is not None and installation and getattr(event, "repo", None):
            remember(event.repo, installation)  # type: ignore[attr-defined]
        if isinstance(event, IssueComment):
            await self.on_comment(event, f"c{event.comment_id}")
        elif isinstance(event, PullRequestEvent):
            await self.on_pull_request(event, f"pr:{delivery.source}:{delivery.delivery_id}")
        elif isinstance(event, WorkflowRunEvent):
            await self.on_workflow_run(event)
        elif isinstance(event, WorkflowJobEvent):
            await self.on_workflow_job(event)
        self.metrics.inc("deliveries_processed_total", labels={"event": delivery.event, "outcome": "done"})

    # --- the comment flow ---------------------------------------------------------------------------------------------

    async def on_comment(self, ev: IssueComment, trigger: str) -> None:
        if ev.action != "created":
            return  # edits and deletions never run anything: the text someone approved may have changed
        if ev.is_bot or ev.user_login == self.bot_login:
            return
        await self.handle_text(ev.repo, ev.issue_number, ev.user_login, ev.body, trigger=trigger,
                               is_pr=ev.is_pull_request, association=ev.author_association,
                               comment_id=ev.comment_id, installation_id=ev.installation_id)

    async def handle_text(self, repo: str, number: int, actor: str, text: str, *, trigger: str,
                          is_pr: bool = True, association: str = "NONE", comment_id: int | None = None,
                          installation_id: int | None = None,
                          echo: Callable[[str], Awaitable[None]] | None = None) -> None:
        """Run command text on behalf of GitHub user `actor` in a PR/issue thread, exactly as a comment would
        (Slack commands come through here too; `echo` also receives every reply)."""
        # Most comments hold no command: decide that without a single GitHub call.
        if isinstance(parse_comment(text, catalog=self.catalog, policy=DEFAULT_POLICY,
                                    bot_login=self.config.command_name), Ignore):
            return
        policy = await self.policy_for(repo)
        thread = Thread(repo, number, is_pr, actor, association, trigger,
                        policy if isinstance(policy, Policy) else DEFAULT_POLICY, comment_id, installation_id, echo)
        if isinstance(policy, PolicyError):
            await self.reply(thread, "policy", "⚠️ " + policy.render())
            return
        decision = parse_comment(text, catalog=self.catalog, policy=policy, bot_login=self.config.command_name)
        if isinstance(decision, Ignore):
            log.info("%s: %s", trigger, decision.reason)
            return
        if isinstance(decision, Reply):
            await self.reply(thread, "parse", decision.text)
            return
        if comment_id is not None:
            await self._write(f"react:{comment_id}", "reaction",
                              {"repo": repo, "comment_id": comment_id, "content": "eyes"})
        await self.run_commands(thread, decision)

    async def run_commands(self, thread: Thread, decision: Parsed) -> None:
        pull: PullInfo | None = None
        if thread.is_pr:
            pull = await self.github.get_pull(thread.repo, thread.number)
        for i, cmd in enumerate(decision.commands):
            try:
                await self.run_command(thread, pull, cmd, i)
            except (PlanError, SpecError) as exc:
                self.metrics.inc("commands_total", labels={"verb": cmd.verb, "outcome": "plan_error"})
                await self.reply(thread, f"{i}", f"⚠️ `{cmd.render()}`: {exc}")

    async def _actor_facts(self, thread: Thread, pull: PullInfo | None, target: Run | None) -> authz.ActorFacts:
        perm = await self.github.get_permission(thread.repo, thread.actor)
        level = perm.role_name if perm.role_name in ("admin", "maintain", "write", "triage", "read", "none") \
            else perm.permission
        grants: tuple[authz.Grant, ...] = ()
        if pull is not None:
            g = await self.store.grant_for(thread.repo, thread.number, pull.head_sha)
            if g is not None:
                grants = (authz.Grant(g.head_sha, g.granted_by, g.created_at),)
        usage = await self.store.usage(thread.repo, thread.actor, self.now().date())
        return authz.ActorFacts(
            login=thread.actor, permission=level, is_bot=thread.actor.endswith("[bot]"),
            author_association=thread.association, pr_from_fork=bool(pull and pull.is_fork),
            head_sha=pull.head_sha if pull else "", grants=grants, runs_today=usage.runs,
            gpu_hours_today=usage.gpu_seconds / 3600.0,
            run_owner=target.actor if target else None,
            run_trains=bool(target and target.kind in ("train", "train+eval")))

    async def _target_run(self, thread: Thread, cmd: Command) -> Run | None:
        wanted = cmd.get("run")
        if isinstance(wanted, str) and wanted:
            run = await self.store.get_run(wanted)
            return run if run is not None and run.repo == thread.repo else None
        runs = await self.store.runs_for_pr(thread.repo, thread.number)
        if cmd.verb == "cancel":
            runs = [r for r in runs if not r.finished]
        return runs[0] if runs else None

    async def run_command(self, thread: Thread, pull: PullInfo | None, cmd: Command, index: int) -> None:
        target = await self._target_run(thread, cmd) if cmd.verb in ("cancel", "retry", "status") else None
        facts = await self._actor_facts(thread, pull, target)
        decision = authz.authorize(cmd, facts, thread.policy, self.now())
        if isinstance(decision, (authz.Denied, authz.NeedsApproval)):
            outcome = "denied" if isinstance(decision, authz.Denied) else "needs_approval"
            self.metrics.inc("commands_total", labels={"verb": cmd.verb, "outcome": outcome})
            text = decision.reason if isinstance(decision, authz.Denied) else decision.how
            await self.reply(thread, f"{index}", f"@{thread.actor} `{cmd.render()}`: {text}")
            return
        self.metrics.inc("commands_total", labels={"verb": cmd.verb, "outcome": "allowed"})
        verb = cmd.verb
        if verb in ("train", "eval", "compare"):
            if pull is None:
                await self.reply(thread, f"{index}", f"`/{verb}` runs on pull requests: comment it on a PR.")
                return
            await self.start(thread, pull, cmd, index, facts)
        elif verb == "status":
            await self.cmd_status(thread, index)
        elif verb == "cancel":
            await self.cmd_cancel(thread, cmd, target, index)
        elif verb == "retry":
            await self.cmd_retry(thread, cmd, target, index)
        elif verb == "ok-to-train":
            await self.cmd_ok_to_train(thread, pull, cmd, facts, index)
        elif verb == "leaderboard":
            await self.cmd_leaderboard(thread, cmd, index)

    async def pr_facts(self, repo: str, number: int, pull: PullInfo) -> PRFacts:
        runs = await self.store.runs_for_pr(repo, number)
        trained = {r.run_id: TrainedRun(r.run_id, r.model or "", r.result_key or "") for r in runs
                   if r.state == "succeeded" and r.kind in ("train", "train+eval")}
        latest_train = next((r.run_id for r in runs if r.run_id in trained), None)
        latest_benchmarks: tuple[str, ...] = ()
        for r in runs:
            spec = r.job_spec or {}
            if spec.get("benchmarks"):
                latest_benchmarks = tuple(b["name"] for b in spec["benchmarks"])
                break
        return PRFacts(repo=repo, head_sha=pull.head_sha, base_ref=pull.base_ref, number=number,
                       latest_train_run=latest_train, trained_runs=trained, latest_benchmarks=latest_benchmarks)

    def new_run_id(self) -> str:
        return "tb-" + secrets.token_hex(6)

    async def start(self, thread: Thread, pull: PullInfo, cmd: Command, index: int,
                    facts: authz.ActorFacts | None = None) -> None:
        pr = await self.pr_facts(thread.repo, thread.number, pull)
        planned = plan(cmd, pr, thread.policy, self.catalog, iter(self.new_run_id, None))
        for j, pj in enumerate(planned):
            await self.start_planned(thread, pull, cmd, pj, f"{index}.{j}")

    async def _stored(self, repo: str, keys: Mapping[str, str]) -> dict[str, tuple[str, BenchmarkResult]] | None:
        found: dict[str, tuple[str, BenchmarkResult]] = {}
        for bench, key in keys.items():
            hit = await self.store.find_result(repo, key)
            if hit is None:
                return None
            found[bench] = hit
        return found

    async def start_planned(self, thread: Thread, pull: PullInfo, cmd: Command, pj: PlannedJob, key: str,
                            *, backfill_for: str | None = None) -> Run | None:
        job = pj.job
        if job.kind == "eval" and not pj.force and pj.benchmark_keys:
            stored = await self._stored(thread.repo, pj.benchmark_keys)
            if stored is not None:
                await self._answer_from_store(thread, pull, pj, stored, key, backfill_for)
                return None
        if job.adapter is not None and job.adapter.workflow_run_id is None:
            # On a GitHub runner the adapter exists only as the training run's artifact: name the workflow run that
            # holds it, so the dispatched workflow can download it (local mode fills adapter.path instead).
            source = await self.store.get_run(job.adapter.run_id)
            if source is not None and source.workflow_run_id is not None:
                job = replace(job, adapter=replace(job.adapter, workflow_run_id=source.workflow_run_id))
        run_id = job.run_id
        new = NewRun(run_id=run_id, repo=thread.repo, actor=thread.actor, command=cmd.line or cmd.render(),
                     kind=job.kind, run_token=secrets.token_urlsafe(32), number=thread.number, head_sha=job.sha,
                     model=job.model.name, job_spec=to_dict(job), result_key=pj.result_key, name_token=run_id,
                     trigger_key=f"{thread.trigger}:{key}")
        run, created = await self.store.create_run(new, now=self.now())
        if pj.compare_ref:
            await self.store.remember_message(run.run_id, "compare_ref", pj.compare_ref, now=self.now(),
                                              channel="intent", extra={"keys": dict(pj.benchmark_keys)})
        elif job.evaluates:
            await self.store.remember_message(run.run_id, "eval_keys", "-", now=self.now(), channel="intent",
                                              extra={"keys": dict(pj.benchmark_keys)})
        if backfill_for:
            await self.store.remember_message(run.run_id, "backfill_for", backfill_for, now=self.now(),
                                              channel="intent")
        await self.dispatch(run, job_from_dict(run.job_spec) if not created and run.job_spec else job)
        return run

    async def _answer_from_store(self, thread: Thread, pull: PullInfo, pj: PlannedJob,
                                 stored: Mapping[str, tuple[str, BenchmarkResult]], key: str,
                                 backfill_for: str | None) -> None:
        first_run = next(iter(stored.values()))[0]
        source = await self.store.get_run(first_run)
        scores = {b: ScoreView(score=r.score, n=r.n) for b, (_, r) in stored.items()}
        if backfill_for is None:
            text = render_cached_reply(first_run, source.head_sha or "" if source else "",
                                       thread.policy.language, run_url=source.workflow_url if source else None,
                                       scores=scores)
            await self.reply(thread, f"cached:{key}", text)
        results = Results(run_id=first_run, status="succeeded",
                          benchmarks={b: r for b, (_, r) in stored.items()})
        if pj.compare_ref:
            await self.compare_with_baseline(thread.repo, thread.number, results, pj.job, first_run,
                                             base_ref=pj.compare_ref, explicit=True, policy=thread.policy,
                                             pull=pull)
        elif backfill_for is not None:
            origin = await self.store.get_run(backfill_for)
            if origin is not None:
                await self._compare_finished(origin, baseline_run=first_run)

    # --- dispatch -----------------------------------------------------------------------------------------------------

    async def dispatch(self, run: Run, job: JobSpec) -> None:
        """Queue the workflow dispatch, the sticky run card and the check run (all through the outbox)."""
        callback = f"{self.config.public_url.rstrip('/')}/api/runs/{run.run_id}/events"
        job = replace(job, callback=Callback(url=callback, token=run.run_token))
        job_json = job_to_json(job)
        # The inputs of deploy/github/tunebot-run.yml; RUN_NAME_INPUT (run_id) also names the workflow run.
        inputs = {
            RUN_NAME_INPUT: run.run_id,
            "job": job_json,
            "job_sig": sign_body(self.config.job_signing_key.get(), job_json.encode("utf-8")),
            "sha": job.sha,
            "callback_url": callback,
        }
        # The workflow file comes from the default branch: dispatching on the PR branch would run a workflow the
        # PR author wrote, with the repository's secrets (platform-facts: workflow_dispatch).
        ref = await self.github.default_branch(run.repo)
        now = self.now()
        await self.store.enqueue(f"dispatch:{run.run_id}", "dispatch",
                                 {"repo": run.repo, "workflow": self.config.workflow_file, "ref": ref,
                                  "inputs": inputs, "decided_at": now.isoformat(), "run_id": run.run_id},
                                 now, run_id=run.run_id)
        if run.number is not None:
            await self.store.enqueue(f"card:{run.run_id}:create", "comment_create",
                                     {"repo": run.repo, "number": run.number, "marker": run_marker(run.run_id),
                                      "subject": run.run_id, "purpose": "card",
                                      "body": await self.render_card(run)}, now, run_id=run.run_id)
        if self.config.app_mode and run.head_sha:
            await self.store.enqueue(f"check:{run.run_id}:create", "check_create",
                                     {"repo": run.repo, "name": f"{CHECK_NAME} ({run.kind})",
                                      "head_sha": run.head_sha, "status": "queued", "external_id": run.run_id,
                                      "run_id": run.run_id,
                                      "output": {"title": f"{run.kind} {run.model or ''} queued",
                                                 "summary": f"`{run.command}` by @{run.actor}"}},
                                     now, run_id=run.run_id)
        if self.chat is not None:
            await self.chat.run_changed(run, await self.run_view(run), final=False)
        await self.outbox.pump(kinds=GITHUB_KINDS)

    async def _on_outbox_done(self, item: OutboxItem, result: Mapping[str, Any]) -> None:
        if item.run_id is None:
            return
        now = self.now()
        if item.kind == "dispatch":
            wf_id = result.get("workflow_run_id")
            await self.store.update_run(item.run_id, now=now, workflow_run_id=wf_id,
                                        workflow_url=result.get("html_url"))
            await self.store.advance_run(item.run_id, "dispatched", now=now)
        elif item.kind == "comment_create" and item.payload.get("purpose") == "card":
            await self.store.update_run(item.run_id, now=now, comment_id=int(result["comment_id"]))
        elif item.kind == "check_create":
            await self.store.update_run(item.run_id, now=now, check_run_id=int(result["check_run_id"]))

    # --- the run card -------------------------------------------------------------------------------------------------

    async def _events(self, run_id: str) -> list[Event]:
        return await self.store.events_after(run_id, -1)

    async def run_view(self, run: Run, events: Sequence[Event] | None = None,
                       baseline: Mapping[str, ScoreView] | None = None, baseline_label: str = "") -> RunView:
        evs = list(events) if events is not None else await self._events(run.run_id)
        spec = run.job_spec or {}
        hyper = spec.get("hyper") or {}
        shown = {k: hyper[k] for k in ("lora_rank", "learning_rate", "max_steps", "num_train_epochs")
                 if hyper.get(k) is not None} if run.kind != "eval" else {}
        loss: list[tuple[int, float]] = []
        scores: dict[str, ScoreView] = {}
        progress: ProgressView | None = None
        for ev in evs:
            if ev.seq > run.last_seq:
                continue
            d = ev.data
            if ev.type == "progress":
                if d.get("loss") is not None and d.get("phase", "train") == "train":
                    loss.append((int(d["step"]), float(d["loss"])))
                progress = ProgressView(step=int(d["step"]), total=int(d["total"]), loss=d.get("loss"),
                                        learning_rate=d.get("learning_rate"), eta_s=d.get("eta_s"),
                                        samples_per_s=d.get("samples_per_s"), epoch=d.get("epoch"),
                                        phase=d.get("phase"))
            elif ev.type == "eval_result":
                scores[str(d["benchmark"])] = ScoreView(score=float(d["score"]), n=int(d["n"]))
        return RunView(
            run_id=run.run_id, command=run.command, actor=run.actor, repo=run.repo, sha=run.head_sha or "",
            model=run.model or "", state=run.state, kind=run.kind, tuner=spec.get("tuner"), hyper=shown,
            phase=run.phase, progress=progress if not run.finished else None, scores=scores,
            baseline=dict(baseline or {}), baseline_label=baseline_label, loss=tuple(loss),
            actions_url=run.workflow_url, reason=run.reason,
            started_at=run.started_at.timestamp() if run.started_at else None,
            finished_at=run.finished_at.timestamp() if run.finished_at else None,
            updated_at=run.updated_at.timestamp() if run.updated_at else None, pr_number=run.number)

    async def render_card(self, run: Run, **kw: Any) -> str:
        policy = await self.policy_for(run.repo)
        lang = policy.language if isinstance(policy, Policy) else "en"
        return render_run_card(await self.run_view(run, **kw), lang)

    async def refresh_card(self, run_id: str, *, final: bool = False, **kw: Any) -> None:
        """Re-render the sticky card; edits are coalesced to one per interval, the final state always goes out."""

        async def write(_key: str) -> None:
            run = await self.store.get_run(run_id)  # rendered when written, so a delayed edit shows the latest state
            if run is None or run.number is None:
                return
            body = await self.render_card(run, **kw)
            await self._write(f"card:{run_id}:edit", "comment_edit",
                              {"repo": run.repo, "subject": run_id, "purpose": "card", "body": body},
                              run_id=run_id, replace_=True)

        await self._cards.update(run_id, write, final=final)

    # --- agent callbacks ----------------------------------------------------------------------------------------------

    async def accept_callback(self, run_id: str, body: bytes, signature: str | None) -> tuple[int, str]:
        run = await self.store.get_run(run_id)
        if run is None:
            self.metrics.inc("callbacks_total", labels={"outcome": "unknown_run"})
            return 404, "unknown run"
        if not verify_body(run.run_token, body, signature):
            self.metrics.inc("callbacks_total", labels={"outcome": "bad_signature"})
            return 401, "bad signature"
        try:
            event = event_from_json(body)
        except SpecError as exc:
            self.metrics.inc("callbacks_total", labels={"outcome": "malformed"})
            return 400, str(exc)
        if event.run_id != run_id:
            self.metrics.inc("callbacks_total", labels={"outcome": "wrong_run"})
            return 400, f"event for run {event.run_id} posted to run {run_id}"
        outcome = await self.store.append_event(event, now=self.now())
        self.metrics.inc("callbacks_total", labels={"outcome": outcome})
        await self.apply_ready(run_id)
        if run.state == "cancelled" and not event.is_final:
            return 410, "run cancelled"  # tells the agent to stop
        return (200, "duplicate") if outcome == "duplicate" else (202, "accepted")

    async def apply_ready(self, run_id: str) -> None:
        """Apply stored events strictly in sequence order; a gap waits for the missing event."""
        lock = self._run_locks.setdefault(run_id, asyncio.Lock())
        async with lock:
            run = await self.store.get_run(run_id)
            if run is None:
                return
            ready = await self.store.ready_events(run_id)
            if not ready:
                return
            final = None
            now = self.now()
            for ev in ready:
                final = await self._apply(run, ev, now) or final
            await self.store.mark_events_applied(run_id, expected_last_seq=run.last_seq, last_seq=ready[-1].seq,
                                                 now=now)
        if final is not None:
            await self._finish(run_id, final)
        else:
            await self.refresh_card(run_id)

    async def _apply(self, run: Run, ev: Event, now: datetime) -> Event | None:
        d = ev.data
        rid = run.run_id
        if ev.type in ("accepted", "phase", "progress", "heartbeat") and not run.finished:
            started, changed = await self.store.advance_run(rid, "running", now=now)
            if changed and self.config.app_mode:
                await self.store.enqueue(f"check:{rid}:start", "check_update",
                                         {"repo": run.repo, "run_id": rid, "status": "in_progress",
                                          "details_url": started.workflow_url}, now, run_id=rid)
        if ev.type == "phase":
            await self.store.update_run(rid, now=now, phase=str(d["phase"]))
            if self.chat is not None:
                fresh = await self.store.get_run(rid)
                if fresh is not None:
                    await self.chat.milestone(fresh, f"phase:{d['phase']}", str(d["phase"]))
        elif ev.type == "progress":
            await self.store.update_run(rid, now=now, progress=dict(d))
        elif ev.type == "finished":
            return ev
        return None

    async def _finish(self, run_id: str, ev: Event) -> None:
        now = self.now()
        state = _STATUS_TO_STATE.get(str(ev.data["status"]), "failed")
        run, _ = await self.store.advance_run(run_id, state, now=now, reason=ev.data.get("reason"))  # type: ignore[arg-type]
        if run.started_at and run.finished_at:
            await self.store.update_run(run_id, now=now,
                                        gpu_seconds=(run.finished_at - run.started_at).total_seconds())
        self.metrics.inc("runs_finished_total", labels={"state": run.state})
        results = await self._save_results(run)
        compared = False
        if results is not None and results.benchmarks:
            compared = await self._compare_finished(run)
        if not compared:
            await self._complete_check(run)
            await self.refresh_card(run_id, final=True)
        if self.chat is not None:
            await self.chat.run_changed(run, await self.run_view(run), final=True)

    async def _save_results(self, run: Run) -> Results | None:
        evs = [e for e in await self._events(run.run_id) if e.type == "eval_result"]
        if not evs:
            return None
        intent = await self.store.message_for(run.run_id, "compare_ref") or \
            await self.store.message_for(run.run_id, "eval_keys")
        keys: dict[str, str] = dict((intent.extra or {}).get("keys", {})) if intent else {}
        benches: dict[str, BenchmarkResult] = {}
        manifest: dict[str, Any] = {}
        for ev in evs:
            d = ev.data
            subsets = {str(k): SubsetScore(n=int(v["n"]), correct=int(v["correct"]))
                       for k, v in (d.get("subsets") or {}).items() if isinstance(v, Mapping)}
            if not subsets:
                subsets = {"all": SubsetScore(n=int(d["n"]), correct=int(d.get("correct", round(d["score"] * d["n"]))))}
            questions = {str(k): bool(v) for k, v in (d.get("questions") or {}).items()}
            benches[str(d["benchmark"])] = BenchmarkResult(str(d["benchmark"]), subsets, questions,
                                                           str(d.get("config_hash", "")))
            manifest.update(d.get("manifest") or {})
        results = Results(run.run_id, run.state, benches, manifest=manifest)
        keys = {b: keys.get(b) or f"run:{run.run_id}:{b}" for b in benches}
        await self.store.save_results(run.run_id, results, keys, run.repo, run.head_sha or "", None, now=self.now())
        return results

    # --- comparisons --------------------------------------------------------------------------------------------------

    async def compare_with_baseline(self, repo: str, number: int | None, new: Results, job: JobSpec,
                                    new_run_id: str, *, base_ref: str, explicit: bool, policy: Policy,
                                    pull: PullInfo | None = None) -> bool:
        """Post the comparison of `new` against the base model's stored results for the same eval config; if none
        is stored and the user asked for the comparison, dispatch that baseline eval (backfill) and compare when it
        finishes. Returns True when a comparison was posted now."""
        if base_ref.startswith("tb-") and base_ref != new_run_id:
            # `/compare <run-id>`: that run's stored results are the reference, question by question.
            other = await self.store.get_run(base_ref)
            stored_other = await self.store.load_results(base_ref) if other and other.repo == repo else None
            if stored_other is None or not stored_other.benchmarks:
                raise PlanError(f"run `{base_ref}` has no stored evaluation results in {repo} to compare with")
            await self._post_comparison(repo, number, new_run_id, stored_other, new, policy, base_ref)
            return True
        pr = PRFacts(repo=repo, head_sha=job.sha, base_ref=base_ref, number=number)
        base_pj = plan_baseline(job, pr, self.catalog, self.new_run_id())
        stored = await self._stored(repo, base_pj.benchmark_keys)
        if stored is None:
            if not explicit or number is None:
                return False
            if pull is None:
                pull = await self.github.get_pull(repo, number)
            run = await self.store.get_run(new_run_id)
            thread = Thread(repo, number, True, run.actor if run else self.bot_login, "OWNER",
                            f"backfill:{new_run_id}", policy)
            cmd = Command("eval", {}, line=f"/eval {' '.join(new.benchmarks)} (baseline for {new_run_id})")
            await self.start_planned(thread, pull, cmd, base_pj, "baseline", backfill_for=new_run_id)
            return False
        base = Results(run_id=next(iter(stored.values()))[0], status="succeeded",
                       benchmarks={b: r for b, (_, r) in stored.items()})
        await self._post_comparison(repo, number, new_run_id, base, new, policy, base_ref)
        return True

    async def _compare_finished(self, run: Run, baseline_run: str | None = None) -> bool:
        """After a run's evaluation: compare it (explicitly asked, auto when a baseline exists, or a backfill)."""
        backfill = await self.store.message_for(run.run_id, "backfill_for")
        if backfill is not None and baseline_run is None:
            origin = await self.store.get_run(backfill.message_id)
            if origin is not None:
                await self._complete_check(run)
                await self.refresh_card(run.run_id, final=True)
                return await self._compare_finished(origin, baseline_run=run.run_id)
            return False
        results = await self.store.load_results(run.run_id)
        if results is None or not results.benchmarks:
            return False
        policy = await self.policy_for(run.repo)
        policy = policy if isinstance(policy, Policy) else DEFAULT_POLICY
        intent = await self.store.message_for(run.run_id, "compare_ref")
        if run.job_spec is None:
            return False
        base_ref = intent.message_id if intent is not None else "main"
        job = job_from_dict(run.job_spec)
        # An adapter evaluated on a PR is a change someone wants measured: compare it with the base model, running
        # the baseline eval if none is stored (it is content-addressed, so every later PR reuses it). A base-model
        # eval is itself a baseline and is only compared when asked.
        wants = intent is not None or job.adapter is not None or job.kind == "train+eval"
        try:
            return await self.compare_with_baseline(run.repo, run.number, results, job, run.run_id,
                                                    base_ref=base_ref, explicit=wants and baseline_run is None,
                                                    policy=policy)
        except (PlanError, CompareError, SpecError) as exc:
            log.warning("comparison for %s failed: %s", run.run_id, exc)
            return False

    async def _post_comparison(self, repo: str, number: int | None, run_id: str, base: Results, new: Results,
                               policy: Policy, base_ref: str) -> None:
        # ~1 s for a full CMMLU + C-Eval bootstrap: keep it off the event loop.
        comparison: Comparison = await asyncio.to_thread(compare_results, base, new)
        conclusion: Conclusion = decide(comparison, policy.regression)
        run = await self.store.get_run(run_id)
        links = ReportLinks(actions_url=run.workflow_url if run else None)
        parts = render_comparison(comparison, conclusion, policy.language, links, key=run_id)
        if number is not None:
            for i, body in enumerate(parts, start=1):
                # Keyed by the moment it was decided; the remembered (subject, part) makes a repeat edit the earlier
                # report in place instead of posting a second copy.
                await self._write(f"compare:{run_id}:{base.run_id}:{i}:{self.clock():.6f}", "comment_create",
                                  {"repo": repo, "number": number, "body": body, "subject": f"compare:{run_id}",
                                   "purpose": f"part{i}", "marker": f"tunebot:compare:{run_id}"}, run_id=run_id)
        if run is not None:
            baseline = {b: ScoreView(score=r.score, n=r.n) for b, r in base.benchmarks.items()}
            await self._complete_check(run, comparison=comparison, conclusion=conclusion)
            await self.refresh_card(run_id, final=True, baseline=baseline, baseline_label=base_ref)
            if self.chat is not None:
                await self.chat.comparison(run, comparison, conclusion, policy)

    async def _complete_check(self, run: Run, *, comparison: Comparison | None = None,
                              conclusion: Conclusion | None = None) -> None:
        if not self.config.app_mode:
            return
        fresh = await self.store.get_run(run.run_id) or run
        if comparison is not None and conclusion is not None:
            policy = await self.policy_for(run.repo)
            lang = policy.language if isinstance(policy, Policy) else "en"
            out = check_run_output(comparison, conclusion, lang)
            output = {"title": out.title, "summary": out.summary, "text": out.text}
            concl = conclusion.conclusion if fresh.state == "succeeded" else "failure"
        else:
            concl = {"succeeded": "success", "failed": "failure", "cancelled": "cancelled"}.get(fresh.state,
                                                                                             "neutral")
            output = {"title": f"{fresh.kind} {fresh.state}", "summary": fresh.reason or f"`{fresh.command}`"}
        await self._write(f"check:{run.run_id}:update", "check_update",
                          {"repo": run.repo, "run_id": run.run_id, "status": "completed", "conclusion": concl,
                           "output": output, "details_url": fresh.workflow_url,
                           "completed_at": self.now().isoformat()}, run_id=run.run_id, replace_=True)

    # --- other verbs --------------------------------------------------------------------------------------------------

    async def cmd_status(self, thread: Thread, index: int) -> None:
        runs = await self.store.runs_for_pr(thread.repo, thread.number)
        views = [await self.run_view(r) for r in runs]
        await self.reply(thread, f"{index}", render_status_list(views, thread.policy.language))

    async def cmd_cancel(self, thread: Thread, cmd: Command, target: Run | None, index: int) -> None:
        if target is None or target.finished:
            what = f"run `{cmd.get('run')}`" if cmd.get("run") else "this PR"
            await self.reply(thread, f"{index}", f"Nothing to cancel: {what} has no active run.")
            return
        await self.cancel_run(target, f"cancelled by @{thread.actor}")
        await self.reply(thread, f"{index}", f"Cancelling `{target.run_id}`.")

    async def cancel_run(self, run: Run, reason: str) -> None:
        run, changed = await self.store.advance_run(run.run_id, "cancelled", now=self.now(), reason=reason)
        if run.workflow_run_id is not None:
            await self._write(f"cancel:{run.run_id}", "cancel",
                              {"repo": run.repo, "workflow_run_id": run.workflow_run_id}, run_id=run.run_id)
        if changed:
            await self._complete_check(run)
            await self.refresh_card(run.run_id, final=True)

    async def cmd_retry(self, thread: Thread, cmd: Command, target: Run | None, index: int) -> None:
        if target is None or not target.job_spec:
            await self.reply(thread, f"{index}", "Nothing to retry: no earlier run found on this PR.")
            return
        run_id = self.new_run_id()
        job = replace(job_from_dict(target.job_spec), run_id=run_id, callback=None)
        new = NewRun(run_id=run_id, repo=target.repo, actor=thread.actor, command=cmd.line or cmd.render(),
                     kind=job.kind, run_token=secrets.token_urlsafe(32), number=target.number,
                     head_sha=job.sha, model=target.model, job_spec=to_dict(job), result_key=target.result_key,
                     name_token=run_id, trigger_key=f"{thread.trigger}:{index}", retry_of=target.run_id)
        run, _ = await self.store.create_run(new, now=self.now())
        for purpose in ("compare_ref", "eval_keys"):
            intent = await self.store.message_for(target.run_id, purpose)
            if intent is not None:
                await self.store.remember_message(run.run_id, purpose, intent.message_id, now=self.now(),
                                                  channel="intent", extra=dict(intent.extra or {}))
        await self.dispatch(run, job)

    async def cmd_ok_to_train(self, thread: Thread, pull: PullInfo | None, cmd: Command,
                              facts: authz.ActorFacts, index: int) -> None:
        if pull is None:
            await self.reply(thread, f"{index}", "`/ok-to-train` approves a pull request: comment it on the PR.")
            return
        grant = authz.make_grant(cmd, facts, thread.policy, self.now())
        if isinstance(grant, authz.Denied):
            await self.reply(thread, f"{index}", f"@{thread.actor} {grant.reason}")
            return
        await self.store.grant(thread.repo, thread.number, grant.sha, thread.actor, now=self.now())
        await self.reply(thread, f"{index}",
                         f"✅ @{thread.actor} approved training on `{grant.sha[:7]}`. A new push voids this approval.")

    async def cmd_leaderboard(self, thread: Thread, cmd: Command, index: int) -> None:
        bench = cmd.get("benchmark")
        names = [bench] if isinstance(bench, str) else list(self.catalog.benchmarks)
        entries: list[LeaderboardEntry] = []
        for name in names:
            for r in await self.store.leaderboard(name, 20):
                entries.append(LeaderboardEntry(benchmark=r.benchmark, model=r.model or "?", score=r.score, n=r.n,
                                                date=r.created_at.timestamp(), run_id=r.run_id))
        await self.reply(thread, f"{index}", render_leaderboard(entries, thread.policy.language,
                                                                benchmark=bench if isinstance(bench, str) else None))

    # --- pull requests: declarative configs, grants -------------------------------------------------------------------

    async def on_pull_request(self, ev: PullRequestEvent, trigger: str) -> None:
        if ev.action == "synchronize":
            # A grant is bound to the head SHA it approved; a new push voids it (platform-facts: trust).
            await self.store.revoke_grants(ev.repo, ev.number, now=self.now())
        if ev.action not in ("opened", "synchronize", "reopened"):
            return
        policy = await self.policy_for(ev.repo)
        if not isinstance(policy, Policy) or not policy.auto_train:
            return
        files = [f for f in await self.github.list_pull_files(ev.repo, ev.number)
                 if auto_train_matches(f, policy)]
        if not files:
            return
        pull = await self.github.get_pull(ev.repo, ev.number)
        thread = Thread(ev.repo, ev.number, True, ev.author or ev.sender, "NONE", trigger, policy)
        for i, path in enumerate(files[: policy.quotas.max_dispatches_per_comment]):
            text = await self.github.get_file(ev.repo, path, ev.head_sha)
            if text is None:
                continue
            pr = await self.pr_facts(ev.repo, ev.number, pull)
            try:
                planned = plan_config_file(text, path, pr, policy, self.catalog, iter(self.new_run_id, None))
            except PlanError as exc:
                await self.reply(thread, f"cfg{i}", f"⚠️ {exc}")
                continue
            if planned is None:
                continue
            cmd = Command("train", {}, line=f"(auto-train: {path})")
            facts = await self._actor_facts(thread, pull, None)
            decision = authz.authorize(Command("train", {"model": planned[0].job.model.name}), facts, policy,
                                       self.now())
            if isinstance(decision, (authz.Denied, authz.NeedsApproval)):
                text = decision.reason if isinstance(decision, authz.Denied) else decision.how
                await self.reply(thread, f"cfg{i}", f"`{path}` changed, but training was not started: {text}")
                continue
            for j, pj in enumerate(planned):
                await self.start_planned(thread, pull, cmd, pj, f"cfg{i}.{j}")

    # --- keeping the truth --------------------------------------------------------------------------------------------

    async def _run_for_workflow(self, repo: str, workflow_run_id: int, title: str) -> Run | None:
        run = await self.store.find_run_by_workflow_run(workflow_run_id)
        if run is None:
            for token in title.split():
                if token.startswith("tb-"):
                    run = await self.store.find_run_by_name_token(token)
                    if run is not None:
                        await self.store.update_run(run.run_id, now=self.now(), workflow_run_id=workflow_run_id)
                        break
        return run if run is not None and run.repo == repo else None

    async def on_workflow_run(self, ev: WorkflowRunEvent) -> None:
        run = await self._run_for_workflow(ev.repo, ev.id, ev.display_title)
        if run is None:
            return
        if run.workflow_url is None:
            await self.store.update_run(run.run_id, now=self.now(), workflow_url=ev.html_url)
        if ev.status == "completed":
            await self.workflow_completed(run, ev.conclusion, ev.html_url)

    async def on_workflow_job(self, ev: WorkflowJobEvent) -> None:
        run = await self.store.find_run_by_workflow_run(ev.run_id)
        if run is None or run.finished:
            return
        if ev.status == "in_progress":
            await self.store.advance_run(run.run_id, "running", now=self.now())
            await self.refresh_card(run.run_id)

    async def workflow_completed(self, run: Run, conclusion: str | None, url: str) -> None:
        """The workflow ended; if the agent never said so, the run ends here, with the link to find out why."""
        await asyncio.sleep(0)  # let a final callback that raced this webhook land first
        fresh = await self.store.get_run(run.run_id)
        if fresh is None or fresh.finished:
            return
        if conclusion == "cancelled":
            state, reason = "cancelled", f"the workflow run was cancelled: {url}"
        else:
            state = "failed"
            reason = (f"the workflow ended ({conclusion or 'unknown'}) before the agent reported a result; "
                      f"see {url}")
        await self.store.advance_run(run.run_id, state, now=self.now(), reason=reason)  # type: ignore[arg-type]
        self.metrics.inc("runs_finished_total", labels={"state": state})
        latest = await self.store.get_run(run.run_id) or fresh
        await self._complete_check(latest)
        await self.refresh_card(run.run_id, final=True)
        if self.chat is not None:
            await self.chat.run_changed(latest, await self.run_view(latest), final=True)

    async def prune(self) -> int:
        """Delete finished deliveries older than the retention (their body segments go with them)."""
        days = self.config.delivery_retention_days
        if days <= 0:
            return 0
        pruned = await self.store.prune_deliveries(before=self.now() - timedelta(days=days))
        if pruned:
            log.info("pruned %d finished deliveries older than %g days", pruned, days)
        return pruned

    async def sweep(self) -> int:
        """Ask GitHub about runs that went quiet: a dead runner or a workflow that failed before the agent spoke."""
        cutoff = self.now() - timedelta(seconds=self.config.stale_run_after_s)
        ended = 0
        for run in await self.store.active_runs(updated_before=cutoff):
            if run.workflow_run_id is None:
                if run.dispatched_at is None and run.created_at and run.created_at < cutoff:
                    await self.store.advance_run(run.run_id, "failed", now=self.now(),
                                                 reason="the workflow was never started (dispatch failed?)")
                    await self.refresh_card(run.run_id, final=True)
                    ended += 1
                continue
            try:
                wf = await self.github.get_workflow_run(run.repo, run.workflow_run_id)
            except GitHubError as exc:
                log.warning("sweep: cannot read workflow run %s: %s", run.workflow_run_id, exc)
                continue
            if wf.status == "completed":
                await self.workflow_completed(run, wf.conclusion, wf.html_url)
                ended += 1
        return ended
