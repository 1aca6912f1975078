"""Builds DingTalk custom-robot payloads (markdown, actionCard, text) for runs and comparisons.

DingTalk's markdown is a small subset (headings, bold, links, lists, quotes; no tables, code or `<details>`), so
everything is written as lists. Every text contains "tunebot", the usual custom keyword of the robot's security
setting. Chinese is the default language here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..compare import Comparison, Conclusion
from . import fmt
from .common import CONCLUSION_ICON, STATE_ICON, VERDICT_ICON, colon, state_text
from .github import explain, headline, seed_lines
from .i18n import Language, normalize_language, t
from .slack import Milestone, milestone_text
from .views import ReportLinks, RunView

MAX_TEXT = 5000  # keep well inside the robot's message size; long lists are cut, never the headline
SUBJECTS_SHOWN = 10


@dataclass(frozen=True)
class DingTalkAt:
    """Whom a message mentions. A mobile or user id is also written into the text, or DingTalk does not notify."""

    user_ids: tuple[str, ...] = ()
    mobiles: tuple[str, ...] = ()
    all: bool = False

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"isAtAll": self.all}
        if self.mobiles:
            out["atMobiles"] = list(self.mobiles)
        if self.user_ids:
            out["atUserIds"] = list(self.user_ids)
        return out

    def suffix(self) -> str:
        names = [*self.mobiles, *self.user_ids]
        return " ".join(f"@{n}" for n in names)


def plain(text: str) -> str:
    """User text made inert in DingTalk markdown: one line, no markup characters that would restyle it."""
    flat = " ".join(text.split())
    for ch in "*_#>[]`|":
        flat = flat.replace(ch, {"*": "＊", "_": "_", "#": "＃", ">": "›", "[": "［", "]": "］", "`": "'",
                                 "|": "｜"}[ch])
    return flat


def _link(label: str, url: str | None) -> str:
    if not url or not url.startswith(("https://", "http://")):
        return label
    return f"[{label}]({url.replace(' ', '%20').replace(')', '%29')})"


def _finish(text: str, at: DingTalkAt | None) -> str:
    text = text.rstrip()
    if len(text) > MAX_TEXT:
        text = text[: MAX_TEXT - 1] + "…"
    if at is not None and at.suffix():
        text += "\n\n" + at.suffix()
    return text


def _run_text(view: RunView, lang: Language) -> tuple[str, str]:
    c = colon(lang)
    title = "tunebot" + (" " if lang == "en" else "") + t(lang, "card.title", run=view.run_id,
                                                               state=state_text(view, lang)).removeprefix("tunebot")
    lines = [f"#### {STATE_ICON[view.state]} {plain(title)}", ""]
    lines.append(f"- {t(lang, 'status.col.command')}{c}{plain(view.command)}")
    where = plain(f"{view.repo}@{fmt.short_sha(view.sha)}")
    requested = t(lang, "card.requested", actor=plain(view.actor), where=where)
    lines.append("- " + requested[:1].upper() + requested[1:])
    model = plain(view.model) + (f" · {plain(view.tuner)}" if view.tuner else "")
    lines.append(f"- {t(lang, 'card.col.model')}{c}{model}")
    if view.hyper:
        lines.append(f"- {t(lang, 'card.col.hyper')}{c}" + plain(fmt.hyper(view.hyper)))
    p = view.progress
    if p is not None and not view.is_waiting:
        bits = [f"{fmt.progress_bar(p.step, p.total, 10)} {fmt.percent(p.step, p.total)}%",
                t(lang, "card.step", step=p.step, total=p.total)]
        if p.loss is not None:
            bits.append(t(lang, "card.loss", loss=fmt.number(p.loss)))
        if view.state == "running" and p.eta_s is not None:
            bits.append(t(lang, "card.eta", eta=fmt.duration(p.eta_s, lang)))
        lines.append(f"- {t(lang, 'card.progress')}{c}" + " · ".join(bits))
    if view.scores:
        lines += ["", f"**{t(lang, 'card.scores')}**", ""]
        for name in sorted(view.scores):
            s = view.scores[name]
            base = view.baseline.get(name)
            extra = ""
            if base is not None:
                pair = (t(lang, "card.col.baseline") + f" {fmt.points(base.points)}",
                        f"Δ {fmt.signed(s.points - base.points)}")
                extra = f"（{pair[0]}，{pair[1]}）" if lang == "zh" else f" ({pair[0]}, {pair[1]})"
            lines.append(f"- {plain(fmt.bench_name(name))}{c}**{fmt.points(s.points)}**{extra}")
    if view.state in ("failed", "cancelled") and view.reason:
        reason = fmt.shorten(" ".join(fmt.tail_lines(view.reason, lines=5, chars=600).split()), 600)
        lines += ["", f"> {t(lang, 'card.reason')}{c}{plain(reason)}"]
    links = [_link(t(lang, "links.actions"), view.actions_url)] if view.actions_url else []
    links += [_link(plain(a.label), a.url) for a in view.artifacts]
    if links:
        lines += ["", " · ".join(links)]
    return plain(title), "\n".join(lines)


def dingtalk_run_markdown(view: RunView, language: str = "zh", *, at: DingTalkAt | None = None) -> dict[str, Any]:
    """A `markdown` robot message for a run: state, progress and scores as lists, links at the end."""
    lang = normalize_language(language)
    title, text = _run_text(view, lang)
    body: dict[str, Any] = {"msgtype": "markdown", "markdown": {"title": title, "text": _finish(text, at)}}
    if at is not None:
        body["at"] = at.payload()
    return body


def dingtalk_run_action_card(view: RunView, language: str = "zh", *, url: str | None = None) -> dict[str, Any]:
    """An `actionCard` robot message with one button to the run (the Actions run unless `url` is given)."""
    lang = normalize_language(language)
    target = url or view.actions_url
    if not target or not target.startswith(("https://", "http://")):
        raise ValueError(f"run {view.run_id}: an actionCard needs an http(s) URL for its button (no Actions URL)")
    title, text = _run_text(view, lang)
    return {"msgtype": "actionCard", "actionCard": {
        "title": title, "text": _finish(text, None), "btnOrientation": "0",
        "singleTitle": t(lang, "ms.view"), "singleURL": target,
    }}


def dingtalk_milestone(view: RunView, milestone: Milestone | str, language: str = "zh", *,
                       at: DingTalkAt | None = None) -> dict[str, Any]:
    """A short `text` robot message for a milestone of the run."""
    lang = normalize_language(language)
    text = milestone_text(view, milestone, lang)
    if "tunebot" not in text:
        text = f"tunebot {text}" if lang == "en" else f"tunebot：{text}"
    body: dict[str, Any] = {"msgtype": "text", "text": {"content": _finish(text, at)}}
    if at is not None:
        body["at"] = at.payload()
    return body


def _comparison_text(comparison: Comparison, conclusion: Conclusion, lang: Language,
                     links: ReportLinks | None) -> tuple[str, str]:
    c = colon(lang)
    head = headline(comparison, lang)
    title = f"tunebot{c}{t(lang, 'cmp.title')}"
    lines = [f"#### {CONCLUSION_ICON[conclusion.conclusion]} {plain(title)}", "", f"**{plain(head)}**", ""]
    lines.append(f"> {t(lang, 'conclusion.' + conclusion.conclusion)}{c}{plain(explain(conclusion, lang))}")
    lines.append("")
    if comparison.base_sha:  # a recipe comparison: both commits and what differed
        lines.append(plain(t(lang, "cmp.commits", base=fmt.short_sha(comparison.base_sha),
                             new=fmt.short_sha(comparison.new_sha)).replace("`", "")))
        lines += [f"- {plain(ch)}" for ch in comparison.changes[:10]]
        lines.append("")
    seeded = seed_lines(comparison, lang)
    if seeded:
        lines += [plain(seeded[0].strip("*")), *(f"- {plain(x)}" for x in seeded[1:]), ""]
    sep = "，" if lang == "zh" else ", "
    for b in comparison.benchmarks:
        bits = [f"{fmt.points(b.base_score)} → {fmt.points(b.new_score)}（{fmt.signed(b.delta)}）" if lang == "zh"
                else f"{fmt.points(b.base_score)} → {fmt.points(b.new_score)} ({fmt.signed(b.delta)})",
                f"n = {fmt.thousands(b.n)}", f"{VERDICT_ICON[b.verdict]} {t(lang, 'verdict.' + b.verdict)}"]
        if b.p_value is not None:
            bits += [fmt.p_clause(b.p_value), f"95% CI {fmt.ci(b.ci_low, b.ci_high)}"]
        lines.append(f"- **{plain(fmt.bench_name(b.benchmark))}**{c}" + sep.join(bits))
        changed = [s for s in b.subjects if s.verdict in ("improved", "regressed")]
        changed.sort(key=lambda s: (-abs(s.delta), s.subject))
        if changed and b.seeds is not None and b.seeds.seeds:
            lines.append("    - " + t(lang, "cmp.first_seed", seed=b.seeds.seeds[0]).strip(" —"))
        for s in changed[:SUBJECTS_SHOWN]:
            inner = sep.join([t(lang, "verdict." + s.verdict), fmt.p_clause(s.p_adjusted)])
            paren = f"（{inner}）" if lang == "zh" else f" ({inner})"
            lines.append(f"    - {plain(s.subject)}{c}{fmt.signed(s.delta)}{paren}")
        if len(changed) > SUBJECTS_SHOWN:
            lines.append("    - " + t(lang, "cmp.flips.more", more=len(changed) - SUBJECTS_SHOWN))
    if links is not None:
        items = [_link(t(lang, "links.actions"), links.actions_url) if links.actions_url else "",
                 _link(t(lang, "links.artifacts"), links.artifacts_url) if links.artifacts_url else ""]
        if any(items):
            lines += ["", " · ".join(x for x in items if x)]
    return plain(title), "\n".join(lines)


def dingtalk_comparison_markdown(
    comparison: Comparison,
    conclusion: Conclusion,
    language: str = "zh",
    links: ReportLinks | None = None,
    *,
    at: DingTalkAt | None = None,
) -> dict[str, Any]:
    """A `markdown` robot message for a comparison: headline, conclusion, one list item per benchmark."""
    lang = normalize_language(language)
    title, text = _comparison_text(comparison, conclusion, lang, links)
    body: dict[str, Any] = {"msgtype": "markdown", "markdown": {"title": title, "text": _finish(text, at)}}
    if at is not None:
        body["at"] = at.payload()
    return body


def dingtalk_comparison_action_card(
    comparison: Comparison,
    conclusion: Conclusion,
    url: str,
    language: str = "zh",
    *,
    button: str | None = None,
) -> dict[str, Any]:
    """An `actionCard` for a comparison with one button (usually to the PR comment with the full report)."""
    lang = normalize_language(language)
    if not url.startswith(("https://", "http://")):
        raise ValueError("an actionCard needs an http(s) URL for its button")
    title, text = _comparison_text(comparison, conclusion, lang, None)
    return {"msgtype": "actionCard", "actionCard": {
        "title": title, "text": _finish(text, None), "btnOrientation": "0",
        "singleTitle": button or t(lang, "ms.view_report"), "singleURL": url,
    }}
