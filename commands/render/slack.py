"""Builds what tunebot writes in Slack: Block Kit payloads for runs and comparisons, kept inside Slack's block, field
and text limits, and the bot's GitHub Markdown turned into mrkdwn."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ..compare import Comparison, Conclusion
from . import fmt
from .common import CONCLUSION_ICON, STATE_ICON, VERDICT_ICON, phase_text, state_text
from .github import explain, headline, seed_lines
from .i18n import normalize_language, t
from .views import ReportLinks, RunView

MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_CONTEXT_ELEMENTS = 10
MAX_MESSAGE_TEXT = 40000

# A milestone is a moment of the run worth a thread reply; every run state is one too ("running" reads as started).
Milestone = Literal["queued", "dispatched", "started", "running", "phase", "progress", "scores", "succeeded",
                    "failed", "cancelled"]
MILESTONES: tuple[Milestone, ...] = ("queued", "dispatched", "started", "running", "phase", "progress", "scores",
                                     "succeeded", "failed", "cancelled")


def esc(text: str) -> str:
    """Slack mrkdwn escaping: the three characters Slack asks apps to escape (&, <, >)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code(text: str) -> str:
    # Slack has no way to escape a backtick inside inline code.
    flat = " ".join(text.split()).replace("`", "'")
    return f"`{esc(flat)}`" if flat else "` `"


def _link(label: str, url: str | None) -> str:
    if not url or not url.startswith(("https://", "http://")):
        return esc(label)
    return f"<{url.replace('|', '%7C').replace('>', '%3E')}|{esc(label.replace('|', '/'))}>"


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": fmt.shorten(text, MAX_SECTION_TEXT)}


def _field(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": fmt.shorten(text, MAX_FIELD_TEXT)}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": fmt.shorten(text, MAX_HEADER_TEXT), "emoji": True}}


def _fields_sections(fields: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "section", "fields": list(fields[i:i + MAX_FIELDS])} for i in range(0, len(fields), MAX_FIELDS)]


def _context(items: Sequence[str]) -> dict[str, Any] | None:
    elements = [_mrkdwn(x) for x in items if x][:MAX_CONTEXT_ELEMENTS]
    return {"type": "context", "elements": elements} if elements else None


