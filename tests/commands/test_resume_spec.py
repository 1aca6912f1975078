"""The job spec's `resume` field: only training resumes, and it names a run, a step and the archive's hash."""

from __future__ import annotations

from dataclasses import replace

import pytest

from commands.jobspec import (
    DatasetRef,
    JobSpec,
    ModelRef,
    ResumeRef,
    SpecError,
    job_from_json,
    job_to_json,
    validate_job,
)

MODEL = ModelRef(name="tiny", source="builtin", id="tiny", model_type="qwen2", template="qwen")
JOB = JobSpec(run_id="r-2", repo="o/r", sha="a" * 40, kind="train", model=MODEL, tuner="lora",
              datasets=(DatasetRef("tiny-mcq", "builtin", "tiny-mcq"),))


def test_resume_round_trips_and_is_absent_when_unset() -> None:
    job = replace(JOB, resume=ResumeRef(run_id="r-1", step=20, sha256="b" * 64))
    assert job_from_json(job_to_json(job)) == job
    assert '"resume"' not in job_to_json(JOB)  # older runners never see the field


@pytest.mark.parametrize("ref", [ResumeRef("r-1", 0, "b" * 64), ResumeRef("r-1", 20, "nothex"),
                                 ResumeRef("", 20, "b" * 64)])
def test_bad_resume_refs_are_refused(ref: ResumeRef) -> None:
    with pytest.raises(SpecError, match="resume"):
        validate_job(replace(JOB, resume=ref))


def test_only_training_resumes() -> None:
    from commands.jobspec import BenchmarkSpec

    evaluation = replace(JOB, kind="eval", tuner=None, datasets=(), benchmarks=(BenchmarkSpec("cmmlu"),),
                         resume=ResumeRef("r-1", 20, "b" * 64))
    with pytest.raises(SpecError, match="only a training job"):
        validate_job(evaluation)
