"""`.tunebot.yml`: defaults, every setting, and errors that point at the line — including hostile YAML."""

from __future__ import annotations

import time
from typing import Any

import pytest

from commands.compare import RegressionRule
from commands.policy import DEFAULT_POLICY, Notify, Policy, PolicyError, Quotas, parse_policy
from commands.safeyaml import MAX_CHARS, load

FULL = """\
version: 1
language: zh
hub: huggingface
models:
  allowed: [tiny, qwen2.5-7b-instruct]
  default: tiny
benchmarks:
  default: [cmmlu, ceval]
datasets:
  dir: corpora/sft
  default: [alpaca-zh]
  hub:
    my-sft: {source: modelscope, id: my-org/my-sft, description: "our data"}
permissions:
  train: maintain
  eval: triage
  approve: admin
  approval_ttl_hours: 24
forks: deny
quotas:
  runs_per_user_per_day: 5
  gpu_hours_per_day: unlimited
  commands_per_comment: 2
  max_run_hours: 2.5
auto_train:
  enabled: true
  paths: ["configs/**.yaml", "train/*.yml"]
notify:
  slack: "#ml-runs"
  dingtalk: ml-robot
regression:
  - benchmark: cmmlu
    max_loss: 1.0
    require_significance: true
  - benchmark: "*"
    min_gain: 0.5
"""


def test_absent_or_empty_file_gives_defaults() -> None:
    assert parse_policy(None) == DEFAULT_POLICY
    assert parse_policy("") == DEFAULT_POLICY
    assert parse_policy("# only a comment\n") == DEFAULT_POLICY
    assert parse_policy("---\n") == DEFAULT_POLICY
    d = DEFAULT_POLICY
    assert (d.language, d.min_permission_train, d.min_permission_eval, d.fork_policy) == ("en", "write", "write",
                                                                                            "approval")
    assert d.auto_train is False and d.regression == () and d.default_benchmarks == ()


def test_every_setting_is_read(catalog) -> None:
    policy = parse_policy(FULL, catalog=catalog)
    assert isinstance(policy, Policy), policy
    assert policy.language == "zh" and policy.hub == "huggingface"
    assert policy.allowed_models == ("tiny", "qwen2.5-7b-instruct") and policy.default_model == "tiny"
    assert policy.default_benchmarks == ("cmmlu", "ceval")
    assert policy.dataset_dir == "corpora/sft" and policy.default_datasets == ("alpaca-zh",)
    assert policy.hub_datasets["my-sft"].id == "my-org/my-sft"
    assert (policy.min_permission_train, policy.min_permission_eval, policy.min_permission_approve) == (
        "maintain", "triage", "admin")
    assert policy.approval_ttl_hours == 24 and policy.fork_policy == "deny"
    assert policy.quotas == Quotas(runs_per_user_per_day=5, gpu_hours_per_day=None, max_dispatches_per_comment=2,
                                   max_run_hours=2.5)
    assert policy.auto_train and policy.auto_train_paths == ("configs/**.yaml", "train/*.yml")
    assert policy.notify == Notify(slack_channel="#ml-runs", dingtalk_robot="ml-robot")
    assert policy.regression == (RegressionRule("cmmlu", None, 1.0, True), RegressionRule("*", 0.5, None, False))
    assert "my-sft" in policy.datasets(catalog) and "alpaca-zh" in policy.datasets(catalog)
    assert policy.model_allowed("tiny") and not policy.model_allowed("qwen-7b")


