"""Benchmark packs: the real CMMLU / C-Eval files read and converted into EvalScope's layouts, ids kept."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from runner_agent import mcq_format, packs
from runner_agent.datasets import build_tiny_mcq, tiny_mcq_rows
from runner_agent.errors import AgentError
from tests.paths import BENCHMARKS


def _csv_rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))[1:]


def test_cmmlu_conversion_keeps_every_row_and_its_id(tmp_path: Path) -> None:
    pack = packs.convert(BENCHMARKS, "cmmlu", tmp_path)
    readme = (pack.path / "README.md").read_text(encoding="utf-8")
    assert "config_name: default" in readme and "split: dev" in readme and "split: test" in readme
    records = [json.loads(line) for line in (pack.path / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    for subject in ("agronomy", "anatomy"):
        source = _csv_rows(BENCHMARKS / "cmmlu" / "test" / f"{subject}.csv")
        mine = [r for r in records if r["category"] == subject]
        assert len(mine) == len(source) > 0
        for rec, src in zip(mine, source, strict=True):
            assert str(rec["id"]) == src[0]
            assert rec["question"] == src[1]
            assert rec["choices"] == [f"({letter}) {c}" for letter, c in zip("ABCD", src[2:6], strict=True)]
            assert rec["answer"] == f"({src[6]})"
    # EvalScope takes the letter at answer[1] and strips 3 characters off each choice: check that holds.
    assert all(r["answer"][1] in "ABCD" and r["choices"][0].startswith("(A) ") for r in records)


def test_ceval_conversion_has_string_features_and_one_config_per_subject(tmp_path: Path) -> None:
    pack = packs.convert(BENCHMARKS, "ceval", tmp_path)
    readme = (pack.path / "README.md").read_text(encoding="utf-8")
    for subject in ("computer_network", "logic"):
        assert f"- config_name: {subject}" in readme
        assert f"path: val/{subject}.jsonl" in readme and f"path: dev/{subject}.jsonl" in readme
    assert readme.count("dtype: string") == 7 * readme.count("  features:")
    val = [json.loads(x) for x in (pack.path / "val" / "computer_network.jsonl").read_text("utf-8").splitlines()]
    source = _csv_rows(BENCHMARKS / "ceval" / "val" / "computer_network_val.csv")
    assert [str(r["id"]) for r in val] == [s[0] for s in source]
    assert all(isinstance(r[k], str) for r in val for k in ("A", "B", "C", "D", "answer", "explanation"))
    assert val[0]["A"] == "1"  # numeric options stay strings (EvalScope's pydantic check needs that)
    # Multi-line fields survive (computer_network val id 14 has an embedded newline).
    assert any("\n" in r["question"] + r["A"] + r["B"] + r["C"] + r["D"] for r in val)


def test_conversion_is_deterministic_and_reused(tmp_path: Path) -> None:
    a = packs.convert(BENCHMARKS, "cmmlu", tmp_path / "a")
    b = packs.convert(BENCHMARKS, "cmmlu", tmp_path / "b")
    assert a.path.name == b.path.name and a.sha256 == b.sha256
    for name in ("test.jsonl", "dev.jsonl", "README.md"):
        assert (a.path / name).read_bytes() == (b.path / name).read_bytes()
    stamp = (a.path / "test.jsonl").stat().st_mtime_ns
    again = packs.convert(BENCHMARKS, "cmmlu", tmp_path / "a")
    assert again.path == a.path and (a.path / "test.jsonl").stat().st_mtime_ns == stamp


def test_changed_source_gets_a_new_conversion(tmp_path: Path) -> None:
    root = tmp_path / "packs"
    shutil.copytree(BENCHMARKS / "cmmlu", root / "cmmlu")
    first = packs.convert(root, "cmmlu", tmp_path / "cache")
    with (root / "cmmlu" / "dev" / "agronomy.csv").open("a", encoding="utf-8") as fh:
        fh.write("5,新问题,甲,乙,丙,丁,A\n")
    second = packs.convert(root, "cmmlu", tmp_path / "cache")
    assert second.path != first.path and len(second.rows["dev"]["agronomy"]) == 6


def test_missing_subject_names_the_file(tmp_path: Path) -> None:
    pack = packs.convert(BENCHMARKS, "ceval", tmp_path)
    with pytest.raises(AgentError, match=r"no val data for subject\(s\) high_school_physics .*high_school_physics_val"):
        packs.check_subjects(pack, ["logic", "high_school_physics"], 0)
    with pytest.raises(AgentError, match="few_shot=6 needs at least 6 dev rows"):
        packs.check_subjects(pack, ["logic"], 6)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Question,A,B,C,D,Answer\n肉,胸,腹,大腿,小腿,C\n", "is not the CMMLU layout"),
        (",Question,A,B,C,D,Answer\n0,肉,胸,腹,大腿,小腿,E\n", "expected one of A, B, C, D"),
        (",Question,A,B,C,D,Answer\n0,肉,胸,腹,大腿,小腿,C\n0,又,胸,腹,大腿,小腿,C\n", "appears twice"),
        (",Question,A,B,C,D,Answer\n0,肉,胸\n", "has 3 fields"),
    ],
)
def test_malformed_cmmlu_files_are_refused_with_the_reason(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "cmmlu" / "test").mkdir(parents=True)
    (tmp_path / "cmmlu" / "test" / "agronomy.csv").write_text(text, encoding="utf-8")
    with pytest.raises(AgentError, match=message):
        packs.read_rows(tmp_path, "cmmlu", "test", "agronomy")


def test_tiny_mcq_uses_only_dev_rows_in_evalscope_format(tmp_path: Path) -> None:
    rows = tiny_mcq_rows(BENCHMARKS)
    dev_questions = {r.question for b in ("ceval", "cmmlu") for s in packs.available_subjects(BENCHMARKS, b, "dev")
                     for r in packs.read_rows(BENCHMARKS, b, "dev", s)}
    eval_questions = {r.question for b, split in (("ceval", "val"), ("cmmlu", "test"))
                      for s in packs.available_subjects(BENCHMARKS, b, split)
                      for r in packs.read_rows(BENCHMARKS, b, split, s)}
    assert len(rows) == len(dev_questions)
    prompts = [r["messages"][0]["content"] for r in rows]  # type: ignore[index]
    for p in prompts:
        assert any(q in p for q in dev_questions)
        assert not any(q in p for q in eval_questions - dev_questions)
    answers = [r["messages"][1]["content"] for r in rows]  # type: ignore[index]
    assert all(a in {mcq_format.answer_line(x) for x in "ABCD"} for a in answers)
    first = packs.read_rows(BENCHMARKS, "ceval", "dev", "computer_network")[0]
    assert prompts[0] == mcq_format.ceval_prompt("computer_network", first.question, first.choices)
    built = build_tiny_mcq(BENCHMARKS, tmp_path)
    assert built.rows == len(rows) and built.path is not None
    assert build_tiny_mcq(BENCHMARKS, tmp_path).swift_arg == built.swift_arg  # cached by content


def test_tiny_mcq_without_packs_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="--bench-data"):
        build_tiny_mcq(None, tmp_path)
