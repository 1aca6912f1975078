"""Results: exact round trips down to each question, atomic re-saves, content-keyed reuse, baselines, leaderboard."""

from __future__ import annotations

import random
import time

import pytest

from bot.store import Store, StoreError, UnknownRun
from commands.results import BenchmarkResult, Results, SubsetScore

from .helpers import at, new_run

SUBJECTS = ("agronomy", "anatomy", "ancient_chinese", "arts", "astronomy", "business_ethics")


def bench(name: str, *, per_subject: int, seed: int, config_hash: str = "cfg-1") -> BenchmarkResult:
    rng = random.Random(seed)
    questions = {f"{s}/{i}": rng.random() < 0.4 for s in SUBJECTS for i in range(per_subject)}
    subsets = {s: SubsetScore(n=per_subject, correct=sum(questions[f"{s}/{i}"] for i in range(per_subject)))
               for s in SUBJECTS}
    return BenchmarkResult(benchmark=name, subsets=subsets, questions=questions, config_hash=config_hash)


def results(run_id: str, *benches: BenchmarkResult, status: str = "succeeded") -> Results:
    return Results(run_id=run_id, status=status, benchmarks={b.benchmark: b for b in benches},
                   train={"final_loss": 0.42, "steps": 30, "curve": [[5, 1.2], [10, 0.9]]},
                   manifest={"model": "tiny", "swift": "4.6.0", "evalscope": "1.14.1", "note": "中文 ok"},
                   artifacts=({"name": "adapter", "path": "runs/x/adapter", "sha256": "ab" * 32, "bytes": 1024},))


async def make_run(store: Store, run_id: str, *, seconds: float = 0, model: str = "tiny", repo: str = "octo/demo"
                   ) -> None:
    await store.create_run(new_run(run_id, model=model, repo=repo), now=at(seconds))


async def test_round_trip_is_exact_down_to_each_question(store: Store) -> None:
    await make_run(store, "tb-000000000001")
    res = results("tb-000000000001", bench("cmmlu", per_subject=900, seed=1), bench("ceval", per_subject=40, seed=2))
    keys = {"cmmlu": "rk-cmmlu-1", "ceval": "rk-ceval-1"}
    started = time.perf_counter()
    await store.save_results("tb-000000000001", res, keys, "octo/demo", "a" * 40, "refs/pull/7/head", now=at(1))
    loaded = await store.load_results("tb-000000000001")
    elapsed = time.perf_counter() - started
    assert loaded == res
    assert loaded is not None and len(loaded.benchmarks["cmmlu"].questions) == 5400
    assert loaded.to_json() == res.to_json()
    assert await store.result_keys("tb-000000000001") == keys
    assert await store.load_results("tb-000000000002") is None
    # 5,640 question rows saved and loaded: interactive speed on both backends, even on a busy CI box.
    assert elapsed < 5.0, f"save+load of 5,640 questions took {elapsed:.2f}s"


