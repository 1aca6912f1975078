"""Renders tunebot's GitHub texts: the run card, the comparison report, /status, /leaderboard, cache replies, checks."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..compare import BenchmarkComparison, Comparison, Conclusion
from ..stats import wilson_interval
from . import fmt
from .chart import clean_points, loss_chart
from .common import CONCLUSION_ICON, STATE_ICON, VERDICT_ICON, colon, state_text
from .i18n import Language, normalize_language, t
from .split import GITHUB_COMMENT_LIMIT, measure, split_comment
from .views import LeaderboardEntry, ReportLinks, RunView, ScoreView

CHECK_TITLE_LIMIT = 255
CHECK_TEXT_LIMIT = 65535
FLIPS_SHOWN = 40
_HEADER_ROOM = 200  # marker and "continued" line added to each part after splitting


def run_marker(run_id: str) -> str:
    """The hidden first line that identifies a run's sticky comment."""
    return f"<!-- tunebot:run:{run_id} -->"


def compare_marker(key: str, part: int = 1) -> str:
    """The hidden first line of a comparison report comment; later parts carry their number."""
    return f"<!-- tunebot:compare:{key} -->" if part == 1 else f"<!-- tunebot:compare:{key}:part{part} -->"


# --- shared pieces ------------------------------------------------------------------------------------------------


def _progress_line(view: RunView, lang: Language) -> str | None:
    p = view.progress
    if p is None:
        return None
    bits = [f"`{fmt.progress_bar(p.step, p.total)}` {fmt.percent(p.step, p.total)}%",
            t(lang, "card.step", step=p.step, total=p.total)]
    if p.epoch is not None and math.isfinite(p.epoch):
        bits.append(t(lang, "card.epoch", epoch=f"{p.epoch:.2f}"))
    if p.loss is not None:
        bits.append(t(lang, "card.loss", loss=fmt.number(p.loss)))
    if p.learning_rate is not None:
        bits.append(t(lang, "card.lr", lr=fmt.number(p.learning_rate)))
    if view.state == "running" and p.eta_s is not None and math.isfinite(p.eta_s):
        bits.append(t(lang, "card.eta", eta=fmt.duration(p.eta_s, lang)))
    if p.samples_per_s is not None and math.isfinite(p.samples_per_s):
        bits.append(t(lang, "card.speed", speed=fmt.number(p.samples_per_s)))
    return " · ".join(bits)


def _hyper_text(view: RunView) -> str:
    return fmt.code(fmt.hyper(view.hyper)) if view.hyper else "—"


def _score_rows(scores: Mapping[str, ScoreView], baseline: Mapping[str, ScoreView]) -> list[list[str]]:
    rows: list[list[str]] = []
    for name in sorted(scores):
        s = scores[name]
        base = baseline.get(name)
        rows.append([
            fmt.cell(fmt.bench_name(name)),
            fmt.thousands(s.n),
            fmt.points(s.points),
            fmt.points(base.points) if base else "—",
            f"**{fmt.signed(s.points - base.points)}**" if base else "—",
        ])
    return rows


def _change(b: BenchmarkComparison, lang: Language, first: bool) -> str:
    name = fmt.bench_name(b.benchmark)
    if lang == "en":
        return f"{name} {fmt.signed(b.delta)}"
    verb = "提升" if b.delta > 0 else "下降"
    size = f"{abs(round(b.delta, 1)):.1f}个百分点"
    if round(b.delta, 1) == 0:
        return f"本次PR未改变{name}成绩" if first else f"{name}成绩不变"
    # The lead item reads like a sentence ("本次PR提升CMMLU成绩2.3个百分点"), the rest as clauses.
    return f"本次PR{verb}{name}成绩{size}" if first else f"{name}成绩{verb}{size}"


def _headline_item(b: BenchmarkComparison, lang: Language, first: bool) -> str:
    change = _change(b, lang, first)
    if b.verdict == "untested":
        return t(lang, "head.untested", change=change)
    if b.significant:
        return t(lang, "head.significant", change=change, p=fmt.p_clause(b.p_value))
    if round(b.delta, 1) == 0:
        return change if lang == "zh" else t(lang, "head.unchanged", bench=fmt.bench_name(b.benchmark))
    return t(lang, "head.noise", change=change)


