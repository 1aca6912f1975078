"""A repository's own multiple-choice questions (general_mcq): the file format, its checks and messages, the content
hash, and the runner accepting (and converting) exactly what the bot plans for `/eval general_mcq`."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from commands import Parsed, parse_comment
from commands.jobspec import JobSpec, job_from_json, job_to_json
from commands.plan import PRFacts, plan
from commands.policy import Policy, parse_policy
from configs import load_catalog
from runner_agent import cli, evaluation, mcq_files, packs
from runner_agent.errors import AgentError
from runner_agent.sinks import read_events
from tests.paths import BENCHMARKS

CATALOG = load_catalog()
SHA = "ab" * 20

ARITH = (
    "\ufeffID,Question,a,b,c,d,Answer,explanation\n"  # a BOM and any case: what spreadsheets export
    "q1,What is 4 plus 19?,14,23,26,39,b,\n"
    '\n'  # a blank line is not a question
    'q2,"Two lines:\nwhich?",x,y,,,A,fewer options on this row\n'
    ",,,,,,,\n"  # a row of empty cells, as spreadsheets export them
    "q3,  Spaces kept  , 1 ,2,3,4,D,\n"
)
WORDS = (
    '{"question": "Which is a colour?", "A": "red", "B": "run", "answer": "A"}\n'
    "\n"
    '{"question": "Pick the number", "A": 27, "B": "x", "C": "y", "answer": "a"}\n'
)


def write_repo(root: Path, files: dict[str, str], folder: str = "data/mcq") -> Path:
    for name, text in files.items():
        path = root / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def read(root: Path, name: str, text: str) -> tuple[packs.McqRow, ...]:
    write_repo(root, {name: text})
    files = mcq_files.find_files(root, "data/mcq")
    return mcq_files.read_file(files[name.rsplit(".", 1)[0]])


def test_good_csv_keeps_text_ids_and_per_row_options(tmp_path: Path) -> None:
    rows = read(tmp_path, "arith.csv", ARITH)
    assert [r.qid for r in rows] == ["arith/q1", "arith/q2", "arith/q3"]
    assert rows[0].choices == ("14", "23", "26", "39") and rows[0].answer == "B"
    assert rows[1].question == "Two lines:\nwhich?" and rows[1].choices == ("x", "y") and rows[1].answer == "A"
    assert rows[1].explanation == "fewer options on this row"
    assert rows[2].question == "  Spaces kept  " and rows[2].choices == (" 1 ", "2", "3", "4")


def test_good_jsonl_without_ids_uses_line_numbers(tmp_path: Path) -> None:
    rows = read(tmp_path, "words.jsonl", WORDS)
    assert [r.qid for r in rows] == ["words/1", "words/3"]
    assert rows[1].choices == ("27", "x", "y") and rows[1].answer == "A"


def test_csv_without_ids_uses_the_line_a_record_starts_on(tmp_path: Path) -> None:
    text = 'question,A,B,answer\n"one\ntwo",a,b,A\nthree,a,b,B\n'
    assert [r.row_id for r in read(tmp_path, "m.csv", text)] == ["2", "4"]


def test_ten_options_are_the_most(tmp_path: Path) -> None:
    letters = "ABCDEFGHIJ"
    rows = read(tmp_path, "ten.csv", f"question,{','.join(letters)},answer\nq,{','.join(letters.lower())},J\n")
    assert len(rows[0].choices) == 10 and rows[0].answer == "J"
    with pytest.raises(AgentError, match=r"`data/mcq/ten.csv` line 1 \(header\): unknown column 'K'"):
        read(tmp_path, "ten.csv", f"question,{','.join(letters)},K,answer\nq,{','.join(letters)},k,J\n")


HEADER = "question,A,B,C,D,answer\n"
BAD = [
    ("m.csv", "", "`data/mcq/m.csv` is empty (expected a header line"),
    ("m.csv", HEADER, "`data/mcq/m.csv` holds no questions"),
    ("m.csv", "question,A,B,C,D,answer,notes\nq,a,b,c,d,A,x\n",
     "`data/mcq/m.csv` line 1 (header): unknown column 'notes'; allowed: question, A … J, answer, id, explanation"),
    ("m.csv", ",question,A,B,answer\n1,q,a,b,A\n", "line 1 (header): column 1 has no name; allowed: question"),
    ("m.csv", "question,A,B,D,answer\nq,a,b,d,A\n", "line 1 (header): option columns must run from A without gaps, "
                                                    "got A, B, D (no C)"),
    ("m.csv", "question,A,answer\nq,a,A\n", "line 1 (header): no 'B' column"),
    ("m.csv", "question,A,B,answer,Answer\nq,a,b,A,A\n", "line 1 (header): column 'answer' appears twice"),
    ("m.csv", HEADER + "ok,a,b,c,d,A\nq,a,b,c,d\n", "`data/mcq/m.csv` line 3: 5 fields, but the header has 6"),
    ("m.csv", HEADER + "ok,a,b,c,d,A\nq,a,b,c,d,E\n",
     "`data/mcq/m.csv` line 3: answer 'E' must be one letter among this row's options A, B, C, D"),
    ("m.csv", HEADER + "q,a,b,,,C\n", "line 2: answer 'C' must be one letter among this row's options A, B"),
    ("m.csv", HEADER + "q,a,b,c,d,AB\n", "several correct answers are not supported"),
    ("m.csv", HEADER + "q,a,b,c,d,\n", "line 2: answer '' must be one letter"),
    ("m.csv", HEADER + "q,a,,c,d,A\n", "line 2: option B is empty but C is not; options must run from A without gaps"),
    ("m.csv", HEADER + "q,a,,,,A\n", "line 2: needs at least 2 options (A and B), has 1"),
    ("m.csv", HEADER + " ,a,b,c,d,A\n", "`data/mcq/m.csv` line 2: the question is empty"),
    ("m.csv", "id," + HEADER + "1,q,a,b,c,d,A\n,q,a,b,c,d,A\n", "line 3: the id is empty (give every row an id"),
    ("m.csv", "id," + HEADER + "7,q,a,b,c,d,A\n8,q,a,b,c,d,A\n7,r,a,b,c,d,B\n",
     "`data/mcq/m.csv` line 4: id '7' is already used on line 2; ids must be unique in a file"),
    ("m.csv", HEADER + 'ok,a,b,c,d,A\n"unclosed,a,b,c,d,A\n', "`data/mcq/m.csv` line 3: not valid CSV"),
    ("m.csv", HEADER + 'q,"a"b,c,d,e,A\nok,a,b,c,d,A\n', "`data/mcq/m.csv` line 2: not valid CSV ("),
    ("m.jsonl", '{"question": "q", "A": "a", "B": "b", "answer": "A"}\n{"question": "q", "A": "a"\n',
     "`data/mcq/m.jsonl` line 2: not JSON ("),
    ("m.jsonl", '["q", "a", "b"]\n', "`data/mcq/m.jsonl` line 1: expected a JSON object, got list"),
    ("m.jsonl", '{"question": "q", "A": "a", "B": "b"}\n', "`data/mcq/m.jsonl` line 1: no 'answer'"),
    ("m.jsonl", '{"question": "q", "A": "a", "B": "b", "answer": "A", "topic": "x"}\n',
     "line 1: unknown column 'topic'"),
    ("m.jsonl", '{"question": "q", "A": "a", "B": true, "answer": "A"}\n', "line 1: option B must be text, got bool"),
    ("m.jsonl", '{"question": "q", "A": "a", "B": "b", "answer": ["A", "B"]}\n',
     "line 1: answer ['A', 'B'] must be one letter"),
    ("m.jsonl", '{"question": 5, "A": "a", "B": "b", "answer": "A"}\n', "line 1: the question must be text, got int"),
    ("m.jsonl", '{"id": 1, "question": "q", "A": "a", "B": "b", "answer": "A"}\n'
                '{"question": "r", "A": "a", "B": "b", "answer": "A"}\n',
     "`data/mcq/m.jsonl` line 2: line 1 has an id and line 2 has none; give every row an id, or none"),
    ("m.jsonl", '{"id": 1.5, "question": "q", "A": "a", "B": "b", "answer": "A"}\n',
     "line 1: id must be text or a whole number, got float"),
    ("m.jsonl", '{"id": "1", "question": "q", "A": "a", "B": "b", "answer": "A"}\n'
                '{"id": 1, "question": "r", "A": "a", "B": "b", "answer": "B"}\n',
     "line 2: id '1' is already used on line 1"),
]


@pytest.mark.parametrize(("name", "text", "message"), BAD, ids=[f"{i}-{b[2][:30]}" for i, b in enumerate(BAD)])
def test_bad_files_are_refused_with_file_line_and_reason(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(AgentError) as err:
        read(tmp_path, name, text)
    assert message in err.value.reason


def test_a_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "mcq"
    folder.mkdir(parents=True)
    (folder / "gbk.csv").write_bytes(HEADER.encode() + "好,a,b,c,d,A\n".encode("gbk"))
    files = mcq_files.find_files(tmp_path, "data/mcq")
    with pytest.raises(AgentError, match=r"`data/mcq/gbk.csv` line 2: not UTF-8 .*save the file as UTF-8"):
        mcq_files.read_file(files["gbk"])


def test_the_folder_and_its_files(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match=r"`data/mcq/` does not exist in this commit.*`data/mcq/<subset>.csv`"):
        mcq_files.find_files(tmp_path, "data/mcq")
    write_repo(tmp_path, {"README.md": "notes", "sub/x.csv": HEADER})
    with pytest.raises(AgentError, match=r"`data/mcq/` holds no .csv or .jsonl question file"):
        mcq_files.find_files(tmp_path, "data/mcq")
    write_repo(tmp_path, {"arith.csv": ARITH, "words.JSONL": WORDS})
    found = mcq_files.find_files(tmp_path, "data/mcq")
    assert list(found) == ["arith", "words"] and found["words"].rel == "data/mcq/words.JSONL"
    assert [f.subset for f in mcq_files.select(found, ("all",))] == ["arith", "words"]
    assert [f.subset for f in mcq_files.select(found, ())] == ["arith", "words"]
    assert [f.subset for f in mcq_files.select(found, ("words",))] == ["words"]
    with pytest.raises(AgentError, match=r"no question file for subset\(s\) geo in `data/mcq/` \(expected "
                                         r"`data/mcq/geo.csv` or `.jsonl`\); subsets there: arith, words"):
        mcq_files.select(found, ("arith", "geo"))
    for problem, message in [
        ({"words.csv": HEADER}, "`data/mcq/words.JSONL` and `data/mcq/words.csv` are both subset 'words'"),
        ({"more.json": "[]"}, "`data/mcq/more.json`: question files must be .csv or .jsonl"),
        ({"All.csv": HEADER}, "`data/mcq/All.csv`: rename it, `all` means every file"),
        ({"my set.csv": HEADER}, "`data/mcq/my set.csv`: the file name is the subset name"),
    ]:
        write_repo(tmp_path, problem)
        with pytest.raises(AgentError) as err:
            mcq_files.find_files(tmp_path, "data/mcq")
        assert message in err.value.reason
        for name in problem:
            (tmp_path / "data" / "mcq" / name).unlink()
    outside = tmp_path.parent / f"{tmp_path.name}-outside.csv"
    outside.write_text(HEADER + "q,a,b,c,d,A\n", encoding="utf-8")
    os.symlink(outside, tmp_path / "data" / "mcq" / "leak.csv")
    with pytest.raises(AgentError, match=r"`data/mcq/leak\.csv` is a link to a file outside the repository"):
        mcq_files.find_files(tmp_path, "data/mcq")
    for bad in ("../data", "/etc", "data/../.."):
        with pytest.raises(AgentError, match="must be a folder inside the repository"):
            mcq_files.find_files(tmp_path, bad)


def test_the_content_hash_is_sorted_paths_and_file_hashes(tmp_path: Path) -> None:
    write_repo(tmp_path, {"words.jsonl": WORDS, "arith.csv": ARITH})
    files = list(mcq_files.find_files(tmp_path, "data/mcq").values())
    expected = hashlib.sha256()
    for rel in ("data/mcq/arith.csv", "data/mcq/words.jsonl"):
        digest = hashlib.sha256((tmp_path / rel).read_bytes()).hexdigest()
        expected.update(f"{rel}\0{digest}\n".encode())
    assert mcq_files.content_hash(files) == mcq_files.content_hash(files[::-1]) == expected.hexdigest()
    # One changed byte, or a renamed file, is another question set.
    write_repo(tmp_path, {"arith.csv": ARITH.replace("q3,", "q4,")})
    assert mcq_files.content_hash(mcq_files.find_files(tmp_path, "data/mcq").values()) != expected.hexdigest()


# --- the runner accepts what the bot plans ------------------------------------------------------------------------


def planned(text: str, policy_text: str | None = None) -> JobSpec:
    """The job the bot would dispatch for `text`, through the strict JSON contract the runner reads."""
    policy = parse_policy(policy_text, catalog=CATALOG)
    assert isinstance(policy, Policy)
    decision = parse_comment(text, catalog=CATALOG, policy=policy)
    assert isinstance(decision, Parsed), decision
    jobs = plan(decision.commands[0], PRFacts(repo="octo/demo", head_sha=SHA), policy, CATALOG, ["r-1"])
    return job_from_json(job_to_json(jobs[0].job))


def runner_plan(job: JobSpec, repo: Path, cache: Path) -> list[evaluation.BenchPlan]:
    return evaluation.plan(job.benchmarks, CATALOG, bench_data=BENCHMARKS, pack_cache=cache, offline=True,
                           evalscope_version="1.14.1", repo_dir=repo)


def test_the_runner_accepts_the_planned_eval_and_converts_every_file(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", {"arith.csv": ARITH, "words.jsonl": WORDS, "README.md": "about"})
    job = planned("/eval general_mcq model=tiny")
    (p,) = runner_plan(job, repo, tmp_path / "cache")
    assert p.evalscope_name == "general_mcq" and p.subsets == ("arith", "words") and p.limit is None
    assert p.pack is not None and p.expected_total == 5
    files = mcq_files.find_files(repo, "data/mcq")
    assert p.pack.sha256 == mcq_files.content_hash(files.values())
    assert p.pack.files == (("data/mcq/arith.csv", files["arith"].sha256), ("data/mcq/words.jsonl",
                                                                            files["words"].sha256))
    # EvalScope's general_mcq layout: `<subset>_val.jsonl`, each row with exactly its own options, all strings.
    converted = [json.loads(x) for x in (p.pack.path / "arith_val.jsonl").read_text("utf-8").splitlines()]
    assert converted[1] == {"id": "q2", "question": "Two lines:\nwhich?", "A": "x", "B": "y", "answer": "A"}
    words = [json.loads(x) for x in (p.pack.path / "words_val.jsonl").read_text("utf-8").splitlines()]
    assert words[1] == {"id": "3", "question": "Pick the number", "A": "27", "B": "x", "C": "y", "answer": "A"}
    assert sorted(x.name for x in p.pack.path.iterdir()) == [".complete", "arith_val.jsonl", "words_val.jsonl"]
    group = evaluation._groups([p], tmp_path / "work")[0]
    assert group["dataset_args"]["general_mcq"] == {"subset_list": ["arith", "words"], "few_shot_num": 0,
                                                    "local_path": str(p.pack.path)}
    # Named subsets and limit=; the data folder follows the policy's `datasets.dir`.
    moved = write_repo(tmp_path / "moved", {"arith.csv": ARITH}, folder="corpora/mcq")
    (one,) = runner_plan(planned("/eval general_mcq model=tiny subsets=arith limit=2", "datasets: {dir: corpora}"),
                         moved, tmp_path / "cache")
    assert one.subsets == ("arith",) and one.expected_total == 2 and one.pack is not None
    assert one.pack.files[0][0] == "corpora/mcq/arith.csv"


def test_changed_questions_change_the_config_hash(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", {"arith.csv": ARITH})
    job = planned("/eval general_mcq model=tiny")
    (first,) = runner_plan(job, repo, tmp_path / "cache")
    (same,) = runner_plan(job, repo, tmp_path / "cache")
    write_repo(repo, {"arith.csv": ARITH.replace("What is 4 plus 19?", "What is 4 plus 20?")})
    (changed,) = runner_plan(job, repo, tmp_path / "cache")
    assert same.config_hash == first.config_hash and same.pack is not None and first.pack is not None
    assert same.pack.path == first.pack.path  # converted once per content
    assert changed.config_hash != first.config_hash and changed.pack is not None
    assert changed.pack.sha256 != first.pack.sha256 and changed.pack.path != first.pack.path


def test_runner_refusals_are_clear(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", {"arith.csv": ARITH})
    job = planned("/eval general_mcq model=tiny subsets=geo")
    with pytest.raises(AgentError, match=r"no question file for subset\(s\) geo .* subsets there: arith"):
        runner_plan(job, repo, tmp_path / "cache")
    bench = job.benchmarks[0]
    for change, message in [
        ({"data_dir": None}, "the job names no data_dir"),
        ({"few_shot": 2}, "few_shot must be 0"),
    ]:
        with pytest.raises(AgentError, match=message):
            evaluation.plan([type(bench)(**{**vars(bench), **change})], CATALOG, bench_data=None,
                            pack_cache=tmp_path / "cache", offline=True, evalscope_version="x", repo_dir=repo)


def _run_agent(tmp_path: Path, job: JobSpec, repo: Path) -> tuple[int, list[dict[str, Any]], Path]:
    job_path = tmp_path / "job.json"
    job_path.write_text(job_to_json(job), encoding="utf-8")
    out = tmp_path / "out"
    code = cli.main(["run", "--job", str(job_path), "--out", str(out), "--cache", str(tmp_path / "cache"),
                     "--repo-dir", str(repo), "--quiet", "--offline"])
    return code, read_events(out / "events.jsonl"), out


def test_a_bad_row_fails_the_run_before_any_work_with_file_and_line(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", {"arith.csv": ARITH, "words.jsonl": WORDS + '{"question": "q"}\n'})
    code, events, out = _run_agent(tmp_path, planned("/eval general_mcq model=tiny"), repo)
    assert code == 1 and events[-1]["type"] == "finished" and events[-1]["status"] == "failed"
    assert events[-1]["reason"] == "`data/mcq/words.jsonl` line 4: no 'answer'"
    assert [e["type"] for e in events] == ["accepted", "finished"]  # refused before the model download
    assert not (out / "results.json").exists()
    missing = tmp_path / "missing"
    missing.mkdir()
    code, events, _ = _run_agent(missing, planned("/eval general_mcq model=tiny"), tmp_path / "empty-repo")
    assert code == 1 and "`data/mcq/` does not exist in this commit" in events[-1]["reason"]