def _cap_blocks(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(blocks) <= MAX_BLOCKS:
        return blocks
    return [*blocks[: MAX_BLOCKS - 1], {"type": "context", "elements": [
        _mrkdwn(f"… {len(blocks) - MAX_BLOCKS + 1} more")]}]


def slack_run_message(view: RunView, language: str = "en") -> dict[str, Any]:
    """`{"text", "blocks"}` for chat.postMessage / chat.update: header, run facts as fields, scores with Δ, links."""
    lang = normalize_language(language)
    title = f"{STATE_ICON[view.state]} " + t(lang, "card.title", run=view.run_id, state=state_text(view, lang))
    blocks: list[dict[str, Any]] = [_header(title)]
    intro = f"{_code(view.command)} · " + esc(t(lang, "card.requested", actor=view.actor,
                                                  where=f"{view.repo}@{fmt.short_sha(view.sha)}"))
    facts = [
        _field(f"*{esc(t(lang, 'card.col.model'))}*\n{esc(view.model)}"),
        _field(f"*{esc(t(lang, 'card.col.tuner'))}*\n{esc(view.tuner or '—')}"
               + (f" ({esc(view.kind)})" if view.kind else "")),
        _field(f"*{esc(t(lang, 'status.col.state'))}*\n{esc(state_text(view, lang))}"),
    ]
    p = view.progress
    if p is not None and not view.is_waiting:
        facts.append(_field(f"*{esc(t(lang, 'card.progress'))}*\n`{fmt.progress_bar(p.step, p.total, 10)}` "
                            f"{fmt.percent(p.step, p.total)}% · " + esc(t(lang, "card.step", step=p.step,
                                                                          total=p.total))))
        if p.loss is not None:
            facts.append(_field(f"*{esc(t(lang, 'card.col.loss'))}*\n{fmt.number(p.loss)}"))
        if p.learning_rate is not None:
            facts.append(_field(f"*{esc(t(lang, 'card.col.lr'))}*\n{fmt.number(p.learning_rate)}"))
        if view.state == "running" and p.eta_s is not None:
            facts.append(_field(f"*{esc(t(lang, 'card.col.eta'))}*\n" + esc(fmt.duration(p.eta_s, lang))))
        if p.samples_per_s is not None:
            facts.append(_field(f"*{esc(t(lang, 'card.col.speed'))}*\n{fmt.number(p.samples_per_s)}"))
    if view.hyper:
        facts.append(_field(f"*{esc(t(lang, 'card.col.hyper'))}*\n{_code(fmt.hyper(view.hyper))}"))
    blocks.append({"type": "section", "text": _mrkdwn(intro)})
    blocks += _fields_sections(facts)
    if view.scores:
        score_fields = []
        for name in sorted(view.scores):
            s = view.scores[name]
            base = view.baseline.get(name)
            line = f"*{esc(fmt.bench_name(name))}*\n{fmt.points(s.points)} (n = {fmt.thousands(s.n)})"
            if base is not None:
                line += f"\nΔ {fmt.signed(s.points - base.points)} vs {fmt.points(base.points)}"
            score_fields.append(_field(line))
        blocks.append({"type": "section", "text": _mrkdwn(f"*{esc(t(lang, 'card.scores'))}*")})
        blocks += _fields_sections(score_fields)
    if view.state in ("failed", "cancelled") and view.reason:
        reason = fmt.tail_lines(view.reason, lines=15, chars=MAX_SECTION_TEXT - 200).replace("```", "'''")
        blocks.append({"type": "section", "text": _mrkdwn(f"*{esc(t(lang, 'card.reason'))}*\n```{esc(reason)}```")})
    links = [_link(t(lang, "links.actions"), view.actions_url)] if view.actions_url else []
    links += [_link(a.label, a.url) for a in view.artifacts]
    context = _context([" · ".join(links)] if links else [])
    if context:
        blocks.append(context)
    return {"text": fmt.shorten(title, MAX_MESSAGE_TEXT), "blocks": _cap_blocks(blocks)}


def slack_milestone_text(view: RunView, milestone: Milestone | str, language: str = "en") -> str:
    """A one-line thread reply for a milestone of the run (mrkdwn-escaped)."""
    return esc(milestone_text(view, milestone, language))


def milestone_text(view: RunView, milestone: Milestone | str, language: str = "en") -> str:
    """A one-line, plain-text milestone message, shared by Slack thread replies and DingTalk texts."""
    lang = normalize_language(language)
    run = view.run_id
    reason = " ".join((view.reason or t(lang, "ms.unknown_reason")).split())
    if milestone == "queued":
        return t(lang, "ms.queued", run=run, command=fmt.shorten(" ".join(view.command.split()), 200))
    if milestone == "dispatched":
        return t(lang, "ms.dispatched", run=run)
    if milestone in ("started", "running"):
        return t(lang, "ms.started", run=run, model=view.model)
    if milestone == "phase":
        phase = view.phase or (view.progress.phase if view.progress else None)
        return t(lang, "ms.phase", run=run, phase=phase_text(phase, lang) if phase else state_text(view, lang))
    if milestone == "progress":
        p = view.progress
        step, total = (p.step, p.total) if p else (0, 0)
        return t(lang, "ms.progress", run=run, percent=fmt.percent(step, total), step=step, total=total)
    if milestone == "scores":
        sep = "；" if lang == "zh" else "; "
        parts = []
        for name in sorted(view.scores):
            s = view.scores[name]
            base = view.baseline.get(name)
            delta = f" ({fmt.signed(s.points - base.points)})" if base is not None else ""
            parts.append(f"{fmt.bench_name(name)} {fmt.points(s.points)}{delta}")
        return t(lang, "ms.scores", run=run, scores=sep.join(parts) or "—")
    if milestone == "succeeded":
        took = (view.finished_at - view.started_at) if view.finished_at is not None and view.started_at is not None \
            else 0.0
        return t(lang, "ms.succeeded", run=run, d=fmt.duration(took, lang))
    if milestone == "failed":
        return t(lang, "ms.failed", run=run, reason=fmt.shorten(reason, 300))
    if milestone == "cancelled":
        return t(lang, "ms.cancelled", run=run, reason=fmt.shorten(reason, 300))
    raise ValueError(f"unknown milestone {milestone!r}; expected one of {', '.join(MILESTONES)}")


def slack_comparison_message(
    comparison: Comparison,
    conclusion: Conclusion,
    language: str = "en",
    links: ReportLinks | None = None,
) -> dict[str, Any]:
    """`{"text", "blocks"}` for a comparison: headline, the check's conclusion and rule, one field per benchmark."""
    lang = normalize_language(language)
    head = headline(comparison, lang)
    blocks: list[dict[str, Any]] = [_header(f"{CONCLUSION_ICON[conclusion.conclusion]} {t(lang, 'cmp.title')}")]
    blocks.append({"type": "section", "text": _mrkdwn(f"*{esc(head)}*")})
    verdict = t(lang, "conclusion." + conclusion.conclusion)
    rule = _code(conclusion.rule)
    blocks.append({"type": "section", "text": _mrkdwn(f"{esc(verdict)} · {rule}\n{esc(explain(conclusion, lang))}")})
    if comparison.base_sha:  # a recipe comparison: both commits and what differed
        lines = [esc(t(lang, "cmp.commits", base=fmt.short_sha(comparison.base_sha),
                       new=fmt.short_sha(comparison.new_sha)).replace("`", ""))]
        lines += [f"• {_code(c)}" for c in comparison.changes[:10]]
        blocks.append({"type": "section", "text": _mrkdwn(fmt.shorten("\n".join(lines), 2900))})
    seeded = seed_lines(comparison, lang)
    if seeded:
        text = "\n".join([f"_{esc(seeded[0].strip('*'))}_", *(f"• {esc(x)}" for x in seeded[1:])])
        blocks.append({"type": "section", "text": _mrkdwn(fmt.shorten(text, 2900))})
    fields = []
    for b in comparison.benchmarks:
        line = (f"*{esc(fmt.bench_name(b.benchmark))}* (n = {fmt.thousands(b.n)})\n"
                f"{fmt.points(b.base_score)} → {fmt.points(b.new_score)} (*{fmt.signed(b.delta)}*)\n"
                f"{VERDICT_ICON[b.verdict]} {esc(t(lang, 'verdict.' + b.verdict))}")
        if b.p_value is not None:
            line += f", {esc(fmt.p_clause(b.p_value))}, 95% CI {esc(fmt.ci(b.ci_low, b.ci_high))}"
        fields.append(_field(line))
    blocks += _fields_sections(fields)
    link_items = []
    if links is not None:
        link_items = [_link(t(lang, "links.actions"), links.actions_url) if links.actions_url else "",
                      _link(t(lang, "links.artifacts"), links.artifacts_url) if links.artifacts_url else ""]
    context = _context([" · ".join(x for x in link_items if x)] if any(link_items) else [])
    if context:
        blocks.append(context)
    return {"text": fmt.shorten(head, MAX_MESSAGE_TEXT), "blocks": _cap_blocks(blocks)}


def validate_message(payload: Mapping[str, Any]) -> list[str]:
    """Every way `payload` breaks Slack's Block Kit limits (an empty list when it is fine)."""
    problems: list[str] = []
    blocks = payload.get("blocks", [])
    if not isinstance(blocks, list):
        return ["blocks: not a list"]
    if len(blocks) > MAX_BLOCKS:
        problems.append(f"{len(blocks)} blocks (max {MAX_BLOCKS})")
    if not payload.get("text"):
        problems.append("text: missing (needed as the notification fallback)")
    elif len(str(payload["text"])) > MAX_MESSAGE_TEXT:
        problems.append(f"text: {len(str(payload['text']))} chars (max {MAX_MESSAGE_TEXT})")
    for i, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "header":
            text = block.get("text", {})
            if text.get("type") != "plain_text":
                problems.append(f"block {i}: header text must be plain_text")
            if not 0 < len(text.get("text", "")) <= MAX_HEADER_TEXT:
                problems.append(f"block {i}: header text length {len(text.get('text', ''))} (1..{MAX_HEADER_TEXT})")
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                problems.append(f"block {i}: section needs text or fields")
            if "text" in block and not 0 < len(block["text"].get("text", "")) <= MAX_SECTION_TEXT:
                problems.append(f"block {i}: section text length {len(block['text'].get('text', ''))} "
                                f"(1..{MAX_SECTION_TEXT})")
            fields = block.get("fields", [])
            if len(fields) > MAX_FIELDS:
                problems.append(f"block {i}: {len(fields)} fields (max {MAX_FIELDS})")
            for j, f in enumerate(fields):
                if not 0 < len(f.get("text", "")) <= MAX_FIELD_TEXT:
                    problems.append(f"block {i} field {j}: text length {len(f.get('text', ''))} (1..{MAX_FIELD_TEXT})")
        elif kind == "context":
            elements = block.get("elements", [])
            if not 0 < len(elements) <= MAX_CONTEXT_ELEMENTS:
                problems.append(f"block {i}: {len(elements)} context elements (1..{MAX_CONTEXT_ELEMENTS})")
        elif kind != "divider":
            problems.append(f"block {i}: unexpected block type {kind!r}")
    return problems


# --- GitHub Markdown as mrkdwn -------------------------------------------------------------------------------------

_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_HTML_TAG = re.compile(r"</?(?:details|summary|sub|sup|br|p|b|i|em|strong|code|kbd|span|div|picture|source)\b"
                       r"[^>]*>", re.IGNORECASE)
_FENCE_LINE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)*\|?\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_MD_LINK = re.compile(r"!?\[([^\]\n]+)\]\((https?://[^)\s]+)\)")
_MD_ITALIC = re.compile(r"(?<![*\w])\*(?![\s*])([^*\n]+?)(?<!\s)\*(?![*\w])")
_MD_BOLD = re.compile(r"\*\*(?!\s)(.+?)(?<!\s)\*\*|__(?!\s)(.+?)(?<!\s)__")
_MD_STRIKE = re.compile(r"~~(?!\s)(.+?)(?<!\s)~~")
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_GH_MENTION = re.compile(r"(?<![\w`/@])@([A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?)(?![\w-])")