def headline(comparison: Comparison, language: str = "en") -> str:
    """One line, most important first: "CMMLU +2.3 (p = 0.01, significant) · C-Eval −0.4 (within noise)";
    zh: "本次PR提升CMMLU成绩2.3个百分点（显著，p = 0.01）；C-Eval成绩下降0.4个百分点（在噪声范围内）"."""
    lang = normalize_language(language)
    if not comparison.benchmarks:
        return t(lang, "head.nothing")
    ordered = sorted(comparison.benchmarks, key=lambda b: (not b.significant, -abs(b.delta), b.benchmark))
    return t(lang, "head.sep").join(_headline_item(b, lang, i == 0) for i, b in enumerate(ordered))


def _benchmark_table(comparison: Comparison, lang: Language) -> str:
    rows = []
    for b in comparison.benchmarks:
        rows.append([
            fmt.cell(fmt.bench_name(b.benchmark)),
            fmt.thousands(b.n),
            fmt.points(b.base_score),
            fmt.points(b.new_score),
            f"**{fmt.signed(b.delta)}**",
            fmt.ci(b.ci_low, b.ci_high),
            fmt.p_value(b.p_value),
            f"{VERDICT_ICON[b.verdict]} {t(lang, 'verdict.' + b.verdict)}",
        ])
    p_col = "cmp.col.p_seeds" if any(b.seeds is not None for b in comparison.benchmarks) else "cmp.col.p"
    headers = [t(lang, k) for k in ("cmp.col.benchmark", "cmp.col.n", "cmp.col.base", "cmp.col.new",
                                    "cmp.col.delta", "cmp.col.ci", p_col, "cmp.col.verdict")]
    return fmt.table(headers, rows, "lrrrrlrl")


def _min_detectable(b: BenchmarkComparison) -> float:
    """Roughly the smallest change these two runs could show as significant (80 % power, α = 5 %), in points.

    For paired outcomes the standard error of Δ is about √(b + c) / n: it is the questions that flip, not n alone,
    that set the noise floor.
    """
    flips = b.counts.b + b.counts.c
    return 2.8 * math.sqrt(flips) / b.n * 100 if b.n else math.inf


def _notes(comparison: Comparison, lang: Language) -> list[str]:
    notes: list[str] = []
    for b in comparison.benchmarks:
        name = fmt.bench_name(b.benchmark)
        if not b.paired:
            notes.append(t(lang, "cmp.note.unpaired", bench=name))
        elif not b.same_questions:
            notes.append(t(lang, "cmp.note.common", bench=name, only_base=b.only_in_base, only_new=b.only_in_new,
                           n=fmt.thousands(b.n)))
        if b.config_differs:
            notes.append(t(lang, "cmp.note.config", bench=name))
        if b.paired and b.verdict == "within_noise" and b.n and abs(b.delta) >= 0.05:
            notes.append(t(lang, "cmp.note.small", bench=name, n=fmt.thousands(b.n),
                           flips=b.counts.b + b.counts.c, mde=f"{_min_detectable(b):.1f}"))
    tested = [b for b in comparison.benchmarks if b.paired and b.subjects_tested > 1]
    if tested:
        sep = "，" if lang == "zh" else ", "
        m = sep.join(f"{fmt.bench_name(b.benchmark)} {b.subjects_tested}" for b in tested)
        notes.append(t(lang, "cmp.note.holm", m=m, alpha=f"{comparison.alpha:g}"))
    if comparison.only_in_base:
        notes.append(t(lang, "cmp.note.only_base", names=", ".join(fmt.bench_name(x) for x in comparison.only_in_base)))
    if comparison.only_in_new:
        notes.append(t(lang, "cmp.note.only_new", names=", ".join(fmt.bench_name(x) for x in comparison.only_in_new)))
    return notes


_VERDICT_ORDER = {"regressed": 0, "improved": 1, "within_noise": 2, "untested": 3}


def _first_seed_note(b: BenchmarkComparison, lang: Language) -> str:
    """In a multi-seed comparison the per-subject table and the flipped questions are those of one pair of runs (the
    first seed's on each side), not of all seeds: say which."""
    if b.seeds is None or not b.seeds.seeds:
        return ""
    return t(lang, "cmp.first_seed", seed=b.seeds.seeds[0])


