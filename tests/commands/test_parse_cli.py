"""`tunebot parse`: the debug CLI prints the decision (and optionally the plan) as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunebot.parse_cmd import main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    code = main(argv)
    return code, json.loads(capsys.readouterr().out)


def test_parsed(capsys) -> None:
    code, out = run(["/train tiny max_steps=20"], capsys)
    assert code == 0 and out["outcome"] == "parsed"
    assert out["commands"][0]["render"] == "/train tiny max_steps=20"
    assert out["commands"][0]["args"] == {"max_steps": 20, "model": "tiny"}


def test_reply_and_ignore(capsys) -> None:
    code, out = run(["/train qwen-7b lora_rnak=16"], capsys)
    assert code == 0 and out["outcome"] == "reply" and "did you mean `lora_rank`" in out["text"]
    code, out = run(["> /train tiny"], capsys)
    assert out == {"outcome": "ignore", "reason": "no command (ignored command-like lines: line 1: quoted (`>`))"}


def test_policy_file_and_plan(tmp_path: Path, capsys) -> None:
    policy = tmp_path / ".tunebot.yml"
    policy.write_text("benchmarks: {default: [cmmlu]}\nmodels: {default: tiny}\n")
    code, out = run(["/train\n/eval ceval adapter=latest", "--policy", str(policy), "--plan", "--repo", "o/r",
                     "--latest-train-run", "r-5"], capsys)
    assert code == 0 and len(out["plan"]) == 2
    train, evaluation = out["plan"]
    assert train["job"]["kind"] == "train+eval" and train["job"]["repo"] == "o/r"
    assert train["job"]["run_id"] == "local-1" and len(train["result_key"]) == 64
    assert "which base model did run `r-5` train" in evaluation["error"]


def test_bad_policy_file(tmp_path: Path, capsys) -> None:
    policy = tmp_path / ".tunebot.yml"
    policy.write_text("language: fr\n")
    code, out = run(["/status", "--policy", str(policy)], capsys)
    assert code == 1 and out["policy_error"] and out["text"].startswith("`.tunebot.yml` line 1:")
    assert main(["/status", "--policy", str(tmp_path / "missing.yml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_comment_from_stdin() -> None:
    import subprocess
    import sys

    from tests.paths import REPO

    res = subprocess.run([sys.executable, "-m", "tunebot", "parse", "-", "--bot-login", "tunebot"],
                         input="@tunebot status r-1\n", capture_output=True, text=True, timeout=60, cwd=REPO)
    out = json.loads(res.stdout)
    assert res.returncode == 0 and out["commands"][0]["args"] == {"run": "r-1"}


def test_through_the_composition_root(capsys) -> None:
    from tunebot.cli import main as cli

    assert cli(["parse", "/help"]) == 0
    assert json.loads(capsys.readouterr().out)["outcome"] == "reply"
