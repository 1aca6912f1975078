"""Model acquisition against fake Hugging Face and ModelScope hubs on 127.0.0.1: resume, cache, offline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.paths import REPO
from tests.runner_agent.helpers import FakeHfHub, FakeModelScope

REPO_ID = "tunebot-test/tiny-qwen2"


def _job(tmp_path: Path, repo: str = REPO_ID, name: str = "hf-tiny", source: str = "huggingface") -> Path:
    job = {
        "version": 1, "run_id": "fetch-1", "repo": "o/r", "sha": "0" * 40, "kind": "eval",
        "model": {"name": name, "source": source, "id": repo, "hf_id": repo, "model_type": "qwen2",
                  "template": "qwen", "revision": None, "trust_remote_code": False},
        "benchmarks": [{"name": "cmmlu", "subsets": ["agronomy"], "limit": 2, "few_shot": 0, "max_tokens": 4}],
    }
    path = tmp_path / f"job-{name}.json"
    path.write_text(json.dumps(job), encoding="utf-8")
    return path


def _files(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "repo-files"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "qwen2", "vocab_size": 2048}), encoding="utf-8")
    (d / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {}}), encoding="utf-8")
    (d / "model.safetensors").write_bytes(os.urandom(3 * 1024 * 1024))
    (d / "pytorch_model.bin").write_bytes(os.urandom(1024 * 1024))  # a duplicate format: must not be fetched
    return {p.name: p for p in d.iterdir()}


def _fetch(job: Path, cache: Path, *extra: str, hub: str = "huggingface") -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TUNEBOT_", "MODELSCOPE_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "runner_agent.cli", "fetch", "--job", str(job), "--cache", str(cache),
         "--hub", hub, *extra],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


def _gets(hub: FakeHfHub | FakeModelScope, name: str) -> list[tuple[str, str, str | None]]:
    return [r for r in hub.log.requests
            if r[0] == "GET" and (r[1].endswith(f"/{name}") or r[1].endswith(f"FilePath={name}"))]


@pytest.mark.parametrize("which", ["huggingface", "modelscope"])
def test_interrupted_download_resumes_then_the_cache_serves_with_no_network(tmp_path: Path, which: str) -> None:
    files = _files(tmp_path)
    cache = tmp_path / "cache"
    # A ModelScope id on ModelScope by default; a Hugging Face source always goes to the HF hub.
    job = _job(tmp_path, source="modelscope" if which == "modelscope" else "huggingface")
    size = files["model.safetensors"].stat().st_size
    fake = FakeHfHub if which == "huggingface" else FakeModelScope
    with fake(REPO_ID, files, chunk=32 * 1024, delay=0.02) as hub:
        # 1. Start, and stop the agent part-way through the big file.
        proc = _fetch(job, cache, "--endpoint", hub.url, hub=which)
        deadline = time.monotonic() + 60
        while hub.log.bytes_sent < size // 4 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 143, err
        assert "cancelled by SIGTERM" in err
        first_bytes = hub.log.bytes_sent
        partial = list(cache.glob(f"models/{which}/*/*.partial/model.safetensors"))
        assert partial and 0 < partial[0].stat().st_size < size
        # The agent's process group is gone: no download keeps running behind its back.
        sent = hub.log.bytes_sent
        time.sleep(0.3)
        assert hub.log.bytes_sent == sent

        # 2. Again: the partial file is resumed with a Range request, not downloaded anew.
        hub.delay = 0.0
        hub.reset_log()
        proc = _fetch(job, cache, "--endpoint", hub.url, hub=which)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        ranged = [r for r in _gets(hub, "model.safetensors") if r[2]]
        assert ranged, hub.log.requests
        resumed_from = int(ranged[-1][2].split("=")[1].rstrip("-"))
        assert resumed_from > 0
        assert hub.log.bytes_sent < size + 4096  # only the rest of the big file, plus the small files
        assert first_bytes + hub.log.bytes_sent < 2 * size
        assert not _gets(hub, "pytorch_model.bin")  # duplicate weights are skipped when safetensors exist
        path = Path(out.strip().split(" -> ")[-1])
        assert (path / "model.safetensors").read_bytes() == files["model.safetensors"].read_bytes()

        # 3. A third run of the same model touches no network at all.
        hub.reset_log()
        proc = _fetch(job, cache, "--endpoint", hub.url, hub=which)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert hub.log.requests == [] and hub.log.bytes_sent == 0
        assert out.strip().endswith(str(path))


def test_offline_uses_only_the_cache_and_names_the_missing_model(tmp_path: Path) -> None:
    files = _files(tmp_path)
    cache = tmp_path / "cache"
    with FakeHfHub(REPO_ID, files) as hub:
        proc = _fetch(_job(tmp_path), cache, "--endpoint", hub.url)
        assert proc.wait(timeout=120) == 0
        hub.reset_log()
        # Cached: offline works and asks nothing.
        proc = _fetch(_job(tmp_path), cache, "--endpoint", hub.url, "--offline")
        assert proc.wait(timeout=60) == 0
        # Not cached: a clear failure that names the model, and still no request.
        proc = _fetch(_job(tmp_path, "tunebot-test/other-model", "other"), cache, "--endpoint", hub.url, "--offline")
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 1
        assert "model 'other' (huggingface: tunebot-test/other-model) is not in the cache" in err
        assert "offline" in err
        assert hub.log.requests == []


@pytest.mark.parametrize("which", ["huggingface", "modelscope"])
def test_unknown_model_on_the_hub(tmp_path: Path, which: str) -> None:
    fake = FakeHfHub if which == "huggingface" else FakeModelScope
    with fake(REPO_ID, _files(tmp_path)) as hub:
        job = _job(tmp_path, "tunebot-test/no-such-model", "ghost", source=which)
        proc = _fetch(job, tmp_path / "cache", "--endpoint", hub.url, hub=which)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "unknown model 'ghost'" in err and "tunebot-test/no-such-model" in err


@pytest.mark.parametrize("repo", ["../etc/passwd", "-rf", "a/b/c"])
def test_repository_ids_are_validated(tmp_path: Path, repo: str) -> None:
    proc = _fetch(_job(tmp_path, repo, "bad"), tmp_path / "cache", "--endpoint", "http://127.0.0.1:9")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "is not a valid huggingface repository id" in err