def _subjects_details(b: BenchmarkComparison, lang: Language) -> str | None:
    if not b.subjects:
        return None
    improved = sum(1 for s in b.subjects if s.verdict == "improved")
    regressed = sum(1 for s in b.subjects if s.verdict == "regressed")
    summary = t(lang, "cmp.subjects", bench=fmt.bench_name(b.benchmark), m=len(b.subjects), improved=improved,
                regressed=regressed) + _first_seed_note(b, lang)
    ordered = sorted(b.subjects, key=lambda s: (_VERDICT_ORDER[s.verdict], -abs(s.delta), s.subject))
    rows = [[
        fmt.cell(s.subject), fmt.thousands(s.n), fmt.points(s.base_score), fmt.points(s.new_score),
        fmt.signed(s.delta), fmt.ci(s.ci_low, s.ci_high), fmt.p_value(s.p_adjusted),
        f"{VERDICT_ICON[s.verdict]} {t(lang, 'verdict.' + s.verdict)}",
    ] for s in ordered]
    headers = [t(lang, k) for k in ("cmp.col.subject", "cmp.col.n", "cmp.col.base", "cmp.col.new",
                                    "cmp.col.delta", "cmp.col.ci", "cmp.col.p_holm", "cmp.col.verdict")]
    return "\n".join([f"<details><summary>{fmt.html_text(summary)}</summary>", "",
                      fmt.table(headers, rows, "lrrrrlrl"), "", "</details>"])


def _flip_list(ids: Sequence[str], cap: int, lang: Language) -> str:
    shown = ", ".join(fmt.code(q) for q in ids[:cap])
    if len(ids) > cap:
        shown += " " + t(lang, "cmp.flips.more", more=len(ids) - cap)
    return shown


def _flips_details(b: BenchmarkComparison, lang: Language, cap: int = FLIPS_SHOWN) -> str | None:
    rw, wr = b.right_to_wrong, b.wrong_to_right
    if not rw and not wr:
        return None
    summary = t(lang, "cmp.flips", bench=fmt.bench_name(b.benchmark), total=len(rw) + len(wr), rw=len(rw),
                wr=len(wr)) + _first_seed_note(b, lang)
    lines = [f"<details><summary>{fmt.html_text(summary)}</summary>", ""]
    if rw:
        lines += [f"**{t(lang, 'cmp.flips.rw')}** ({len(rw)}): {_flip_list(rw, cap, lang)}", ""]
    if wr:
        lines += [f"**{t(lang, 'cmp.flips.wr')}** ({len(wr)}): {_flip_list(wr, cap, lang)}", ""]
    lines.append("</details>")
    return "\n".join(lines)


def _links_line(links: ReportLinks | None, lang: Language) -> str | None:
    if links is None:
        return None
    items = [
        fmt.link(t(lang, "links.actions"), links.actions_url) if links.actions_url else "",
        fmt.link(t(lang, "links.artifacts"), links.artifacts_url) if links.artifacts_url else "",
        fmt.link(t(lang, "links.base"), links.base_url) if links.base_url else "",
        fmt.link(t(lang, "links.new"), links.new_url) if links.new_url else "",
    ]
    items = [i for i in items if i]
    return " · ".join(items) if items else None


def _conclusion_line(conclusion: Conclusion, lang: Language) -> str:
    return t(lang, "cmp.check", conclusion=f"{CONCLUSION_ICON[conclusion.conclusion]} "
             f"{t(lang, 'conclusion.' + conclusion.conclusion)}",
             rule=conclusion.rule.replace("`", "'"), explanation=explain(conclusion, lang))


def explain(conclusion: Conclusion, language: str = "en") -> str:
    """Why the check concluded as it did, in the reader's language (from the structured fields of `decide`)."""
    lang = normalize_language(language)
    name = fmt.bench_name(conclusion.benchmark or "")
    d = conclusion.delta if conclusion.delta is not None else 0.0
    thr = f"{conclusion.threshold:g}" if conclusion.threshold is not None else ""
    p = fmt.p_clause(conclusion.p_value)
    english = {
        "no_rules": "No benchmark regressed significantly.",
        "no_rules_regressed": f"{name} regressed significantly ({fmt.signed(d, 2)} points, {p}); no regression "
                              "rules are configured, so the check does not fail.",
        "rules_met": "Every benchmark met its regression rule.",
        "loss_exceeded": f"{name} lost {abs(d):.2f} points, more than the allowed {thr}.",
        "loss_within_noise": f"{name} lost {abs(d):.2f} points (more than {thr}), but the loss is within noise ({p}).",
        "gain_missing": f"{name} changed by {fmt.signed(d, 2)} points, short of the required gain of {thr}.",
        "gain_not_significant": f"{name} gained {fmt.signed(d, 2)} points, but the gain is not significant ({p}).",
        "untestable": f"{name} requires significance, but the runs have no per-question outcomes to test.",
        "nothing_compared": "The two runs share no benchmark; nothing was compared.",
    }
    if lang == "en":
        return english.get(conclusion.reason, conclusion.explanation)
    texts = {
        "no_rules": "没有评测集出现显著下降。",
        "no_rules_regressed": f"{name}显著下降（{fmt.signed(d, 2)} 个百分点，{p}）；"
                              "未配置回归规则，因此检查不判为失败。",
        "rules_met": "所有评测集均满足回归规则。",
        "loss_exceeded": f"{name}下降 {abs(d):.2f} 个百分点，超过允许的 {thr} 个百分点。",
        "loss_within_noise": f"{name}下降 {abs(d):.2f} 个百分点（超过 {thr}），但在噪声范围内（{p}）。",
        "gain_missing": f"{name}变化 {fmt.signed(d, 2)} 个百分点，未达到要求的 {thr} 个百分点提升。",
        "gain_not_significant": f"{name}提升 {fmt.signed(d, 2)} 个百分点，但不显著（{p}）。",
        "untestable": f"{name}要求显著性检验，但两次运行缺少逐题结果，无法检验。",
        "nothing_compared": "两次运行没有共同的评测集，无法比较。",
    }
    return texts.get(conclusion.reason, conclusion.explanation)