def _prose(text: str, slack_users: Mapping[str, str]) -> str:
    text = esc(_HTML_TAG.sub("", text))
    text = _MD_LINK.sub(lambda m: f"<{m.group(2).replace('|', '%7C')}|{m.group(1).replace('|', '/')}>", text)
    text = _MD_ITALIC.sub(r"_\1_", text)
    text = _MD_BOLD.sub(lambda m: f"*{m.group(1) or m.group(2)}*", text)
    text = _MD_STRIKE.sub(r"~\1~", text)

    def mention(m: re.Match[str]) -> str:
        user = slack_users.get(m.group(1).lower())
        return f"<@{user}>" if user else m.group(0)

    return _GH_MENTION.sub(mention, text)


def to_mrkdwn(markdown: str, *, slack_users: Mapping[str, str] | None = None) -> str:
    """GitHub Markdown (what the bot writes on PRs) as Slack mrkdwn: links, bold/italic, headings, code blocks,
    `&<>` escaped, hidden markers dropped, and `@login` turned into a Slack mention for mapped users
    (`slack_users`: lower-cased GitHub login -> Slack user id)."""
    users = slack_users or {}
    out: list[str] = []
    fence: str | None = None
    for line in _HTML_COMMENT.sub("", markdown).split("\n"):
        m = _FENCE_LINE.match(line)
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not line.strip(" `~"):
                fence = None
                out.append("```")
            else:
                out.append(esc(line))
            continue
        if m:
            fence = m.group(1)
            out.append("```")  # Slack has no info string (```python): drop it
            continue
        if _TABLE_RULE.match(line) and "|" in line:
            continue  # a table's |---| rule means nothing in Slack; the rows still read as text
        if line.startswith("|"):
            line = line.replace("\\|", "|")  # a `|` escaped for GitHub's table cells reads as itself in Slack
        heading = _MD_HEADING.match(line)
        body = heading.group(1) if heading else line
        parts: list[str] = []
        last = 0
        for span in _CODE_SPAN.finditer(body):
            parts.append(_prose(body[last:span.start()], users))
            parts.append("`" + esc(span.group(2).replace("`", "'").strip()) + "`")
            last = span.end()
        parts.append(_prose(body[last:], users))
        text = "".join(parts)
        out.append(f"*{text}*" if heading and text else text)
    if fence is not None:
        out.append("```")
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()