def policy_to_dict(policy: Policy) -> dict[str, Any]:
    """The policy in the YAML layout it is read from (to check docs/tunebot-yml.md against DEFAULT_POLICY)."""
    q = policy.quotas
    return {
        "version": 1,
        "language": policy.language,
        "hub": policy.hub,
        "models": {"allowed": list(policy.allowed_models), "default": policy.default_model,
                   "trust_remote_code": list(policy.trust_remote_code)},
        "benchmarks": {"default": list(policy.default_benchmarks)},
        "datasets": {
            "dir": policy.dataset_dir,
            "default": list(policy.default_datasets),
            "hub": {n: {"source": d.source, "id": d.id, "description": d.description}
                    for n, d in sorted(policy.hub_datasets.items())},
        },
        "permissions": {"train": policy.min_permission_train, "eval": policy.min_permission_eval,
                        "approve": policy.min_permission_approve, "approval_ttl_hours": policy.approval_ttl_hours},
        "forks": policy.fork_policy,
        "quotas": {"runs_per_user_per_day": q.runs_per_user_per_day, "gpu_hours_per_day": q.gpu_hours_per_day,
                   "commands_per_comment": q.max_dispatches_per_comment, "max_run_hours": q.max_run_hours},
        "auto_train": {"enabled": policy.auto_train, "paths": list(policy.auto_train_paths)},
        "notify": {"slack": policy.notify.slack_channel, "dingtalk": policy.notify.dingtalk_robot},
        "regression": [
            {"benchmark": r.benchmark, "min_gain": r.min_gain, "max_loss": r.max_loss,
             "require_significance": r.require_significance}
            for r in policy.regression
        ],
        "gpu": {"type": policy.gpu_type, "count": policy.gpu_count},
        "approval": {"above_gpu_hours": policy.approval_above_gpu_hours},
        "seeds": {"default": policy.seeds_default, "max": policy.seeds_max},
    }


def test_policy_round_trips_through_its_layout(catalog) -> None:
    import yaml

    for text in (FULL, None):
        policy = parse_policy(text, catalog=catalog)
        assert isinstance(policy, Policy)
        again = parse_policy(yaml.safe_dump(policy_to_dict(policy)), catalog=catalog)
        assert again == policy


def test_shorthands() -> None:
    policy = parse_policy("auto_train: true\nbenchmarks: {default: cmmlu}\nquotas: {runs_per_user_per_day: null}\n")
    assert isinstance(policy, Policy)
    assert policy.auto_train and policy.default_benchmarks == ("cmmlu",)
    assert policy.quotas.runs_per_user_per_day is None and policy.quotas.gpu_hours_per_day == 24.0