def _method_line(comparison: Comparison, lang: Language) -> str:
    first = next((b for b in comparison.benchmarks if b.paired), None)
    resamples = first.resamples if first else 0
    seed = first.seed if first else 0
    return "<sub>" + t(lang, "cmp.method", resamples=resamples, seed=seed, alpha=f"{comparison.alpha:g}") + "</sub>"


def comparison_markdown(
    comparison: Comparison,
    conclusion: Conclusion,
    language: str = "en",
    links: ReportLinks | None = None,
    *,
    flips_cap: int = FLIPS_SHOWN,
    loss: Sequence[tuple[int, float]] = (),
) -> str:
    """The whole comparison report as one Markdown text (headline first), before any splitting.

    `loss` is the new run's training loss by step; when given, its curve is drawn after the subject tables.
    """
    lang = normalize_language(language)
    icon = CONCLUSION_ICON[conclusion.conclusion]
    blocks = [f"### {icon} {fmt.defuse(headline(comparison, lang))}"]
    blocks.append(_conclusion_line(conclusion, lang))
    if comparison.benchmarks:
        blocks.append(t(lang, "cmp.against", new=fmt.code(comparison.new_label or comparison.new_run),
                        base=fmt.code(comparison.base_label or comparison.base_run)))
        recipe = recipe_block(comparison, lang)
        if recipe:
            blocks.append(recipe)
        blocks.append(_benchmark_table(comparison, lang))
    notes = _notes(comparison, lang)
    if notes:
        blocks.append(f"**{t(lang, 'cmp.notes')}**\n" + "\n".join(f"- {n}" for n in notes))
    line = _links_line(links, lang)
    if line:
        blocks.append(line)
    for b in comparison.benchmarks:
        details = _subjects_details(b, lang)
        if details:
            blocks.append(details)
    chart = _loss_block(loss, lang)
    if chart:
        blocks.append(chart)
    for b in comparison.benchmarks:
        details = _flips_details(b, lang, flips_cap)
        if details:
            blocks.append(details)
    if comparison.benchmarks:
        blocks.append(_method_line(comparison, lang))
    return "\n\n".join(blocks) + "\n"


def recipe_block(comparison: Comparison, lang: Language) -> str | None:
    """Both commits and the recipe diff of a `/compare <ref>` report; for other comparisons only the per-seed lines
    of a multi-seed one (e.g. `/train … seeds=N` against the base model), else None."""
    if not comparison.base_sha:
        seeded = seed_lines(comparison, lang)
        return "\n".join(f"- {line}" for line in seeded) if seeded else None
    head = t(lang, "cmp.commits", base=fmt.code(fmt.short_sha(comparison.base_sha)),
             new=fmt.code(fmt.short_sha(comparison.new_sha)))
    seeded = seed_lines(comparison, lang)
    if seeded:
        head += "\n\n" + "\n".join(f"- {line}" for line in seeded)
    else:
        # Each side is one training run: McNemar measures the evaluation's noise, not the training's (another seed
        # could move the score too). Say so rather than let a single seed pass for a measured effect.
        head += " " + t(lang, "cmp.single_seed")
    if not comparison.changes:
        return head
    return f"{head}\n\n**{t(lang, 'cmp.differs')}**\n" + "\n".join(f"- {fmt.code(c)}" for c in comparison.changes)


def seed_stat(scores: Sequence[float]) -> str:
    """Mean ± sample sd of per-seed scores, in points."""
    mean = sum(scores) / len(scores)
    sd = math.sqrt(sum((x - mean) ** 2 for x in scores) / (len(scores) - 1)) if len(scores) > 1 else 0.0
    return f"{fmt.points(mean)} ± {fmt.points(sd)}"


