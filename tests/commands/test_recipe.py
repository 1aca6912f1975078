"""Recipe and evaluation identities (commands/recipe.py), the baseline decision (commands/baseline.py) and the
between-seed test (commands/stats.seed_delta_test): pure values, checked with expected values written out."""

from __future__ import annotations

import math

import pytest

from commands.baseline import Backfill, NoBaseline, ResolvedRef, SameRecipe, UseStored, decide_baseline, parse_target
from commands.decision import Command
from commands.plan import PlanError, PRFacts, local_dataset_paths, plan, plan_recipe_baseline
from commands.policy import DEFAULT_POLICY
from commands.recipe import Change, recipe_diff, recipe_of
from commands.stats import SeedSummary, seed_delta_test
from configs import load_catalog

CATALOG = load_catalog()
A, B = "a" * 40, "b" * 40
HEAD, MAIN = "1" * 40, "2" * 40


def train(blobs: dict[str, str | None], sha: str = HEAD, **args: object):
    cmd = Command("train", {"model": "tiny", "dataset": ("data/train.jsonl",), "max_steps": 20, **args})
    [pj] = plan(cmd, PRFacts(repo="o/r", head_sha=sha, blobs=blobs), DEFAULT_POLICY, CATALOG, ["run-1"])
    return pj


def test_the_training_key_follows_the_data_content_not_the_commit() -> None:
    same_data_other_commit = train({"data/train.jsonl": A}, sha=MAIN)
    assert train({"data/train.jsonl": A}).result_key == same_data_other_commit.result_key
    assert train({"data/train.jsonl": A}).result_key != train({"data/train.jsonl": B}).result_key
    # Unknown content: keyed on the commit (coarser, never wrong), and the bot is told which files to look up.
    unknown = train({})
    assert unknown.job.datasets[0].blob is None and local_dataset_paths([unknown]) == ["data/train.jsonl"]
    assert unknown.result_key != train({}, sha=MAIN).result_key
    # Reporting settings are not part of the recipe; the seed is.
    assert train({"data/train.jsonl": A}, logging_steps=1).result_key == train({"data/train.jsonl": A}).result_key
    assert train({"data/train.jsonl": A}, seed=7).result_key != train({"data/train.jsonl": A}).result_key


def test_a_dataset_missing_at_the_head_is_a_plan_error() -> None:
    with pytest.raises(PlanError, match="does not exist at 1111111"):
        train({"data/train.jsonl": None})


def test_recipe_diff_names_the_blob_and_the_setting() -> None:
    preset = CATALOG.models["tiny"]
    old = recipe_of(train({"data/train.jsonl": A}).job, preset)
    new = recipe_of(train({"data/train.jsonl": B}, learning_rate=2e-3).job, preset)
    assert recipe_diff(old, new) == (Change("learning_rate", "0.001", "0.002"),
                                     Change("data/train.jsonl", "blob aaaaaaa", "blob bbbbbbb"))
    assert recipe_diff(old, old) == ()


def test_the_baseline_plan_is_the_head_recipe_at_the_ref() -> None:
    head = train({"data/train.jsonl": B}, eval=("cmmlu",))
    base = plan_recipe_baseline(head.job, CATALOG, MAIN, {"data/train.jsonl": A}, "run-2", "main")
    assert base.job.sha == MAIN and base.job.kind == "train+eval" and base.job.datasets[0].blob == A
    assert base.job.hyper == head.job.hyper and base.result_key == train({"data/train.jsonl": A}).result_key
    with pytest.raises(PlanError, match=r"`data/train\.jsonl` does not exist at main@2222222"):
        plan_recipe_baseline(head.job, CATALOG, MAIN, {"data/train.jsonl": None}, "run-2", "main")