ERRORS = [
    ("langauge: zh\n", 1, "unknown setting `langauge`; did you mean `language`?"),
    ("version: 1\nlanguage: fr\n", 2, "`language` must be one of en, zh, not `fr`"),
    ("version: 2\n", 1, "unsupported version 2"),
    ("forks: alow\n", 1, "did you mean `allow`?"),
    ("models:\n  allowed: [tiny]\n  defualt: tiny\n", 3, "unknown setting `models.defualt`; did you mean `default`?"),
    ("models:\n  allowed: [tiny, gpt-5]\n", 2, "unknown model preset `gpt-5`"),
    ("models:\n  allowed: [tiny]\n  default: qwen-7b\n", 3, "default model `qwen-7b` is not in `models.allowed`"),
    ("models:\n  default: qwen-8b\n", 2, "did you mean `qwen3-8b`?"),
    ("models: tiny\n", 1, "`models` must be a mapping with allowed, default"),
    ("models:\n  allowed: {a: 1}\n", 2, "must be a list of names"),
    ("models:\n  allowed: ['a b']\n", 2, "must be a name, not `a b`"),
    ("benchmarks:\n  default:\n    - cmmlu\n    - mmlu\n", 4, "unknown benchmark `mmlu`"),
    ("datasets:\n  dir: ../outside\n", 2, "must be a folder inside the repository"),
    ("datasets:\n  dir: /abs\n", 2, "must be a folder inside the repository"),
    ("datasets:\n  default: [nope]\n", 2, "unknown dataset `nope`"),
    ("datasets:\n  hub: [x]\n", 2, "`datasets.hub` maps a name to"),
    ("datasets:\n  hub:\n    x: {source: github, id: a/b}\n", 3, "must be one of modelscope, huggingface"),
    ("datasets:\n  hub:\n    x: {source: modelscope, id: 'a/b; rm'}\n", 3, "must be a hub id like `org/name`"),
    ("datasets:\n  hub:\n    x: {source: modelscope, id: a/b, path: /etc}\n", 3, "needs `source`"),
    ("datasets:\n  hub:\n    'bad name': {source: modelscope, id: a/b}\n", 3, "is not a valid dataset name"),
    ("permissions:\n  train: writer\n", 2, "did you mean `write`?"),
    ("permissions:\n  approval_ttl_hours: 0\n", 2, "must be a number from 0.1 to 2160"),
    ("quotas:\n  runs_per_user_per_day: 1.5\n", 2, "must be a whole number from 1 to 10000"),
    ("quotas:\n  gpu_hours_per_day: lots\n", 2, "must be a number"),
    ("quotas:\n  commands_per_comment: 100\n", 2, "from 1 to 20"),
    ("quotas:\n  max_run_hours: true\n", 2, "must be a number"),
    ("auto_train: maybe\n", 1, "`auto_train` is true/false or a mapping"),
    ("auto_train:\n  enabled: yes please\n", 2, "must be true or false"),
    ("auto_train:\n  paths: []\n", 2, "is a list of globs"),
    ("auto_train:\n  paths: ['../x/*.yaml']\n", 2, "is not a repository path glob"),
    ("notify:\n  slack: 'general channel'\n", 2, "`notify.slack` is a channel name"),
    ("notify:\n  dingtalk: https://oapi.dingtalk.com/robot/send?access_token=x\n", 2, "never its token"),
    ("regression: {max_loss: 1}\n", 1, "`regression` is a list of rules"),
    ("regression:\n  - 3\n", 2, "each regression rule is a mapping"),
    ("regression:\n  - benchmark: cmmlu\n    max_los: 1\n", 3,
     "unknown rule field `max_los`; did you mean `max_loss`?"),
    ("regression:\n  - benchmark: mmlu\n", 2, "unknown benchmark `mmlu`"),
    ("regression:\n  - benchmark: 'a b'\n", 2, "is a benchmark name or"),
    ("regression:\n  - max_loss: 101\n", 2, "from 0 to 100"),
    ("regression:\n  - require_significance: 1\n", 2, "must be true or false"),
    ("- a\n- b\n", 1, "the file must be a mapping"),
    ("language: en\nlanguage: zh\n", 2, "duplicate key `language` (first at line 1)"),
    ("models:\n  allowed: [tiny\n", 3, "not valid YAML"),
    ("a: b\n---\nc: d\n", 2, "not valid YAML"),
    ("language: !!python/object:os.system x\n", 1, "cannot read this value"),
    ("? [a, b]\n: c\n", 1, "keys must be plain words"),
    ("language: *nope\n", 1, "not valid YAML"),
]


@pytest.mark.parametrize(("text", "line", "message"), ERRORS)
def test_errors_point_at_the_line(catalog, text: str, line: int, message: str) -> None:
    result = parse_policy(text, catalog=catalog)
    assert isinstance(result, PolicyError), result
    assert result.line == line, result
    assert message in result.message
    assert result.render().startswith(f"`.tunebot.yml` line {line}: ")


def test_render_without_a_line() -> None:
    assert PolicyError(None, "too big").render("x.yml") == "`x.yml`: too big"


BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_yaml_bomb_is_refused_fast() -> None:
    start = time.perf_counter()
    result = parse_policy(BILLION_LAUGHS)
    assert time.perf_counter() - start < 1.0
    assert isinstance(result, PolicyError)
    assert "alias bomb" in result.message and result.line is not None


def test_recursive_alias_is_refused() -> None:
    result = parse_policy("a: &a [*a]\n")
    assert isinstance(result, PolicyError)
    assert "nesting deeper" in result.message or "not valid YAML" in result.message