def seed_lines(comparison: Comparison, lang: Language) -> list[str]:
    """A multi-seed comparison's per-seed scores and mean ± sd per benchmark, after the method note ([] with one
    seed per side)."""
    seeded = [b for b in comparison.benchmarks if b.seeds is not None]
    if not seeded:
        return []
    first = seeded[0].seeds
    assert first is not None
    out = [t(lang, "cmp.seeds", k=len(first.seeds), seeds=", ".join(str(s) for s in first.seeds))]
    for b in seeded:
        sc = b.seeds
        assert sc is not None
        out.append(t(lang, "cmp.seed_line", bench=fmt.bench_name(b.benchmark),
                     base=" / ".join(fmt.points(x) for x in sc.base_scores), base_stat=seed_stat(sc.base_scores),
                     new=" / ".join(fmt.points(x) for x in sc.new_scores), new_stat=seed_stat(sc.new_scores)))
    return out


def _loss_block(loss: Sequence[tuple[int, float]], lang: Language) -> str | None:
    chart = loss_chart(loss, title=t(lang, "card.loss_curve"), x_label=t(lang, "card.chart.step"),
                       y_label=t(lang, "card.chart.loss")) if loss else None
    if chart is None:
        return None
    _, dropped = clean_points(loss)
    return chart + (f"\n\n<sub>{t(lang, 'card.dropped', k=dropped)}</sub>" if dropped else "")


def render_comparison(
    comparison: Comparison,
    conclusion: Conclusion,
    language: str = "en",
    links: ReportLinks | None = None,
    *,
    key: str | None = None,
    limit: int = GITHUB_COMMENT_LIMIT,
    max_parts: int | None = None,
    loss: Sequence[tuple[int, float]] = (),
) -> list[str]:
    """The comparison report as ready-to-post comments: each starts with its hidden marker and fits `limit`.

    The first part holds the marker `<!-- tunebot:compare:<key> -->` (key defaults to "<base run>..<new run>"),
    the headline, the conclusion and the benchmark table; details that do not fit follow in later parts.
    """
    lang = normalize_language(language)
    marker_key = key or f"{comparison.base_run}..{comparison.new_run}"
    body = comparison_markdown(comparison, conclusion, lang, links, loss=loss)
    omitted = t(lang, "split.omitted", k="{k}")
    parts = split_comment(body, limit - _HEADER_ROOM, max_parts=max_parts, omitted_note=omitted,
                          continued=t(lang, "split.continued"))
    total = len(parts)
    out: list[str] = []
    for i, part in enumerate(parts, start=1):
        if i == 1:
            out.append(f"{compare_marker(marker_key)}\n{part}")
        else:
            out.append(f"{compare_marker(marker_key, i)}\n{t(lang, 'cmp.continued', i=i, n=total)}\n\n{part}")
    return out


def render_provenance(language: str, *, recipe_key: str | None, datasets: Sequence[tuple[str, str]],
                      eval_keys: Mapping[str, str], adapter_sha256: str | None, input_adapter: str | None,
                      resolved: Mapping[str, Any] | None = None) -> str:
    """`/status <run>`'s identities: the recipe key and each dataset's identity, each benchmark's result key, the
    sha256 of the adapter the run saved (or was given), and what the runner resolved (`resolved`: the signed result
    events' `model` and `datasets`)."""
    lang = normalize_language(language)
    lines = [f"**{t(lang, 'prov.title')}**"]
    if recipe_key:
        lines.append(f"- {t(lang, 'prov.recipe')}{colon(lang)}{fmt.code(recipe_key[:16])}")
    for name, ident in datasets:
        lines.append(f"  - {fmt.code(name)}{colon(lang)}{fmt.code(ident)}")
    model = (resolved or {}).get("model")
    if isinstance(model, Mapping) and model.get("id"):
        asked = model.get("requested") or "—"
        lines.append(f"- {t(lang, 'prov.model')}{colon(lang)}{fmt.code(str(model['id']))} @ "
                     f"{fmt.code(str(model.get('revision') or '—'))} ({t(lang, 'prov.requested')} "
                     f"{fmt.code(str(asked))})")
    read = (resolved or {}).get("datasets")
    if isinstance(read, Sequence) and read:
        lines.append(f"- {t(lang, 'prov.data_read')}{colon(lang)}")
        for d in read:
            if not isinstance(d, Mapping):
                continue
            if d.get("blob"):
                what = f"blob {d['blob']}"
            elif d.get("source") in ("modelscope", "huggingface"):
                what = (f"{d.get('id')} @ {d.get('revision') or t(lang, 'prov.unresolved')} "
                        f"({t(lang, 'prov.requested')} {d.get('requested') or '—'})")
            else:
                what = f"sha256 {str(d.get('sha256') or '—')[:16]}"
            lines.append(f"  - {fmt.code(str(d.get('name')))}{colon(lang)}{fmt.code(what)}")
    for bench, key in sorted(eval_keys.items()):
        lines.append(f"- {t(lang, 'prov.eval', bench=fmt.bench_name(bench))}{colon(lang)}{fmt.code(key[:16])}")
    if adapter_sha256:
        lines.append(f"- {t(lang, 'prov.adapter')}{colon(lang)}{fmt.code(adapter_sha256)}")
    if input_adapter:
        lines.append(f"- {t(lang, 'prov.input_adapter')}{colon(lang)}{fmt.code(input_adapter)}")
    return "\n".join(lines)


