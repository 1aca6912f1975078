"""Properties over generated input: the parser never fails, and a command's canonical text means the same command."""

from __future__ import annotations

import itertools
from dataclasses import replace

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands import Ignore, Parsed, Reply, parse_comment
from commands.args import HYPER_ARGS, ArgSpec
from commands.jobspec import job_from_json, job_to_json
from commands.plan import PlanError, PRFacts, plan
from commands.policy import DEFAULT_POLICY, Policy, PolicyError, parse_policy
from configs import load_catalog

CATALOG = load_catalog()
# Generated lines may name any preset: both policies opt in to the hub code of those that need it (refusing them
# otherwise is tested in tests/security/test_hub_code.py).
REMOTE_CODE = [name for name, preset in CATALOG.models.items() if preset.trust_remote_code]
assert REMOTE_CODE
RICH = parse_policy(f"models: {{default: tiny, trust_remote_code: [{', '.join(REMOTE_CODE)}]}}\n"
                    "benchmarks: {default: [cmmlu]}\n", catalog=CATALOG)
assert isinstance(RICH, Policy)
POLICIES = [replace(DEFAULT_POLICY, trust_remote_code=tuple(REMOTE_CODE)), RICH]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FRAGMENTS = ["/train", "/eval", "/compare", "/status", "@tunebot", "tiny", "cmmlu", "ceval", "lora_rank", "=",
             "＝", "—", "–", "\u200b", "\u202e", "\r\n", "\n", "\r", " ", "\t", "`", "```", "~~~", ">", "<!--",
             "-->", '"', "'", "“", "”", "$(", ")", ";", "|", "&&", "rm -rf /", "..", "/", ",", "，", "、", ".",
             "1e-4", "16", "-1", "true", "latest", "adapter=", "dataset=", "data/x.jsonl", "    ", "#", "\x00"]


@st.composite
def comment_text(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=40))
    return "".join(parts)


@SETTINGS
@given(text=st.one_of(st.text(max_size=300), comment_text()), which=st.integers(0, 1))
def test_parse_never_fails(text: str, which: int) -> None:
    decision = parse_comment(text, catalog=CATALOG, policy=POLICIES[which])
    assert not (isinstance(decision, Ignore) and decision.reason.startswith("internal error")), decision


def _value(spec: ArgSpec) -> st.SearchStrategy[str]:
    if spec.only:
        return st.sampled_from([str(v) for v in spec.only])
    if spec.kind == "int":
        assert spec.low is not None and spec.high is not None
        return st.integers(int(spec.low), int(spec.high)).map(str)
    if spec.kind == "float":
        assert spec.low is not None and spec.high is not None
        return st.floats(spec.low, spec.high, allow_nan=False).map(repr)
    return st.sampled_from(spec.choices)


@st.composite
def train_line(draw: st.DrawFn) -> str:
    model = draw(st.sampled_from([*CATALOG.models, "Qwen/Qwen2.5-7B-Instruct", "THUDM/glm-4-9b-chat"]))
    tuner = draw(st.sampled_from([None, "lora", "qlora", "full"]))
    keys = draw(st.lists(st.sampled_from(HYPER_ARGS), unique_by=lambda a: a.name, max_size=6))
    words = [model]
    for spec in keys:
        if tuner == "full" and spec.name.startswith("lora_"):
            continue
        if spec.name == "quant_bits" and tuner not in (None, "qlora"):
            continue
        name = draw(st.sampled_from([spec.name, *spec.aliases]))
        words.append(f"{name}={draw(_value(spec))}")
    if tuner:
        words.append(f"tuner={tuner}")
    datasets = draw(st.lists(st.sampled_from([*CATALOG.datasets, "train.jsonl", "data/a/b.csv"]), min_size=1,
                             max_size=3))
    words.append("dataset=" + ",".join(datasets))
    if draw(st.booleans()):
        words.append("preset=" + draw(st.sampled_from(list(CATALOG.training))))
    if draw(st.booleans()):
        words.append("eval=" + draw(st.sampled_from(["none", "cmmlu", "ceval,cmmlu"])))
    if draw(st.booleans()):
        words.append(f"max_samples={draw(st.integers(1, 10_000_000))}")
    if draw(st.booleans()):
        words.append("hub=" + draw(st.sampled_from(["modelscope", "huggingface"])))
    order = draw(st.permutations(words[1:]))
    return "/train " + " ".join([words[0], *order])


