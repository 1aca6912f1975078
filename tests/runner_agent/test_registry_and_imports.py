"""The model presets against the installed ms-swift registry, and the agent parent's import weight."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from configs import load_catalog
from tests.paths import REPO

_REGISTRY_PROBE = r"""
import json, sys
import swift.model, swift.template  # noqa: F401  (registers every model and template)
from swift.model.model_meta import MODEL_MAPPING
from swift.template.register import TEMPLATE_MAPPING
known = {}
for model_type, meta in MODEL_MAPPING.items():
    for group in meta.model_groups:
        for m in group.models:
            for repo in (m.ms_model_id, m.hf_model_id):
                if repo:
                    known.setdefault(repo.lower(), []).append([model_type, group.template or meta.template])
print(json.dumps({"model_types": sorted(MODEL_MAPPING), "templates": sorted(TEMPLATE_MAPPING), "repos": known}))
"""


@pytest.mark.slow
def test_every_preset_names_a_model_type_and_template_ms_swift_knows() -> None:
    proc = subprocess.run([sys.executable, "-c", _REGISTRY_PROBE], capture_output=True, text=True, timeout=300,
                          check=True, cwd=REPO)
    registry = json.loads(proc.stdout.strip().splitlines()[-1])
    # The probe really read ms-swift's registry (an attribute renamed upstream would leave these empty and every
    # check below would pass vacuously).
    assert len(registry["model_types"]) > 50 and len(registry["templates"]) > 50 and len(registry["repos"]) > 100
    problems = []
    listed = 0
    for name, preset in load_catalog().models.items():
        if preset.model_type not in registry["model_types"]:
            problems.append(f"{name}: model_type {preset.model_type!r} is not registered in ms-swift")
        if preset.template not in registry["templates"]:
            problems.append(f"{name}: template {preset.template!r} is not registered in ms-swift")
        # Where ms-swift lists the repository itself, our pair must be the one it registers for it.
        for repo in (preset.modelscope_id, preset.hf_id):
            pairs = registry["repos"].get((repo or "").lower())
            listed += bool(pairs)
            if pairs and [preset.model_type, preset.template] not in pairs:
                problems.append(f"{name}: ms-swift registers {repo} as {pairs}, the preset says "
                                f"{[preset.model_type, preset.template]}")
    assert problems == []
    assert listed >= 5  # most hub presets are repositories ms-swift lists, so the pair check above did run


def test_the_agent_parent_never_imports_the_ml_stack() -> None:
    probe = ("import sys, runner_agent.cli, runner_agent.runner, runner_agent.evaluation, runner_agent.training, "
             "runner_agent.models, runner_agent.fetch\n"
             "heavy = sorted(m for m in ('torch', 'swift', 'evalscope', 'transformers', 'peft', 'matplotlib', "
             "'modelscope', 'huggingface_hub', 'datasets', 'numpy', 'bot') if m in sys.modules)\n"
             "print(heavy)")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True,
                          cwd=REPO)
    assert proc.stdout.strip() == "[]"