# --- run card -----------------------------------------------------------------------------------------------------


def render_run_card(view: RunView, language: str = "en", *, sticky: bool = True) -> str:
    """The run's sticky comment, re-rendered whole on every update (the bot edits it in place). `sticky=False`
    leaves out the hidden marker, for a copy in a reply (`/status <run>`) that must never be taken for the card."""
    lang = normalize_language(language)
    out = [run_marker(view.run_id)] if sticky else []
    out.append(f"### {STATE_ICON[view.state]} "
               + t(lang, "card.title", run=fmt.code(view.run_id), state=state_text(view, lang)))
    where = fmt.code(f"{view.repo}@{fmt.short_sha(view.sha)}")
    out.append(f"{fmt.code(view.command)} · " + t(lang, "card.requested", actor=fmt.cell(view.actor), where=where))
    headers = [t(lang, "card.col.model"), t(lang, "card.col.kind"), t(lang, "card.col.tuner"),
               t(lang, "card.col.hyper")]
    out.append(fmt.table(headers, [[fmt.cell(view.model), fmt.cell(view.kind or "—"),
                                    fmt.cell(view.tuner or "—"), _hyper_text(view)]]))
    if view.is_waiting:
        out.append(f"*{t(lang, 'card.waiting')}*")
    progress = _progress_line(view, lang)
    if progress and not view.is_waiting:
        out.append(f"**{t(lang, 'card.progress')}**{colon(lang)}{progress}")
    if view.scores:
        headers = [t(lang, "cmp.col.benchmark"), t(lang, "cmp.col.n"), t(lang, "card.col.score"),
                   t(lang, "card.col.baseline") + (f" ({fmt.cell(view.baseline_label)})" if view.baseline_label
                                                   else ""),
                   t(lang, "cmp.col.delta")]
        out.append(f"**{t(lang, 'card.scores')}**\n\n"
                   + fmt.table(headers, _score_rows(view.scores, view.baseline), "lrrrr"))
    if view.eval_fallback:
        out.append(f"*{t(lang, 'card.served_fallback')}*")
    if view.state in ("failed", "cancelled") and view.reason:
        reason = fmt.fenced(fmt.tail_lines(view.reason), "text")
        out.append(f"**{t(lang, 'card.reason')}**{colon(lang).rstrip()}\n\n{reason}")
    chart = _loss_block(view.loss, lang) if view.is_final else None
    if chart:
        out.append(chart)
    tracking = _tracker_note(view, lang)
    if tracking:
        out.append(tracking)
    links = [fmt.link(t(lang, "links.actions"), view.actions_url)] if view.actions_url else []
    if view.tracker_url:
        links.append(fmt.link(t(lang, "links.tracker", tool=TRACKER_NAMES.get(view.tracker or "", "tracker")),
                              view.tracker_url))
    links += [fmt.link(fmt.cell(a.label), a.url) for a in view.artifacts]
    if links:
        out.append(" · ".join(links))
    times = _times(view, lang)
    if times:
        out.append(f"<sub>{times}</sub>")
    text = "\n\n".join(out) + "\n"
    if measure(text) > GITHUB_COMMENT_LIMIT:
        # Only an absurd reason or hyper-parameter list can get here; keep the card, drop the overflow.
        text = split_comment(text, GITHUB_COMMENT_LIMIT - 100)[0]
    return text


TRACKER_NAMES = {"tensorboard": "TensorBoard", "wandb": "Weights & Biases", "swanlab": "SwanLab", "mlflow": "MLflow"}


