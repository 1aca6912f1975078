"""End to end, for real: `/eval general_mcq` as the bot plans it, run by the agent with EvalScope on a repository's
own question files (the tiny model with the session's trained adapter), every outcome traced to its file row."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from commands import Parsed, parse_comment
from commands.jobspec import job_to_json
from commands.plan import PRFacts, TrainedRun, plan
from commands.policy import Policy, parse_policy
from configs import load_catalog
from runner_agent import mcq_files, mcq_format
from tests.runner_agent.conftest import AgentRun, run_agent

pytestmark = pytest.mark.slow

ARITH = (
    "id,question,A,B,C,D,answer\n"
    "q1,What is 4 plus 19?,14,23,26,39,B\n"
    'q2,"Which is larger?\n(two options)",7,9,,,B\n'
    "q3,What is 3 times 3?, 9 ,6,12,3,A\n"
    "q4,What is 10 minus 4?,5,4,6,7,C\n"
)
WORDS = (
    '{"question": "哪个是颜色？", "A": "跑", "B": "红", "C": "桌子", "D": "快", "answer": "B"}\n'
    "\n"
    '{"question": "Which word is a fruit?", "A": "apple", "B": "chair", "C": "blue", "answer": "A"}\n'
    '{"question": "2 + 2 = ?", "A": 3, "B": 5, "C": 22, "D": 4, "answer": "D"}\n'
)


def test_eval_of_repository_questions_maps_every_outcome_to_its_row(lora_run: AgentRun, agent_cache: Path,
                                                                     tmp_path: Path) -> None:
    assert lora_run.code == 0, lora_run.stderr[-3000:]
    repo = tmp_path / "checkout"
    (repo / "data" / "mcq").mkdir(parents=True)
    (repo / "data" / "mcq" / "arith.csv").write_text(ARITH, encoding="utf-8")
    (repo / "data" / "mcq" / "words.jsonl").write_text(WORDS, encoding="utf-8")
    (repo / "data" / "mcq" / "README.md").write_text("not a question file\n", encoding="utf-8")

    # The job exactly as the bot dispatches it for this comment (the runner used to refuse it).
    catalog = load_catalog()
    policy = parse_policy(None, catalog=catalog)
    assert isinstance(policy, Policy)
    decision = parse_comment("/eval general_mcq adapter=e2e-lora", catalog=catalog, policy=policy)
    assert isinstance(decision, Parsed)
    pr = PRFacts(repo="octo/demo", head_sha="c" * 40, trained_runs={"e2e-lora": TrainedRun("e2e-lora", "tiny")})
    (planned,) = plan(decision.commands[0], pr, policy, catalog, ["e2e-mcq"])
    job = json.loads(job_to_json(planned.job))
    assert job["benchmarks"] == [{"name": "general_mcq", "subsets": ["all"], "data_dir": "data/mcq", "limit": None,
                                  "few_shot": 0, "max_tokens": 16}]

    run = run_agent(tmp_path / "run", agent_cache, job, "--repo-dir", str(repo), "--adapter-dir", str(lora_run.out))
    assert run.code == 0, run.stderr[-3000:]
    result = run.results["scores"]["general_mcq"]

    # Every question of both files, under `<subset>/<id column or line number>`, and nothing else.
    expected = {"arith/q1", "arith/q2", "arith/q3", "arith/q4", "words/1", "words/3", "words/4"}
    assert set(result["questions"]) == expected
    assert {k: v["n"] for k, v in result["subsets"].items()} == {"arith": 4, "words": 3}
    assert result["correct"] == sum(result["questions"].values())
    # The adapter answers in the `答案：X` format, right on some rows and wrong on others (3 of 7 when measured):
    # with both kinds present, the row-by-row and report checks below can tell a mapping error from a match.
    assert 0 < result["correct"] < 7, result["questions"]

    # Each EvalScope review is the row its id names: the prompt EvalScope sent is our mirror of it built from the
    # file's row, its target is the row's answer, its id the row's id, its verdict the one results.json holds.
    files = mcq_files.find_files(repo, "data/mcq")
    checked = 0
    for subset in ("arith", "words"):
        rows = mcq_files.read_file(files[subset])
        reviews = (run.out / "eval" / "reviews" / f"general_mcq_{subset}.jsonl").read_text("utf-8").splitlines()
        assert len(reviews) == len(rows)
        for line in reviews:
            review = json.loads(line)
            row = rows[review["index"]]
            user = next(m["content"] for m in review["messages"] if m["role"] == "user")
            assert user == mcq_format.general_mcq_prompt(row.question, row.choices)
            assert review["target"] == [row.answer]
            assert review["sample_score"]["sample_metadata"]["id"] == row.row_id
            right = review["sample_score"]["score"]["value"]["accuracy"] == 1.0
            assert result["questions"][row.qid] is right
            checked += 1
    assert checked == 7

    # The scores are EvalScope's own, subset by subset and overall.
    report = json.loads((run.out / "eval" / "reports" / "general_mcq.json").read_text("utf-8"))
    metric = report["metrics"][0]
    reported = {s["name"]: (s["num"], s["score"]) for c in metric["categories"] for s in c["subsets"]}
    assert reported == {k: (v["n"], pytest.approx(v["score"], abs=5e-5)) for k, v in result["subsets"].items()}
    assert metric["score"] == pytest.approx(result["score"], abs=5e-5) and metric["num"] == 7

    # What was evaluated is recorded by content: sorted repository paths + sha256 of each file's bytes.
    digest = hashlib.sha256()
    shas = {}
    for rel in ("data/mcq/arith.csv", "data/mcq/words.jsonl"):
        shas[rel] = hashlib.sha256((repo / rel).read_bytes()).hexdigest()
        digest.update(f"{rel}\0{shas[rel]}\n".encode())
    manifest = run.results["manifest"]["benchmarks"]["general_mcq"]
    assert manifest["data_sha256"] == digest.hexdigest() and manifest["files"] == shas
    assert manifest["data"] == "repo:data/mcq" and manifest["questions"] == {"arith": 4, "words": 3}
    assert manifest["config_hash"] == result["config_hash"]
    (event,) = [e for e in run.events if e["type"] == "eval_result"]
    assert event["manifest"]["benchmark_data"]["general_mcq"]["data_sha256"] == digest.hexdigest()
    assert event["config_hash"] == result["config_hash"] and event["questions"] == result["questions"]
    assert run.results["manifest"]["adapter"]["run_id"] == "e2e-lora"
