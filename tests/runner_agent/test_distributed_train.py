"""Distributed training through ms-swift (issue 14): `resources.gpus` processes per node started by torchrun, and
several nodes meeting at node 0's rendezvous; on CPU the processes talk over gloo, which is how CI covers the path.
Progress and the adapter come from global rank 0."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from commands.jobspec import SpecError, job_from_dict
from runner_agent.errors import AgentError
from runner_agent.sinks import read_events
from runner_agent.training import NodePlace, distributed_env, sft_argv
from tests.paths import REPO
from tests.runner_agent.conftest import agent_argv, agent_env, run_agent, tiny_job

STEPS = 6


def _train_job(run_id: str, resources: dict[str, Any]) -> dict[str, Any]:
    return tiny_job(run_id, kind="train", benchmarks=[], resources=resources,
                    hyper={"max_steps": STEPS, "logging_steps": 2, "save_steps": STEPS, "max_length": 256,
                           "per_device_train_batch_size": 2})


def test_resources_are_validated_in_the_job_spec() -> None:
    assert job_from_dict(_train_job("r1", {"gpus": 4, "nodes": 2, "sharding": "zero3"})).resources is not None
    for bad, match in (({"gpus": 3}, "power of two"), ({"gpus": 32}, "power of two"), ({"nodes": 0}, "nodes"),
                       ({"gpus": 2, "sharding": "zero9"}, "sharding")):
        with pytest.raises(SpecError, match=match):
            job_from_dict(_train_job("r2", bad))
    with pytest.raises(SpecError, match="only a training job"):
        job_from_dict(tiny_job("r3", kind="eval", tuner=None, datasets=[], resources={"gpus": 2}))


def test_distributed_env_and_argv() -> None:
    job = job_from_dict(_train_job("d1", {"gpus": 2, "nodes": 1}))
    env = distributed_env(job, NodePlace(), gpu=False)
    assert env["NPROC_PER_NODE"] == "2" and env["NNODES"] == "1" and env["NODE_RANK"] == "0"
    assert env["MASTER_ADDR"] == "127.0.0.1" and int(env["MASTER_PORT"]) > 0
    argv = sft_argv(job, _Model(), [], Path("/o"), gpu=False)
    assert argv[argv.index("--ddp_backend") + 1] == "gloo"
    assert "--ddp_backend" not in sft_argv(job, _Model(), [], Path("/o"), gpu=True)  # NCCL, torch's default
    single = job_from_dict(_train_job("d2", {"gpus": 1, "nodes": 1}))
    assert distributed_env(single, NodePlace(), gpu=False) == {}
    two = job_from_dict(_train_job("d3", {"gpus": 4, "nodes": 2, "sharding": "zero3"}))
    with pytest.raises(AgentError, match="rendezvous"):
        distributed_env(two, NodePlace(node_rank=1), gpu=True)
    env = distributed_env(two, NodePlace(1, "tunebot-run-abc.default.svc", 29500), gpu=True)
    assert env == {"NPROC_PER_NODE": "4", "NNODES": "2", "NODE_RANK": "1",
                   "MASTER_ADDR": "tunebot-run-abc.default.svc", "MASTER_PORT": "29500"}
    argv = sft_argv(two, _Model(), [], Path("/o"), gpu=True)
    assert argv[argv.index("--deepspeed") + 1] == "zero3"
    with pytest.raises(AgentError, match="need GPUs"):
        distributed_env(two, NodePlace(0, "x", 1), gpu=False)
    with pytest.raises(AgentError, match="outside"):
        distributed_env(two, NodePlace(2, "x", 1), gpu=True)
    fsdp = job_from_dict(_train_job("d4", {"gpus": 2, "sharding": "fsdp2"}))
    argv = sft_argv(fsdp, _Model(), [], Path("/o"), gpu=True)
    assert argv[argv.index("--fsdp") + 1] == "fsdp2"


class _Model:
    path = Path("/m")


def _world_sizes(log: Path) -> set[str]:
    import re

    # `world_size: N` as ms-swift logs it (not `local_world_size`, the processes on one node).
    return set(re.findall(r"(?<![\w])world_size: (\d+)", log.read_text(encoding="utf-8", errors="replace")))


@pytest.mark.slow  # ~110 s on the shared 2-core machine
def test_gpus_2_trains_with_two_processes_and_reports_progress(agent_cache: Path, tmp_path: Path) -> None:
    run = run_agent(tmp_path, agent_cache, _train_job("ddp-2", {"gpus": 2, "nodes": 1}))
    assert run.code == 0, run.stderr[-3000:]
    log = run.out / "logs" / "swift-sft.log"
    assert "torch.distributed.run --nproc_per_node 2" in log.read_text(encoding="utf-8", errors="replace")
    assert _world_sizes(log) == {"2"}
    steps = [e["step"] for e in run.events if e["type"] == "progress" and e.get("phase") == "train"]
    assert steps and steps[-1] == STEPS and steps == sorted(steps)  # rank 0's log, each step once
    assert (run.out / "adapter" / "adapter_model.safetensors").is_file()
    assert run.results["manifest"]["resources"] == {"gpus": 2, "nodes": 1}
    assert run.results["train"]["steps"] == STEPS


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow  # ~110 s on the shared 2-core machine
def test_two_nodes_on_the_loopback_train_one_job(agent_cache: Path, tmp_path: Path) -> None:
    """Two agents, as two nodes of one job, meet at node 0's rendezvous on 127.0.0.1: node 0 reports progress and
    keeps the adapter; node 1 trains its share and reports nothing to the bot."""
    job = _train_job("two-nodes", {"gpus": 1, "nodes": 2})
    port = _port()
    procs = []
    for rank in (0, 1):
        d = tmp_path / f"node{rank}"
        d.mkdir()
        (d / "job.json").write_text(json.dumps(job), encoding="utf-8")
        argv = agent_argv(d / "job.json", d / "out", agent_cache, "--node-rank", str(rank), "--master-addr",
                          "127.0.0.1", "--master-port", str(port))
        procs.append(subprocess.Popen(argv, cwd=REPO, env=agent_env(), stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True))
    deadline = time.monotonic() + 600
    errs = []
    for p in procs:
        _, err = p.communicate(timeout=max(1, deadline - time.monotonic()))
        errs.append(err)
    assert [p.returncode for p in procs] == [0, 0], errs
    for rank in (0, 1):
        log = tmp_path / f"node{rank}" / "out" / "logs" / "swift-sft.log"
        text = log.read_text(encoding="utf-8", errors="replace")
        assert f"--nnodes 2 --node_rank {rank} --master_addr 127.0.0.1" in text
        assert _world_sizes(log) == {"2"}
    node0 = tmp_path / "node0" / "out"
    steps = [e["step"] for e in read_events(node0 / "events.jsonl") if e["type"] == "progress"]
    assert steps and steps[-1] == STEPS
    assert (node0 / "adapter" / "adapter_model.safetensors").is_file()
    node1 = tmp_path / "node1" / "out"
    assert not (node1 / "adapter").exists() and not (node1 / "results.json").exists()
    assert [e["status"] for e in read_events(node1 / "events.jsonl") if e["type"] == "finished"] == ["succeeded"]