def _tracker_note(view: RunView, lang: Language) -> str | None:
    """Where a finished training run's curves are when there is no tracker link: TensorBoard's files in the artifact,
    or why the configured tracker's page is missing (it printed none: usually its credentials on the runner)."""
    if not view.is_final or not view.loss or view.tracker_url or view.tracker is None:
        return None
    if view.tracker == "tensorboard":
        artifact = fmt.code(f"tunebot-{view.run_id}")
        return t(lang, "card.tracker.tensorboard",
                 artifact=fmt.link(artifact, view.actions_url) if view.actions_url else artifact)
    return t(lang, "card.tracker.missing", tool=TRACKER_NAMES.get(view.tracker, view.tracker))


def _times(view: RunView, lang: Language) -> str:
    bits: list[str] = []
    if view.started_at is not None:
        bits.append(t(lang, "card.started", t=fmt.timestamp(view.started_at)))
        if view.finished_at is not None:
            bits.append(t(lang, "card.finished", t=fmt.timestamp(view.finished_at),
                          d=fmt.duration(view.finished_at - view.started_at, lang)))
        elif view.updated_at is not None and view.state == "running":
            bits.append(t(lang, "card.elapsed", d=fmt.duration(view.updated_at - view.started_at, lang)))
    if view.updated_at is not None and view.finished_at is None:
        bits.append(t(lang, "card.updated", t=fmt.timestamp(view.updated_at)))
    return " · ".join(bits)


# --- /status, cached reply, /leaderboard ---------------------------------------------------------------------------


def render_status_list(views: Sequence[RunView], language: str = "en", *, limit: int = 30) -> str:
    """The /status reply: a table of the PR's runs, newest first."""
    lang = normalize_language(language)
    if not views:
        return t(lang, "status.empty") + "\n"
    ordered = sorted(views, key=lambda v: (-(v.started_at or math.inf), v.run_id))
    rows = []
    for v in ordered[:limit]:
        prog = "—"
        if v.progress and v.state == "running":
            prog = f"`{fmt.progress_bar(v.progress.step, v.progress.total, 10)}` " \
                   f"{fmt.percent(v.progress.step, v.progress.total)}%"
        elif v.scores:
            prog = ", ".join(f"{fmt.bench_name(k)} {fmt.points(s.points)}" for k, s in sorted(v.scores.items()))
        links = [fmt.link(t(lang, "links.actions"), v.actions_url)] if v.actions_url else []
        links += [fmt.link(fmt.cell(a.label), a.url) for a in v.artifacts[:3]]
        rows.append([
            fmt.code(v.run_id), fmt.code(fmt.shorten(v.command, 60)),
            f"{STATE_ICON[v.state]} {fmt.cell(state_text(v, lang))}", fmt.cell(prog) if v.scores else prog,
            fmt.timestamp(v.started_at) if v.started_at is not None else "—", " · ".join(links) or "—",
        ])
    headers = [t(lang, k) for k in ("status.col.run", "status.col.command", "status.col.state",
                                    "status.col.progress", "status.col.started", "status.col.links")]
    text = f"### {t(lang, 'status.title')}\n\n" + fmt.table(headers, rows)
    if len(ordered) > limit:
        text += "\n\n" + t(lang, "status.more", more=len(ordered) - limit)
    return text + "\n"


def render_cached_reply(
    run_id: str,
    sha: str,
    language: str = "en",
    *,
    run_url: str | None = None,
    scores: Mapping[str, ScoreView] | None = None,
) -> str:
    """The reply when an identical evaluation already ran: which run, at which commit, and how to force a rerun."""
    lang = normalize_language(language)
    run = fmt.link(fmt.code(run_id), run_url) if run_url else fmt.code(run_id)
    text = "♻️ " + t(lang, "cached.body", run=run, sha=fmt.code(fmt.short_sha(sha)))
    if scores:
        headers = [t(lang, "cmp.col.benchmark"), t(lang, "cmp.col.n"), t(lang, "card.col.score")]
        rows = [[fmt.cell(fmt.bench_name(k)), fmt.thousands(s.n), fmt.points(s.points)]
                for k, s in sorted(scores.items())]
        text += "\n\n" + fmt.table(headers, rows, "lrr")
    return text + "\n"


def ranked_entries(entries: Iterable[LeaderboardEntry], benchmark: str) -> list[LeaderboardEntry]:
    """One benchmark's results, best first (ties: more questions, then earlier, then by model name)."""
    return sorted((e for e in entries if e.benchmark == benchmark), key=lambda e: (-e.score, -e.n, e.date, e.model))