async def test_saving_again_replaces_everything_atomically(store: Store) -> None:
    await make_run(store, "tb-000000000001")
    big = results("tb-000000000001", bench("cmmlu", per_subject=50, seed=1), bench("ceval", per_subject=5, seed=2))
    await store.save_results("tb-000000000001", big, {"cmmlu": "k1", "ceval": "k2"}, "octo/demo", "a" * 40, None,
                             now=at(1))
    small = results("tb-000000000001", bench("cmmlu", per_subject=3, seed=9), status="failed")
    await store.save_results("tb-000000000001", small, {"cmmlu": "k3"}, "octo/demo", "a" * 40, None, now=at(2))
    assert await store.load_results("tb-000000000001") == small  # no stale benchmark, subject or question left
    assert await store.find_result("octo/demo", "k2") is None
    # A save that fails validation changes nothing.
    with pytest.raises(StoreError, match="no result key for benchmark"):
        await store.save_results("tb-000000000001", big, {"cmmlu": "k1"}, "octo/demo", "a" * 40, None, now=at(3))
    assert await store.load_results("tb-000000000001") == small


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r, k: (Results(run_id="tb-other", status="ok", benchmarks=r.benchmarks), k), "for run 'tb-other'"),
        (lambda r, k: (r, {**k, "mmlu": "x"}), "not in the results: mmlu"),
        (lambda r, k: (r, {"cmmlu": ""}), "result key of cmmlu: must be a non-empty"),
        (lambda r, k: (Results(run_id="", status="ok", benchmarks={"cmmlu": BenchmarkResult(
            "cmmlu", {"arts": SubsetScore(n=2, correct=3)}, {})}), k), "correct=3 must be within 0..n=2"),
        (lambda r, k: (Results(run_id="", status="ok", benchmarks={"cmmlu": BenchmarkResult(
            "ceval", {}, {})}), k), "entry 'cmmlu' holds benchmark 'ceval'"),
        (lambda r, k: (Results(run_id="", status="ok", benchmarks=r.benchmarks, manifest={"t": {1, 2}}), k),
         "manifest: not JSON-serializable"),
    ],
)
async def test_bad_results_are_refused_clearly(store: Store, mutate: object, message: str) -> None:
    await make_run(store, "tb-000000000001")
    res = results("tb-000000000001", bench("cmmlu", per_subject=2, seed=1))
    bad, keys = mutate(res, {"cmmlu": "k"})  # type: ignore[operator]
    with pytest.raises(StoreError, match=message):
        await store.save_results("tb-000000000001", bad, keys, "octo/demo", "a" * 40, None, now=at(1))
    assert await store.load_results("tb-000000000001") is None


async def test_results_need_a_known_run(store: Store) -> None:
    with pytest.raises(UnknownRun):
        await store.save_results("tb-nope", results("tb-nope"), {}, "octo/demo", "a" * 40, None, now=at(1))


async def test_find_result_reuses_the_newest_identical_work_in_the_same_repo(store: Store) -> None:
    for i, seconds in ((1, 10), (2, 20)):
        rid = f"tb-00000000000{i}"
        await make_run(store, rid, seconds=seconds)
        await store.save_results(rid, results(rid, bench("cmmlu", per_subject=4, seed=i)), {"cmmlu": "same-key"},
                                 "octo/demo", "a" * 40, None, now=at(seconds))
    found = await store.find_result("octo/demo", "same-key")
    assert found is not None
    run_id, b = found
    assert run_id == "tb-000000000002" and b == bench("cmmlu", per_subject=4, seed=2)
    assert await store.find_result("other/repo", "same-key") is None
    assert await store.find_result("octo/demo", "other-key") is None


async def test_leaderboard_ranks_one_entry_per_content_key(store: Store) -> None:
    entries = [("tb-000000000001", "qwen-7b", "k-a", 0.50, 1), ("tb-000000000002", "qwen-7b", "k-a", 0.55, 2),
               ("tb-000000000003", "llama-8b", "k-b", 0.70, 3), ("tb-000000000004", "tiny", "k-c", 0.10, 4)]
    for rid, model, key, score, seconds in entries:
        await make_run(store, rid, seconds=seconds, model=model)
        n = 100
        b = BenchmarkResult("cmmlu", {"arts": SubsetScore(n=n, correct=round(score * n))},
                            {f"arts/{i}": i < score * n for i in range(n)}, config_hash="cfg-1")
        await store.save_results(rid, results(rid, b), {"cmmlu": key}, "octo/demo", "a" * 40, "main",
                                 now=at(seconds))
    board = await store.leaderboard("octo/demo", "cmmlu", 10)
    assert [(e.run_id, e.model, e.score) for e in board] == [
        ("tb-000000000003", "llama-8b", 0.70), ("tb-000000000002", "qwen-7b", 0.55), ("tb-000000000004", "tiny", 0.10)]
    assert [e.run_id for e in await store.leaderboard("octo/demo", "cmmlu", 1)] == ["tb-000000000003"]
    assert await store.leaderboard("octo/demo", "ceval", 10) == []
    assert await store.leaderboard("octo/demo", "cmmlu", 10, config_hash="cfg-9") == []
    assert await store.leaderboard("octo/other", "cmmlu", 10) == []  # one repository's board only