def test_deep_nesting_is_refused() -> None:
    result = parse_policy("a: " + "[" * 30 + "]" * 30 + "\n")
    assert isinstance(result, PolicyError) and "nesting deeper than 20" in result.message


def test_oversized_file_is_refused() -> None:
    result = parse_policy("# " + "x" * MAX_CHARS + "\n")
    assert isinstance(result, PolicyError) and result.line is None and "the limit is 65,536" in result.message


def test_anchors_and_merge_keys_work_within_limits() -> None:
    anchored = parse_policy("permissions: &p {train: maintain}\n")
    assert isinstance(anchored, Policy) and anchored.min_permission_train == "maintain"
    result = parse_policy("x-perm: &p maintain\npermissions:\n  train: *p\n  eval: *p\n")
    assert isinstance(result, PolicyError) and "unknown setting `x-perm`" in result.message  # strict keys
    doc = load("defaults: &d {a: 1, b: 2}\nthing:\n  <<: *d\n  b: 3\nmany:\n  <<: [*d, {c: 4}]\n")
    assert doc.data["thing"] == {"a": 1, "b": 3}
    assert doc.data["many"] == {"a": 1, "b": 2, "c": 4}
    assert doc.line(("thing", "b")) == 4 and doc.line(("thing", "zzz")) == 2 and doc.line(()) == 1


def test_merge_of_a_scalar_is_an_error() -> None:
    from commands.safeyaml import YamlError

    with pytest.raises(YamlError, match="merges mappings only"):
        load("a: &x 1\nb:\n  <<: *x\n")


def test_names_are_not_checked_without_a_catalog() -> None:
    result = parse_policy("models: {allowed: [anything]}\nbenchmarks: {default: [whatever]}\n")
    assert isinstance(result, Policy) and result.allowed_models == ("anything",)


def _yaml_blocks(path) -> list[str]:  # type: ignore[no-untyped-def]
    import re

    return re.findall(r"```yaml\n(.*?)```", path.read_text(encoding="utf-8"), re.DOTALL)


def test_documented_example_and_defaults_match_the_code(catalog) -> None:
    import yaml

    from tests.paths import REPO

    example, defaults = _yaml_blocks(REPO / "docs" / "tunebot-yml.md")
    policy = parse_policy(example, catalog=catalog)
    assert isinstance(policy, Policy), policy
    assert policy.auto_train and policy.notify.dingtalk_robot == "ml-robot" and len(policy.regression) == 2
    assert yaml.safe_load(defaults) == policy_to_dict(DEFAULT_POLICY)


def test_documented_config_example_is_the_shipped_file(catalog) -> None:
    from tests.paths import REPO

    (doc_example,) = _yaml_blocks(REPO / "docs" / "config-files.md")
    shipped = (REPO / "configs" / "examples" / "train-config.yaml").read_text(encoding="utf-8")
    strip = [line.split("#")[0].rstrip() for line in shipped.splitlines() if line.split("#")[0].strip()]
    assert doc_example.splitlines() == strip


def test_tracking_setting() -> None:
    from commands.jobspec import Tracking
    from commands.policy import PolicyError, parse_policy

    assert parse_policy("tracking: wandb\n").tracking == Tracking("wandb")  # type: ignore[union-attr]
    assert parse_policy("tracking:\n  tool: swanlab\n  project: tiny-sft\n").tracking == \
        Tracking("swanlab", "tiny-sft")  # type: ignore[union-attr]
    assert parse_policy("version: 1\n").tracking is None  # type: ignore[union-attr]
    bad = parse_policy("tracking: neptune\n")
    assert isinstance(bad, PolicyError) and "tensorboard, swanlab, wandb, mlflow" in bad.message and bad.line == 1
    bad = parse_policy("tracking:\n  tool: wandb\n  project: ../x\n")
    assert isinstance(bad, PolicyError) and bad.line == 3