def leaderboard_section(entries: Sequence[LeaderboardEntry], benchmark: str, lang: Language, *, limit: int) -> str:
    """One benchmark's ranking: its `###` title, a table of the first `limit`, and how many more were left out."""
    ranked = ranked_entries(entries, benchmark)
    rows = []
    for rank, e in enumerate(ranked[:limit], start=1):
        lo, hi = wilson_interval(round(e.score * e.n), e.n)
        adapter = e.adapter or (e.run_id if e.run_id else "")
        label = fmt.code(adapter) if adapter else t(lang, "lb.base_model")
        rows.append([str(rank), fmt.cell(e.model), fmt.link(label, e.url) if e.url else label,
                     f"**{fmt.points(100 * e.score)}**", f"[{fmt.points(lo)}, {fmt.points(hi)}]",
                     fmt.thousands(e.n), fmt.date(e.date)])
    headers = [t(lang, k) for k in ("lb.col.rank", "lb.col.model", "lb.col.adapter", "lb.col.score",
                                    "lb.col.ci", "lb.col.n", "lb.col.date")]
    section = f"### {t(lang, 'lb.title', bench=fmt.bench_name(benchmark))}\n\n" + fmt.table(headers, rows, "rllrlrl")
    if len(ranked) > limit:
        section += "\n\n" + t(lang, "lb.more", more=len(ranked) - limit)
    return section


def render_leaderboard(
    entries: Sequence[LeaderboardEntry],
    language: str = "en",
    *,
    benchmark: str | None = None,
    limit: int = 20,
) -> str:
    """The /leaderboard reply: per benchmark, stored results ranked by score (ties: more questions, then earlier)."""
    lang = normalize_language(language)
    chosen = [e for e in entries if benchmark is None or e.benchmark == benchmark]
    if not chosen:
        return (t(lang, "lb.empty_bench", bench=fmt.bench_name(benchmark)) if benchmark
                else t(lang, "lb.empty")) + "\n"
    benches = sorted({e.benchmark for e in chosen})
    sections = [leaderboard_section(chosen, bench, lang, limit=limit) for bench in benches]
    return "\n\n".join(sections) + "\n\n<sub>" + t(lang, "lb.note") + "</sub>\n"


# --- check run ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckRunOutput:
    """What `POST /repos/{o}/{r}/check-runs` needs: the conclusion and the `output` object (title, summary, text)."""

    conclusion: str
    title: str
    summary: str
    text: str = ""

    def output(self) -> dict[str, str]:
        out = {"title": self.title, "summary": self.summary}
        if self.text:
            out["text"] = self.text
        return out


def _fit_text(text: str, limit: int, lang: Language) -> str:
    if measure(text) <= limit:
        return text
    note = t(lang, "check.truncated")
    first = split_comment(text, limit - measure(note) - 4, continued=t(lang, "split.continued"))[0]
    return f"{first}\n\n{note}"


def check_run_output(
    comparison: Comparison,
    conclusion: Conclusion,
    language: str = "en",
    links: ReportLinks | None = None,
) -> CheckRunOutput:
    """The check run's conclusion and output: the headline as title (≤ 255), the summary table and rule as summary,
    per-subject details as text (each ≤ 65,535, cut at a safe place with a note when longer)."""
    lang = normalize_language(language)
    title = fmt.shorten(t(lang, "check.title", conclusion=t(lang, "conclusion." + conclusion.conclusion),
                          headline=headline(comparison, lang)), CHECK_TITLE_LIMIT)
    summary_blocks = [_conclusion_line(conclusion, lang)]
    recipe = recipe_block(comparison, lang)
    if recipe:
        summary_blocks.append(recipe)
    if comparison.benchmarks:
        summary_blocks.append(_benchmark_table(comparison, lang))
    notes = _notes(comparison, lang)
    if notes:
        summary_blocks.append("\n".join(f"- {n}" for n in notes))
    line = _links_line(links, lang)
    if line:
        summary_blocks.append(line)
    detail_blocks = [d for b in comparison.benchmarks for d in (_subjects_details(b, lang),) if d]
    detail_blocks += [d for b in comparison.benchmarks for d in (_flips_details(b, lang),) if d]
    if comparison.benchmarks:
        detail_blocks.append(_method_line(comparison, lang))
    return CheckRunOutput(
        conclusion=conclusion.conclusion,
        title=title,
        summary=_fit_text("\n\n".join(summary_blocks) + "\n", CHECK_TEXT_LIMIT, lang),
        text=_fit_text("\n\n".join(detail_blocks) + "\n", CHECK_TEXT_LIMIT, lang) if detail_blocks else "",
    )
