"""The bot's pack hash and the runner's check agree: a job planned from the bot's copy of the packs carries each
file pack's content hash (and its result keys follow it); the runner evaluates an identical copy and refuses a
tampered one with a reason for the card."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from commands.decision import Command
from commands.plan import PRFacts, plan
from commands.policy import DEFAULT_POLICY
from configs import BENCH_DATA_DIR, load_catalog, with_pack_digests
from runner_agent.errors import AgentError
from runner_agent.packs import verify_pack_content


def _eval(catalog):  # type: ignore[no-untyped-def]
    cmd = Command("eval", {"model": "tiny", "benchmarks": ("cmmlu",), "subsets": ("agronomy", "anatomy")})
    [pj] = plan(cmd, PRFacts(repo="o/r", head_sha="1" * 40), DEFAULT_POLICY, catalog, ["run-1"])
    return pj


def test_a_tampered_pack_is_refused_by_the_runner(tmp_path: Path) -> None:
    copy = tmp_path / "packs"
    shutil.copytree(BENCH_DATA_DIR, copy)
    pj = _eval(with_pack_digests(load_catalog(), copy))
    [bench] = pj.job.benchmarks
    assert bench.content_hash is not None and len(bench.content_hash) == 64
    # Without the bot's copy no hash is claimed, and the result key differs (it names the questions' content).
    bare = _eval(load_catalog())
    assert bare.job.benchmarks[0].content_hash is None
    assert bare.benchmark_keys["cmmlu"] != pj.benchmark_keys["cmmlu"]

    verify_pack_content("cmmlu", copy, bench.subsets, bench.content_hash)  # the same files: accepted
    target = copy / "cmmlu" / "test" / "agronomy.csv"
    data = bytearray(target.read_bytes())
    data[-3] ^= 1  # one byte of one answer row
    target.write_bytes(bytes(data))
    with pytest.raises(AgentError, match="this runner's copy of the pack differs from the bot's"):
        verify_pack_content("cmmlu", copy, bench.subsets, bench.content_hash)
