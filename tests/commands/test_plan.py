"""Planning: every default resolved into the job spec, result keys that recognise identical work, config files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from commands import Command, Parsed, parse_comment
from commands.configfile import plan_config_file
from commands.jobspec import job_from_json, job_to_json
from commands.packs import repo_questions_hash
from commands.plan import (
    ConfigError,
    PlanError,
    PRFacts,
    TrainedRun,
    auto_train_matches,
    plan,
)
from commands.policy import Policy, parse_policy

REPO = Path(__file__).resolve().parents[2]
HEAD = "1" * 40
PR = PRFacts(repo="octo/demo", head_sha=HEAD, base_ref="main", number=7)


def pol(text: str | None = None, catalog=None) -> Policy:  # type: ignore[no-untyped-def]
    result = parse_policy(text, catalog=catalog)
    assert isinstance(result, Policy), result
    return result


def cmd(text: str, catalog, policy: Policy | None = None) -> Command:  # type: ignore[no-untyped-def]
    decision = parse_comment(text, catalog=catalog, policy=policy or pol())
    assert isinstance(decision, Parsed), decision
    return decision.commands[0]


def one(text: str, catalog, policy: Policy | None = None, pr: PRFacts = PR, run_id: str = "r-1"):  # type: ignore[no-untyped-def]
    policy = policy or pol()
    jobs = plan(cmd(text, catalog, policy), pr, policy, catalog, [run_id])
    assert len(jobs) == 1
    job = jobs[0].job
    assert job_from_json(job_to_json(job)) == job  # every planned job satisfies the strict contract
    return jobs[0]


def test_tiny_training_resolves_every_default(catalog) -> None:
    planned = one("/train tiny max_steps=20", catalog)
    job = planned.job
    assert (job.run_id, job.repo, job.sha, job.kind, job.tuner) == ("r-1", "octo/demo", HEAD, "train", "lora")
    assert job.callback is None and job.adapter is None
    assert job.model.source == "builtin" and job.model.id == "tiny" and job.model.template == "qwen"
    # size bracket < tiny's preset defaults < training preset `default` < key=value (values of configs/*.yaml:
    # tiny's own defaults beat its size bracket's learning_rate 1e-4, max_length 2048 and batch size 4)
    assert job.hyper.max_steps == 20
    assert job.hyper.num_train_epochs == 1.0  # the `default` training preset
    assert (job.hyper.lora_rank, job.hyper.lora_alpha, job.hyper.learning_rate, job.hyper.max_length,
            job.hyper.per_device_train_batch_size) == (8, 32, 1e-3, 1024, 8)
    assert job.hyper.torch_dtype == "float32"
    assert job.hyper.seed == 42  # nothing sets it: the contract's default
    assert [d.id for d in job.datasets] == ["tiny-mcq"]  # a built-in model trains on built-in data by default
    assert job.limits.wall_clock_s == 6 * 3600


def test_big_models_get_qlora_and_their_size_defaults(catalog) -> None:
    job = one("/train qwen2.5-7b-instruct dataset=alpaca-zh", catalog).job
    assert job.tuner == "qlora"
    assert (job.hyper.lora_rank, job.hyper.per_device_train_batch_size, job.hyper.torch_dtype) == (16, 2, "bfloat16")
    assert job.model.source == "modelscope" and job.model.id == "Qwen/Qwen2.5-7B-Instruct"
    assert job.datasets[0].source == "modelscope" and job.datasets[0].id == "AI-ModelScope/alpaca-gpt4-data-zh"
    small = one("/train qwen2.5-0.5b-instruct dataset=alpaca-zh", catalog).job
    assert small.tuner == "lora" and small.hyper.per_device_train_batch_size == 4
    assert one("/train qwen2.5-7b-instruct tuner=lora dataset=alpaca-zh", catalog).job.tuner == "lora"


def test_training_presets_and_overrides(catalog) -> None:
    job = one("/train qwen2.5-0.5b-instruct preset=qlora-7b lora_rank=64 dataset=alpaca-zh", catalog).job
    assert job.tuner == "qlora"  # the preset's tuner
    assert (job.hyper.lora_rank, job.hyper.gradient_accumulation_steps) == (64, 8)  # key=value beats the preset
    quick = one("/train tiny preset=quick", catalog).job
    assert (quick.hyper.max_steps, quick.hyper.save_steps) == (50, 50)


def test_hub_choice(catalog) -> None:
    hf = pol("hub: huggingface\nmodels: {trust_remote_code: [glm4-9b-chat, qwen-7b]}\n")
    job = one("/train glm4-9b-chat dataset=alpaca-zh", catalog, hf).job
    assert (job.model.source, job.model.id, job.model.trust_remote_code) == ("huggingface", "THUDM/glm-4-9b-chat",
                                                                             True)
    assert one("/train glm4-9b-chat hub=modelscope dataset=alpaca-zh", catalog, hf).job.model.source == "modelscope"
    assert one("/train tiny", catalog, hf).job.model.source == "builtin"
    assert one("/train THUDM/glm-4-9b-chat dataset=alpaca-zh", catalog, hf).job.model.source == "huggingface"
    rev = one("/train qwen-7b revision=v1.1.4 dataset=alpaca-zh", catalog, hf).job.model
    assert rev.revision == "v1.1.4"


def test_kind_follows_the_policys_default_benchmarks(catalog) -> None:
    with_eval = pol("benchmarks: {default: [cmmlu]}\n")
    job = one("/train tiny", catalog, with_eval).job
    assert job.kind == "train+eval"
    assert [(b.name, b.subsets, b.few_shot) for b in job.benchmarks] == [("cmmlu", ("agronomy", "anatomy"), 0)]
    assert one("/train tiny eval=none", catalog, with_eval).job.kind == "train"
    chosen = one("/train tiny eval=ceval,cmmlu", catalog).job
    assert chosen.kind == "train+eval" and [b.name for b in chosen.benchmarks] == ["ceval", "cmmlu"]


def test_datasets_local_and_limits(catalog) -> None:
    policy = pol("quotas: {max_run_hours: 0.5}\n")
    job = one("/train tiny dataset=tiny-mcq,train.jsonl max_samples=100", catalog, policy).job
    assert [(d.source, d.id, d.max_samples) for d in job.datasets] == [("builtin", "tiny-mcq", 100),
                                                                       ("local", "data/train.jsonl", 100)]
    assert job.limits.wall_clock_s == 1800


def test_result_keys_recognise_identical_work(catalog) -> None:
    a = one("/train tiny lora_rank=16 max_steps=20", catalog, run_id="r-1")
    b = one("/train   TINY max_steps=20 —lora_rank＝16 logging_steps=1", catalog, run_id="r-2")
    assert a.job.run_id != b.job.run_id and a.result_key == b.result_key  # wording, run id, logging: same work
    assert one("/train tiny lora_rank=8 max_steps=20", catalog).result_key != a.result_key
    assert one("/train tiny lora_rank=16 max_steps=20 seed=1", catalog).result_key != a.result_key
    other_head = replace(PR, head_sha="2" * 40)
    assert one("/train tiny lora_rank=16 max_steps=20", catalog, pr=other_head).result_key == a.result_key
    local = "/train tiny dataset=x.jsonl"
    assert one(local, catalog).result_key != one(local, catalog, pr=other_head).result_key  # repo data changes
    ms = one("/train qwen2.5-7b-instruct dataset=alpaca-zh", catalog)
    hf = one("/train qwen2.5-7b-instruct dataset=alpaca-zh hub=huggingface", catalog)
    assert ms.job.model.source != hf.job.model.source and ms.result_key == hf.result_key  # same weights
    full = one("/train tiny tuner=full", catalog)
    assert full.result_key == one("/train tiny tuner=full preset=default", catalog).result_key


def test_eval_plans_and_keys(catalog) -> None:
    planned = one("/eval ceval cmmlu model=tiny limit=10 force=true", catalog)
    job = planned.job
    assert job.kind == "eval" and job.tuner is None and not job.datasets and planned.force
    assert [(b.name, b.limit) for b in job.benchmarks] == [("ceval", 10), ("cmmlu", 10)]
    assert set(planned.benchmark_keys) == {"ceval", "cmmlu"}
    single = one("/eval cmmlu model=tiny limit=10", catalog)
    assert single.benchmark_keys["cmmlu"] == planned.benchmark_keys["cmmlu"]  # per-benchmark reuse
    assert not single.force
    allsubs = one("/eval ceval model=tiny subsets=all few_shot=5", catalog).job.benchmarks[0]
    assert len(allsubs.subsets) == 52 and list(allsubs.subsets) == sorted(allsubs.subsets) and allsubs.few_shot == 5
    mcq = "/eval general_mcq model=tiny"
    assert one(mcq, catalog).result_key != one(mcq, catalog, pr=replace(PR, head_sha="2" * 40)).result_key
    assert one("/eval cmmlu model=tiny", catalog).result_key == one(
        "/eval cmmlu model=tiny", catalog, pr=replace(PR, head_sha="2" * 40)).result_key


def test_repository_questions_are_planned_for_the_runner_to_find(catalog) -> None:
    """`/eval general_mcq` names the repository folder and leaves `all` for the runner, which sees the files."""
    bench = one("/eval general_mcq model=tiny", catalog).job.benchmarks[0]
    assert (bench.name, bench.subsets, bench.data_dir, bench.few_shot) == ("general_mcq", ("all",), "data/mcq", 0)
    assert one("/eval general_mcq model=tiny subsets=all", catalog).job.benchmarks[0].subsets == ("all",)
    named = one("/eval general_mcq model=tiny subsets=words,arith limit=3", catalog).job.benchmarks[0]
    assert (named.subsets, named.limit, named.data_dir) == (("arith", "words"), 3, "data/mcq")
    corpora = pol("datasets: {dir: corpora}")
    moved = one("/eval general_mcq model=tiny", catalog, policy=corpora)
    assert moved.job.benchmarks[0].data_dir == "corpora/mcq"
    # Another folder is other questions, at the same commit: another result.
    assert moved.benchmark_keys["general_mcq"] != one("/eval general_mcq model=tiny", catalog).benchmark_keys[
        "general_mcq"]
    # Packs the runner holds name no repository folder, and their keys do not depend on the policy's.
    cmmlu = one("/eval cmmlu model=tiny", catalog, policy=corpora)
    assert cmmlu.job.benchmarks[0].data_dir is None
    assert cmmlu.benchmark_keys == one("/eval cmmlu model=tiny", catalog).benchmark_keys
    trained = one("/train tiny eval=general_mcq,cmmlu", catalog).job
    assert [(b.name, b.data_dir, b.subsets) for b in trained.benchmarks] == [
        ("cmmlu", None, ("agronomy", "anatomy")), ("general_mcq", "data/mcq", ("all",))]
    with pytest.raises(PlanError, match=r"`general_mcq` has no few-shot examples .*`data/mcq/`\): leave out"):
        one("/eval general_mcq model=tiny few_shot=3", catalog)


def test_eval_of_an_adapter(catalog) -> None:
    train = one("/train tiny eval=cmmlu", catalog)
    pr = replace(PR, latest_train_run="r-9", trained_runs={"r-9": TrainedRun("r-9", "tiny", train.result_key)})
    planned = one("/eval cmmlu adapter=latest", catalog, pr=pr)
    assert planned.job.adapter is not None and planned.job.adapter.run_id == "r-9"
    assert planned.job.model.name == "tiny"
    # Evaluating the adapter later gives the key its train+eval run already stored: the result is reused.
    assert planned.benchmark_keys["cmmlu"] == train.benchmark_keys["cmmlu"]
    named = one("/eval cmmlu adapter=r-3 model=tiny", catalog, pr=pr)
    assert named.job.adapter is not None and named.job.adapter.run_id == "r-3"
    assert named.benchmark_keys["cmmlu"] != planned.benchmark_keys["cmmlu"]


EVAL_ERRORS = [
    ("/eval cmmlu adapter=latest", PR, "this PR has no successful training run yet"),
    ("/eval cmmlu adapter=r-3", PR, "which base model did run `r-3` train? add `model=<preset>`"),
]


@pytest.mark.parametrize(("text", "pr", "message"), EVAL_ERRORS)
def test_eval_plan_errors(catalog, text: str, pr: PRFacts, message: str) -> None:
    with pytest.raises(PlanError, match=message.replace("?", r"\?")):
        one(text, catalog, pr=pr)


def test_plan_errors_for_commands_built_by_hand(catalog) -> None:
    policy = pol()
    with pytest.raises(PlanError, match="which model"):
        plan(Command("eval", {"benchmarks": ("cmmlu",)}), PR, policy, catalog, ["r"])
    with pytest.raises(PlanError, match="which benchmark"):
        plan(Command("eval", {"model": "tiny"}), PR, policy, catalog, ["r"])
    with pytest.raises(PlanError, match="unknown model `gpt`"):
        plan(Command("eval", {"model": "gpt", "benchmarks": ("cmmlu",)}), PR, policy, catalog, ["r"])
    with pytest.raises(PlanError, match="which data"):
        plan(Command("train", {"model": "qwen2.5-7b-instruct"}), PR, policy, catalog, ["r"])
    with pytest.raises(PlanError, match="no run id left"):
        plan(Command("train", {"model": "tiny"}), PR, policy, catalog, [])
    with pytest.raises(PlanError, match="run_id"):
        plan(Command("train", {"model": "tiny"}), PR, policy, catalog, ["bad id"])


def test_compare_plans_the_head_side(catalog) -> None:
    pr = replace(PR, latest_train_run="r-9", trained_runs={"r-9": TrainedRun("r-9", "tiny")},
                 latest_benchmarks=("ceval",))
    planned = one("/compare", catalog, pr=pr)
    assert planned.compare_ref == "main" and [b.name for b in planned.job.benchmarks] == ["ceval"]
    assert planned.job.adapter is not None and planned.job.adapter.run_id == "r-9"
    chosen = one("/compare v1.0 cmmlu force=true", catalog, pr=pr)
    assert chosen.compare_ref == "v1.0" and chosen.force and [b.name for b in chosen.job.benchmarks] == ["cmmlu"]
    base = one("/compare cmmlu", catalog, pol("models: {default: tiny}\n"))
    assert base.job.adapter is None and base.job.model.name == "tiny"
    with pytest.raises(PlanError, match="nothing to compare yet"):
        one("/compare cmmlu", catalog)
    with pytest.raises(PlanError, match="which benchmark"):
        one("/compare", catalog, pr=replace(pr, latest_benchmarks=()))


def test_compare_uses_the_policys_default_benchmarks(catalog) -> None:
    policy = pol("benchmarks: {default: [ceval]}\nmodels: {default: tiny}\n")
    planned = one("/compare", catalog, policy, pr=replace(PR, latest_benchmarks=("cmmlu",)))
    assert [b.name for b in planned.job.benchmarks] == ["ceval"]


def test_a_preset_may_unset_a_hyper_parameter(catalog) -> None:
    from commands.catalog import TrainingPreset

    training = {**catalog.training, "epochs-only": TrainingPreset("epochs-only", "", None, {"max_steps": None,
                                                                                            "num_train_epochs": 2})}
    cat = replace(catalog, training=training)
    job = plan(Command("train", {"model": "tiny", "preset": "epochs-only", "max_steps": 5}), PR, pol(), cat,
               ["r"])[0].job
    assert job.hyper.max_steps == 5 and job.hyper.num_train_epochs == 2.0
    job = plan(Command("train", {"model": "tiny", "preset": "epochs-only"}), PR, pol(), cat, ["r"])[0].job
    assert job.hyper.max_steps is None


def test_verbs_without_jobs_plan_nothing(catalog) -> None:
    for text in ("/status", "/cancel r-1", "/retry r-1", "/leaderboard", "/ok-to-train"):
        assert plan(cmd(text, catalog), PR, pol(), catalog, iter(["r"])) == []


# --- declarative configs ------------------------------------------------------------------------------------------


def test_example_config_plans_the_same_job_as_its_train_line(catalog) -> None:
    text = (REPO / "configs" / "examples" / "train-config.yaml").read_text()
    line = ("/train qwen2.5-0.5b-instruct tuner=lora preset=quick dataset=alpaca-zh,data/sft.jsonl max_samples=2000 "
            "lora_rank=16 lora_alpha=32 learning_rate=2e-4 max_length=1024 seed=7 eval=ceval,cmmlu")
    assert line.split(" ", 1)[1] in " ".join(text.replace("#", "").split())  # the file documents this very line
    policy = pol()
    from_file = plan_config_file(text, "configs/examples/train-config.yaml", PR, policy, catalog, ["r-1"])
    from_line = plan(cmd(line, catalog), PR, policy, catalog, ["r-1"])
    assert from_file == from_line
    assert from_file[0].job.kind == "train+eval" and from_file[0].job.hyper.learning_rate == 2e-4


def test_files_without_the_marker_are_not_configs(catalog) -> None:
    for text in ("model: tiny\n", "- a\n", "", "key: [unclosed\n"):
        assert plan_config_file(text, "configs/x.yaml", PR, pol(), catalog, ["r"]) == []
    with pytest.raises(ConfigError, match="line 3: not valid YAML"):
        plan_config_file("tunebot: train\nmodel: [tiny\n", "configs/x.yaml", PR, pol(), catalog, ["r"])


CONFIG_ERRORS = [
    ("tunebot: eval\nmodel: tiny\n", 1, "`tunebot:` must be `train`"),
    ("tunebot: train\n", 1, "needs `model: <preset>`"),
    ("tunebot: train\nmodel: tiny\nmodle: x\n", 3, "unknown setting `modle`; did you mean `model`?"),
    ("tunebot: train\nmodel: gpt-5\n", 2, "unknown model `gpt-5`"),
    ("tunebot: train\nmodel: tiny\nhyper:\n  lora_rank: 999\n", 4, "between 1 and 256"),
    ("tunebot: train\nmodel: tiny\nhyper:\n  lora_rnak: 8\n", 4, "unknown hyper-parameter `lora_rnak`; did you mean "
                                                            "`lora_rank`?"),
    ("tunebot: train\nmodel: tiny\nhyper:\n  tuner: lora\n", 4, "unknown hyper-parameter `tuner`"),
    ("tunebot: train\nmodel: tiny\nhyper: [1]\n", 3, "`hyper` is a mapping"),
    ("tunebot: train\nmodel: tiny\nhyper:\n  seed: {a: 1}\n", 4, "must be a word, a number or a list"),
    ("tunebot: train\nmodel: tiny\ndatasets: [tiny-mcq, ../../etc/x.jsonl]\n", 3, "is not a valid value"),
    ("tunebot: train\nmodel: tiny\ndatasets: [nope]\n", 3, "unknown dataset `nope`"),
    ("tunebot: train\nmodel: tiny\ndatasets:\n  - tiny-mcq\n  - nope\n", 5, "unknown dataset `nope`"),
    ("tunebot: train\nmodel: tiny\nhyper:\n  seed: true\n", 4, "`seed` must be a whole number"),
    ("tunebot: train\nmodel: tiny\nbenchmarks: [1, 2]\n", 3, "must be a word, a number or a list of names"),
    ("tunebot: train\nmodel: tiny\ndataset: tiny-mcq\ndatasets: [tiny-mcq]\n", 4, "is given twice"),
    ("tunebot: train\nmodel: tiny\ntuner: adapter\n", 3, "`tuner` must be one of"),
    ("tunebot: train\nmodel: tiny\nbenchmarks: [mmlu]\n", 3, "unknown benchmark `mmlu`"),
    ("tunebot: train\nmodel: tiny\ntuner: full\nhyper:\n  lora_rank: 8\n", 5, "does not apply to `tuner=full`"),
    ("tunebot: train\nmodel: tiny\nhyper:\n  seed: 1\n  seed: 2\n", 5, "duplicate key `seed`"),
]


@pytest.mark.parametrize(("text", "line", "message"), CONFIG_ERRORS)
def test_config_errors_point_at_the_line(catalog, text: str, line: int, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        plan_config_file(text, "configs/sft.yaml", PR, pol(), catalog, ["r"])
    assert err.value.line == line, err.value
    assert message in err.value.message
    assert str(err.value).startswith(f"`configs/sft.yaml` line {line}: ")


def test_config_plan_errors_name_the_file(catalog) -> None:
    text = "tunebot: train\nmodel: tiny\n"
    with pytest.raises(ConfigError) as err:
        plan_config_file(text, "configs/x.yaml", PR, pol(), catalog, [])
    assert str(err.value).startswith("`configs/x.yaml`: ")


def test_config_booleans_and_numbers_become_the_same_values(catalog) -> None:
    text = "tunebot: train\nmodel: tiny\nhyper:\n  learning_rate: 1e-4\n  num_train_epochs: 2\nmax_samples: 10\n"
    jobs = plan_config_file(text, "c.yaml", PR, pol(), catalog, ["r"])
    assert jobs == plan(cmd("/train tiny lr=0.0001 epochs=2 max_samples=10", catalog), PR, pol(), catalog, ["r"])


def test_auto_train_paths() -> None:
    on = pol("auto_train: {enabled: true, paths: ['configs/**.yaml', 'train/*.yml', 'x?.yaml', 'deep/**/c.yaml']}\n")
    assert auto_train_matches("configs/a.yaml", on)
    assert auto_train_matches("configs/sub/dir/a.yaml", on)
    assert auto_train_matches("train/a.yml", on) and not auto_train_matches("train/sub/a.yml", on)
    assert auto_train_matches("x1.yaml", on) and not auto_train_matches("x/.yaml", on)
    assert auto_train_matches("deep/c.yaml", on) and auto_train_matches("deep/a/b/c.yaml", on)
    assert not auto_train_matches("configs/a.json", on) and not auto_train_matches("other/configs/a.yaml", on)
    assert not auto_train_matches("configs/a.yaml", pol())  # off by default


def test_repository_questions_known_by_their_blobs_are_keyed_by_content_not_commit(catalog) -> None:
    """With the folder's listing (path -> git blob), the questions' content hash goes into the job and the key; the
    same files at another commit give the same key, a changed file another one."""
    mcq = "/eval general_mcq model=tiny"
    files = {"data/mcq/arith.csv": "a" * 40, "data/mcq/geo.jsonl": "b" * 40, "data/mcq/README.md": "c" * 40}
    pr1 = replace(PR, question_dirs={"data/mcq": files})
    pr2 = replace(PR, head_sha="2" * 40, question_dirs={"data/mcq": files})
    one1, one2 = one(mcq, catalog, pr=pr1), one(mcq, catalog, pr=pr2)
    bench = one1.job.benchmarks[0]
    # Only the question files count (a README is not a question set).
    assert bench.content_hash == repo_questions_hash({"data/mcq/arith.csv": "a" * 40, "data/mcq/geo.jsonl": "b" * 40})
    assert one1.result_key == one2.result_key
    changed = replace(PR, head_sha="2" * 40, question_dirs={"data/mcq": {**files, "data/mcq/geo.jsonl": "d" * 40}})
    assert one(mcq, catalog, pr=changed).result_key != one1.result_key
    # One subset: only its file.
    sub = one("/eval general_mcq model=tiny subsets=arith", catalog, pr=pr1).job.benchmarks[0]
    assert sub.content_hash == repo_questions_hash({"data/mcq/arith.csv": "a" * 40})
    # A subset without a file: left for the runner to say so (keyed on the commit).
    assert one("/eval general_mcq model=tiny subsets=nope", catalog, pr=pr1).job.benchmarks[0].content_hash is None
    # Without the listing the key follows the commit, as before.
    assert one(mcq, catalog).job.benchmarks[0].content_hash is None