@st.composite
def eval_line(draw: st.DrawFn) -> str:
    benches = draw(st.lists(st.sampled_from(list(CATALOG.benchmarks)), min_size=1, max_size=3, unique=True))
    words = list(benches)
    if draw(st.booleans()):
        words.append("model=" + draw(st.sampled_from(list(CATALOG.models))))
    else:
        words.append("adapter=" + draw(st.sampled_from(["latest", "run-1", "r.2_x"])))
    if len(benches) == 1 and CATALOG.benchmarks[benches[0]].subjects and draw(st.booleans()):
        subjects = draw(st.lists(st.sampled_from(CATALOG.benchmarks[benches[0]].subjects), min_size=1, max_size=4))
        words.append("subsets=" + ",".join(subjects))
    for key, strat in (("limit", st.integers(1, 100_000)), ("few_shot", st.integers(0, 10)),
                       ("force", st.booleans())):
        if draw(st.booleans()):
            words.append(f"{key}={str(draw(strat)).lower()}")
    return "/eval " + " ".join(draw(st.permutations(words)))


@st.composite
def other_line(draw: st.DrawFn) -> str:
    ref = draw(st.from_regex(r"\A[a-z0-9_][a-z0-9_/-]{0,20}\Z"))
    return draw(st.sampled_from([
        f"/compare {ref} cmmlu", "/compare cmmlu ceval force=true", f"/compare ref={ref}", f"/status {ref}",
        f"/cancel {ref}", f"/retry {ref}", "/leaderboard ceval", "/ok-to-train",
        "/ok-to-train " + "abcdef1" * 5 + "abcde",
    ])).replace("/ ", "/")


@SETTINGS
@given(line=st.one_of(train_line(), eval_line(), other_line()), which=st.integers(0, 1))
def test_rendered_command_parses_to_the_same_command(line: str, which: int) -> None:
    policy = POLICIES[which]
    first = parse_comment(line, catalog=CATALOG, policy=policy)
    if not isinstance(first, Parsed):
        # Generated refs can be invalid (e.g. ending in `/`); those must be refused with a reply, never half-read.
        # Every generated /train and /eval line is valid, so it never lands here.
        assert isinstance(first, Reply) and line.startswith(("/compare", "/status", "/cancel", "/retry")), first
        return
    (command,) = first.commands
    again = parse_comment(command.render(), catalog=CATALOG, policy=policy)
    assert isinstance(again, Parsed), (command.render(), again)
    assert again.commands == (command,)
    assert again.commands[0].render() == command.render()


IDS = (f"prop-{i}" for i in itertools.count())


@SETTINGS
@given(line=st.one_of(train_line(), eval_line()), which=st.integers(0, 1))
def test_every_parsed_command_plans_a_valid_job_or_says_why(line: str, which: int) -> None:
    policy = POLICIES[which]
    decision = parse_comment(line, catalog=CATALOG, policy=policy)
    assert isinstance(decision, Parsed), decision  # generated /train and /eval lines are valid
    pr = PRFacts(repo="o/r", head_sha="f" * 40, latest_train_run="run-1")
    try:
        jobs = plan(decision.commands[0], pr, policy, CATALOG, IDS)
    except PlanError as exc:
        assert str(exc)
        return
    assert len(jobs) == 1, jobs  # one /train or /eval line is one job
    for planned in jobs:
        assert job_from_json(job_to_json(planned.job)) == planned.job
        assert len(planned.result_key) == 64


yaml_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=False), st.text(max_size=12)),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=10), children, max_size=4)),
    max_leaves=20,
)
policy_keys = st.sampled_from(["version", "language", "hub", "models", "benchmarks", "datasets", "permissions",
                               "forks", "quotas", "auto_train", "notify", "regression", "allowed", "default",
                               "dir", "hub", "train", "slack", "benchmark", "max_loss"])
policy_docs = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 100), st.sampled_from(["tiny", "cmmlu", "write", "zh", "x"])),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(policy_keys, children, max_size=4)),
    max_leaves=25,
)


@SETTINGS
@given(doc=st.one_of(yaml_values, policy_docs, st.dictionaries(policy_keys, policy_docs, max_size=6)))
def test_policy_parser_never_raises_on_structured_yaml(doc: object) -> None:
    result = parse_policy(yaml.safe_dump(doc, allow_unicode=True), catalog=CATALOG)
    assert isinstance(result, (Policy, PolicyError))
    if isinstance(result, PolicyError):
        assert result.message


@SETTINGS
@given(text=st.text(max_size=400))
def test_policy_parser_never_raises_on_text(text: str) -> None:
    assert isinstance(parse_policy(text, catalog=CATALOG), (Policy, PolicyError))
