"""The two images: hadolint-clean; the service image carries no agent and pulls in no ML stack, runs as non-root
with a /healthz check; the runner image pins the torch the project pins and runs the agent."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.deploy.support import DEPLOY, Stage, parse_dockerfile, run_tool, tool
from tests.paths import REPO

BOT = DEPLOY / "docker" / "bot.Dockerfile"
RUNNER = DEPLOY / "docker" / "runner.Dockerfile"
# What the service must never carry (bot/ never imports them; they are GBs and a larger attack surface).
HEAVY = {"torch", "ms-swift", "evalscope", "transformers", "peft", "bitsandbytes", "modelscope", "accelerate",
         "deepspeed", "triton"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _copied_sources(stage: Stage) -> list[str]:
    """Paths copied from the build context (not `--from=` another stage or image)."""
    sources: list[str] = []
    for instruction in stage.all("COPY"):
        if "--from=" in instruction.args:
            continue
        parts = [p for p in shlex.split(instruction.args) if not p.startswith("--")]
        sources += parts[:-1]
    return sources


def _user_ids(stage: Stage) -> tuple[int, int]:
    users = stage.all("USER")
    assert users, "the final stage must set USER"
    user, _, group = users[-1].args.partition(":")
    assert user.isdigit() and group.isdigit(), "USER must be numeric uid:gid (runAsNonRoot cannot check names)"
    return int(user), int(group)


def test_hadolint_passes() -> None:
    result = run_tool([tool("hadolint"), "--no-color", str(BOT), str(RUNNER)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_really_lints(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install requests\n")
    result = run_tool([tool("hadolint"), "--no-color", str(bad)])
    assert result.returncode == 1 and "DL3007" in result.stdout  # `latest` tag


# --- the service image ---------------------------------------------------------------------------------------


def test_bot_image_is_slim_python_311_and_non_root() -> None:
    _, stages = parse_dockerfile(BOT)
    assert all(s.base.startswith("python:3.11-slim") for s in stages)
    final = stages[-1]
    uid, gid = _user_ids(final)
    assert uid >= 1000 and gid >= 1000
    assert any("useradd" in r.args and f"--uid {uid}" in r.args for r in final.all("RUN"))


def test_bot_image_never_installs_the_agent_or_ml_stack() -> None:
    _, stages = parse_dockerfile(BOT)
    for stage in stages:
        for instruction in stage.instructions:
            if instruction.keyword in ("RUN", "COPY", "ADD"):
                text = instruction.args
                assert "[agent" not in text and ".[" not in text, f"line {instruction.line}: installs an extra"
                assert "runner_agent" not in text or "find_spec" in text, f"line {instruction.line}: copies the agent"
                for heavy in HEAVY - {"torch"}:
                    assert f"install {heavy}" not in text
                assert not re.search(r"pip install[^&]*\btorch\b", text), f"line {instruction.line}: installs torch"
    sources = _copied_sources(stages[0])
    assert "runner_agent" not in {Path(s).name for s in sources}


def test_bot_image_health_and_entrypoint() -> None:
    _, stages = parse_dockerfile(BOT)
    final = stages[-1]
    (healthcheck,) = final.all("HEALTHCHECK")
    assert "/healthz" in healthcheck.args and "PORT" in healthcheck.args
    env = " ".join(e.args for e in final.all("ENV"))
    port = re.search(r"\bPORT=(\d+)", env)
    assert port and final.all("EXPOSE")[0].args == port.group(1)
    assert json.loads(final.all("ENTRYPOINT")[0].args) == ["tunebot"]
    assert json.loads(final.all("CMD")[0].args) == ["serve"]


def test_bot_build_context_makes_a_wheel_without_agent_or_heavy_dependencies(tmp_path: Path) -> None:
    """Build the wheel from exactly what the Dockerfile copies, as `pip install .` in the image would."""
    _, stages = parse_dockerfile(BOT)
    context = tmp_path / "src"
    context.mkdir()
    for source in _copied_sources(stages[0]):
        origin = REPO / source
        assert origin.exists(), f"bot.Dockerfile copies {source}, which is not in the repository"
        target = context / source
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, target)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "w"),
         str(context)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "w").glob("tunebot-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(archive.read(meta_name).decode("utf-8"))
    packages = {n.split("/")[0] for n in names if "/" in n and ".dist-info" not in n}
    assert {"bot", "commands", "configs", "tunebot"} <= packages
    assert "runner_agent" not in packages
    base = [Requirement(r) for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]
    assert base, "the service must declare its dependencies"
    assert not {_norm(r.name) for r in base} & HEAVY


def _closure(requirements: list[Requirement]) -> set[str]:
    """Names of every installed distribution the requirements pull in, following their extras and markers."""
    names: set[str] = set()
    visited: set[tuple[str, frozenset[str]]] = set()
    queue = list(requirements)
    while queue:
        requirement = queue.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = _norm(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in visited:
            continue
        visited.add(key)
        names.add(name)
        try:
            requires = [Requirement(r) for r in metadata.requires(requirement.name) or []]
        except metadata.PackageNotFoundError:
            continue
        for dep in requires:
            if dep.marker is None or dep.marker.evaluate({"extra": ""}):
                queue.append(dep)
            elif any(dep.marker.evaluate({"extra": extra}) for extra in requirement.extras):
                queue.append(Requirement(str(dep).split(";")[0]))
    return names


def test_service_dependencies_never_reach_the_ml_stack() -> None:
    # Transitively, through the installed distributions' metadata: a base dependency that drags in torch (or
    # transformers...) fails here even if nobody names torch directly.
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pulled = _closure([Requirement(r) for r in project["dependencies"]])
    assert {"aiohttp", "sqlalchemy", "cryptography"} <= pulled  # the walk follows deps and extras
    assert not pulled & HEAVY, pulled & HEAVY
    # And the walk does see the ML stack where it is: behind the `agent` extra.
    assert {"torch", "ms-swift", "evalscope"} <= _closure([Requirement("tunebot[agent]")])


# --- the runner image ------------------------------------------------------------------------------------------


def test_runner_image_pins_the_projects_torch_and_installs_the_agent() -> None:
    _, stages = parse_dockerfile(RUNNER)
    final = stages[-1]
    assert final.base.startswith("nvidia/cuda:") and "runtime" in final.base
    torch_arg = next(a.args for a in final.all("ARG") if a.args.startswith("TORCH_VERSION="))
    makefile_pin = re.search(r"torch==([\d.]+)", (REPO / "Makefile").read_text())
    assert makefile_pin and torch_arg == f"TORCH_VERSION={makefile_pin.group(1)}"
    runs = " ".join(r.args for r in final.all("RUN"))
    assert '"torch==${TORCH_VERSION}" --index-url' in runs
    assert '-c /tmp/torch-constraint.txt ".[agent]"' in runs  # the extra cannot swap the CUDA torch
    for source in _copied_sources(final):
        assert (REPO / source).exists(), source
    assert "runner_agent" in _copied_sources(final)


def test_runner_image_runs_the_agent_as_the_runner_user() -> None:
    args, stages = parse_dockerfile(RUNNER)
    final = stages[-1]
    assert _user_ids(final) == (1001, 1001)  # the actions-runner image's uid, which ARC expects
    entrypoint = json.loads(final.all("ENTRYPOINT")[0].args)
    assert entrypoint[-3:] == ["tunebot", "agent", "run"]
    runner_source = args["RUNNER_IMAGE"]
    version = re.search(r":(\d+)\.(\d+)\.(\d+)$", runner_source)
    assert version and tuple(map(int, version.groups())) >= (2, 327, 1)  # node24 actions need 2.327.1+
    assert any("/home/runner" in c.args and "--from=actions-runner" in c.args for c in final.all("COPY"))
    assert not any("sudo" in r.args.split() for r in final.all("RUN")), "a job must not be able to become root"


@pytest.mark.parametrize("dockerfile", [BOT, RUNNER], ids=lambda p: p.name)
def test_no_secret_is_baked_into_an_image(dockerfile: Path) -> None:
    _, stages = parse_dockerfile(dockerfile)
    for stage in stages:
        for instruction in stage.all("ENV") + stage.all("ARG"):
            assert not re.search(r"(SECRET|TOKEN|PRIVATE_KEY|PASSWORD|SIGNING_KEY)\w*=", instruction.args), (
                f"{dockerfile.name} line {instruction.line}"
            )