def test_decide_baseline_covers_each_answer() -> None:
    head = train({"data/train.jsonl": B}, eval=("cmmlu",))
    ref = ResolvedRef("main", MAIN)
    base = plan_recipe_baseline(head.job, CATALOG, MAIN, {"data/train.jsonl": A}, "run-2", "main")
    assert decide_baseline(head.result_key, None, "x", {}) == NoBaseline("x")
    assert decide_baseline(head.result_key, ref, "why", {}) == NoBaseline("why")
    same = plan_recipe_baseline(head.job, CATALOG, MAIN, {"data/train.jsonl": B}, "run-2", "main")
    assert decide_baseline(head.result_key, ref, same, {}) == SameRecipe(ref)
    stored = {k: "tb-old" for k in base.benchmark_keys.values()}
    assert decide_baseline(head.result_key, ref, base, stored) == UseStored("tb-old", ref, ())
    assert decide_baseline(head.result_key, ref, base, {}) == Backfill(base, ref, ())
    assert ref.label == "main@2222222" and ResolvedRef(MAIN, MAIN).label == "2222222"


@pytest.mark.parametrize(("text", "known", "kind", "value"), [
    (None, False, "ref", "develop"), ("v1", False, "ref", "v1"), ("run:tb-1", False, "run", "tb-1"),
    ("tb-1", True, "run", "tb-1"), ("tb-1", False, "ref", "tb-1"), ("base-model", False, "base-model", "base-model"),
])
def test_parse_target(text: str | None, known: bool, kind: str, value: str) -> None:
    target = parse_target(text, "develop", known_run=known)
    assert (target.kind, target.value) == (kind, value)


def test_seed_delta_test_uses_between_seed_variance() -> None:
    assert SeedSummary((0.5,)).sd is None
    assert seed_delta_test([0.3], [0.5]) == (pytest.approx(0.2), None)  # single seed: no training-noise test
    # Welch's t: t = 0.2 / sqrt(0.0002/2 + 0.0002/2) = 14.142, df = 2 -> p = 1 - |t|/sqrt(t^2 + 2) for df = 2.
    delta, p = seed_delta_test([0.3, 0.32], [0.5, 0.52])
    t_stat = 0.2 / math.sqrt(0.0002)
    assert delta == pytest.approx(0.2) and p == pytest.approx(1 - t_stat / math.sqrt(t_stat ** 2 + 2), rel=1e-9)
    # Seeds that disagree more than the delta: not significant.
    _, p_noisy = seed_delta_test([0.2, 0.6], [0.3, 0.7])
    assert p_noisy is not None and p_noisy > 0.5


def test_jobs_name_the_pinned_toolchain_and_the_keys_follow_it() -> None:
    """Every planned job carries configs/toolchain.yaml's versions; the training key names ms-swift's, each eval key
    EvalScope's: a result made with other versions is not found under these keys."""
    from dataclasses import replace

    from commands.jobspec import Toolchain

    pj = train({"data/train.jsonl": A}, eval=("cmmlu",))
    assert pj.job.toolchain == Toolchain(ms_swift="4.6.0", evalscope="1.14.1") == CATALOG.toolchain
    assert recipe_of(pj.job, CATALOG.models["tiny"]).ms_swift == "4.6.0"
    other = replace(CATALOG, toolchain=Toolchain(ms_swift="4.6.0", evalscope="1.15.0"))
    cmd = Command("train", {"model": "tiny", "dataset": ("data/train.jsonl",), "max_steps": 20, "eval": ("cmmlu",)})
    [moved] = plan(cmd, PRFacts(repo="o/r", head_sha=HEAD, blobs={"data/train.jsonl": A}), DEFAULT_POLICY, other,
                   ["run-1"])
    assert moved.result_key == pj.result_key  # same ms-swift: same trained weights
    assert moved.benchmark_keys["cmmlu"] != pj.benchmark_keys["cmmlu"]  # another EvalScope: another score
    newer = replace(CATALOG, toolchain=Toolchain(ms_swift="4.7.0", evalscope="1.14.1"))
    [retrained] = plan(cmd, PRFacts(repo="o/r", head_sha=HEAD, blobs={"data/train.jsonl": A}), DEFAULT_POLICY, newer,
                       ["run-1"])
    assert retrained.result_key != pj.result_key
