"""Multi-seed reports: the per-seed scores agree with the runs they came from, and the per-subject and per-question
details say they are one seed's pair of runs, not all seeds'."""

from __future__ import annotations

from commands.render import render_comparison
from commands.render.github import comparison_markdown as render_report_text

from .fixtures import LINKS, comparison, results_pair
from .golden_cases import _seeded_comparison, seeded_conclusion


def test_the_golden_seed_fixture_s_first_seed_is_the_pair_the_comparison_was_made_from() -> None:
    seeded = _seeded_comparison()
    base, new = results_pair()
    for b in seeded.benchmarks:
        assert b.seeds is not None and b.seeds.seeds == (42, 43)
        # Seed 42's per-seed scores are that pair's scores, over the question counts the runs really had.
        assert b.seeds.base_scores[0] == 100.0 * base.benchmarks[b.benchmark].score
        assert b.seeds.new_scores[0] == 100.0 * new.benchmarks[b.benchmark].score
        n_base = sum(s.n for s in base.benchmarks[b.benchmark].subsets.values())
        assert all(round(x / 100 * n_base, 6).is_integer() for x in b.seeds.base_scores)


def test_subject_tables_and_flips_of_a_multi_seed_report_are_labelled_as_the_first_seed_s_pair() -> None:
    text = render_report_text(_seeded_comparison(), seeded_conclusion(), "en", LINKS)
    summaries = [line for line in text.splitlines() if line.startswith("<details><summary>")]
    assert summaries and all("seed 42's pair of runs only" in s for s in summaries)
    zh = render_report_text(_seeded_comparison(), seeded_conclusion(), "zh", LINKS)
    assert "仅随机种子 42 的一对运行" in zh
    # A single-seed report has nothing to qualify.
    single = "".join(render_comparison(comparison(), seeded_conclusion(), "en", LINKS))
    assert "pair of runs only" not in single
