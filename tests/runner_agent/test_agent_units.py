"""Small pieces of the agent: configuration from flags and environment, scratch hygiene, error excerpts."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from runner_agent import cli
from runner_agent.procs import headline, meaningful
from runner_agent.report import tree_hash
from runner_agent.runner import (
    NVIDIA_MARKERS,
    SCRATCH_OWNER,
    _best_effort_identity,
    gpu_available,
    scratch_space,
    sweep_stale_scratch,
)
from tests.paths import REPO


def _config(argv: list[str], env: dict[str, str]):  # type: ignore[no-untyped-def]
    args = cli._parser().parse_args(argv)
    return cli.build_config(args, env)


def test_flags_win_over_environment_and_environment_over_defaults(tmp_path: Path) -> None:
    env = {"TUNEBOT_CACHE": str(tmp_path / "env-cache"), "TUNEBOT_OFFLINE": "yes", "TUNEBOT_HUB": "huggingface",
           "TUNEBOT_BENCH_DATA": str(tmp_path / "packs"), "TUNEBOT_MIN_FREE_GB": "3",
           "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"), "HOME": str(tmp_path)}
    cfg, _ = _config(["run", "--job", "j.json", "--out", str(tmp_path / "o")], env)
    assert cfg.cache == (tmp_path / "env-cache").resolve() and cfg.offline and cfg.hub == "huggingface"
    assert cfg.bench_data == (tmp_path / "packs").resolve() and cfg.min_free_gb == 3.0
    assert cfg.github_step_summary == tmp_path / "summary.md"
    cfg, _ = _config(["run", "--job", "j.json", "--out", "o", "--cache", str(tmp_path / "flag"), "--hub",
                      "modelscope", "--bench-data", str(tmp_path / "b")], env)
    assert cfg.cache == (tmp_path / "flag").resolve() and cfg.hub == "modelscope"
    assert cfg.bench_data == (tmp_path / "b").resolve() and cfg.bench_data_origin == "--bench-data"


def test_defaults_use_the_home_cache_and_the_shipped_samples(tmp_path: Path) -> None:
    cfg, notes = _config(["run", "--job", "j.json", "--out", "o"], {"HOME": str(tmp_path)})
    assert cfg.cache == (Path.home() / ".cache" / "tunebot").resolve()
    assert not cfg.offline and cfg.hub == "modelscope"
    # The samples ship inside the package, so a runner without --bench-data always has them.
    assert cfg.bench_data == (REPO / "configs" / "benchmarks" / "data").resolve()
    assert (cfg.bench_data / "cmmlu" / "test" / "agronomy.csv").is_file()
    assert cfg.bench_data_origin == "the samples shipped with tunebot"
    assert any("shipped with tunebot" in n for n in notes)


def test_the_agent_subcommand_is_routed_from_the_tunebot_cli() -> None:
    proc = subprocess.run([sys.executable, "-m", "tunebot", "agent", "run", "--help"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0
    assert "--bench-data" in proc.stdout and "143" in proc.stdout


def test_scratch_is_removed_whatever_happens(tmp_path: Path) -> None:
    root = tmp_path / "scratch"
    with pytest.raises(RuntimeError, match="boom"), scratch_space(root, "run-1") as path:  # the error goes on up
        (path / "big.bin").write_bytes(b"x" * 1000)
        raise RuntimeError("boom")
    assert path.parent == root and list(root.iterdir()) == []


def test_stale_scratch_of_a_dead_agent_is_swept(tmp_path: Path) -> None:
    root = tmp_path / "scratch"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale, alive, foreign = root / "old-1", root / "live-1", root / "other-host"
    for d, owner in ((stale, dead.pid), (alive, os.getpid())):
        d.mkdir(parents=True)
        (d / SCRATCH_OWNER).write_text(f"{socket.gethostname()}:{owner}\n", encoding="utf-8")
    foreign.mkdir()
    (foreign / SCRATCH_OWNER).write_text(f"elsewhere:{dead.pid}\n", encoding="utf-8")
    assert sweep_stale_scratch(root) == [stale]
    assert not stale.exists() and alive.exists() and foreign.exists()


def test_a_broken_job_still_yields_its_run_id_and_callback() -> None:
    assert _best_effort_identity('{"run_id": "r-1", "callback": {"url": "http://x", "token": "t"}, "kind": 3}') == (
        "r-1", {"url": "http://x", "token": "t"})
    assert _best_effort_identity('{"run_id": "../../etc"}') == ("invalid-job", None)
    assert _best_effort_identity("[1, 2]") == ("invalid-job", None)


def test_gpu_detection_reads_the_driver_files_and_respects_cuda_visible_devices(tmp_path: Path) -> None:
    ctl, version = tmp_path / "nvidiactl", tmp_path / "version"
    markers = (ctl, version)
    assert gpu_available({}, markers) is False  # no driver loaded
    version.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14\n", encoding="utf-8")
    assert gpu_available({}, markers) is True  # either file is enough
    assert gpu_available({"CUDA_VISIBLE_DEVICES": "0"}, markers) is True
    # Hidden on purpose: a driver is there, but the job must not use it.
    assert gpu_available({"CUDA_VISIBLE_DEVICES": ""}, markers) is False
    assert gpu_available({"CUDA_VISIBLE_DEVICES": " -1 "}, markers) is False
    version.unlink()
    ctl.write_text("", encoding="utf-8")
    assert gpu_available({}, markers) is True
    # By default it looks where the NVIDIA driver puts them.
    assert [str(m) for m in NVIDIA_MARKERS] == ["/dev/nvidiactl", "/proc/driver/nvidia/version"]


def test_adapter_digest_covers_every_file_name_and_byte(tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    (adapter / "sub").mkdir(parents=True)
    config, weights = b'{"r": 8}', bytes([0, 1])
    (adapter / "adapter_config.json").write_bytes(config)
    (adapter / "sub" / "weights.bin").write_bytes(weights)
    # sha256 over the sorted lines `<relative path>\0<sha256 of the file>\n`, computed here by hand.
    lines = b"".join(name + b"\0" + hashlib.sha256(data).hexdigest().encode() + b"\n"
                     for name, data in ((b"adapter_config.json", config), (b"sub/weights.bin", weights)))
    assert tree_hash(adapter) == (hashlib.sha256(lines).hexdigest(), 10)
    digests = {tree_hash(adapter)[0]}
    (adapter / "sub" / "weights.bin").write_bytes(bytes([0, 2]))  # one byte changed
    digests.add(tree_hash(adapter)[0])
    (adapter / "sub" / "weights.bin").rename(adapter / "sub" / "weight.bin")  # a name changed
    digests.add(tree_hash(adapter)[0])
    (adapter / "extra").write_bytes(b"")  # an empty file added
    digests.add(tree_hash(adapter)[0])
    assert len(digests) == 4


def test_error_excerpt_keeps_the_traceback_and_drops_noise() -> None:
    lines = [
        "Train:  10%|█         | 1/10 [00:00<00:00, 32.23it/s]",
        "Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'.",
        "[INFO:swift] loading model",
        "Traceback (most recent call last):",
        '  File "sft.py", line 3, in <module>',
        "    main()",
        "    ^^^^^^",
        "ValueError: remaining_argv: ['--train_type', 'lora']",
        "",
    ]
    kept = meaningful(lines)
    assert kept[0].startswith("Traceback") and kept[-1].startswith("ValueError")
    assert not any("%|" in k or "gemm_4bit" in k or k.strip() == "^^^^^^" for k in kept)
    assert headline(kept) == "ValueError: remaining_argv: ['--train_type', 'lora']"
    assert meaningful(["\x1b[31mERROR\x1b[0m: disk full"]) == ["ERROR: disk full"]
