"""Each verb's arguments: types, ranges, names from the catalog and the policy, and the messages for mistakes."""

from __future__ import annotations

import pytest

from commands import Parsed, Reply
from commands.policy import Policy, parse_policy

OK = [
    ("/train tiny", {"model": "tiny"}),
    ("/train model=tiny", {"model": "tiny"}),
    ("/train tiny lora_rank=256 lora_alpha=1024", {"model": "tiny", "lora_rank": 256, "lora_alpha": 1024}),
    ("/train tiny learning_rate=1e-7", {"model": "tiny", "learning_rate": 1e-7}),
    ("/train tiny learning_rate=0.1", {"model": "tiny", "learning_rate": 0.1}),
    ("/train tiny num_train_epochs=3", {"model": "tiny", "num_train_epochs": 3.0}),
    ("/train tiny seed=0 max_length=512", {"model": "tiny", "seed": 0, "max_length": 512}),
    ("/train tiny tuner=QLoRA quant_bits=8", {"model": "tiny", "tuner": "qlora", "quant_bits": 8}),
    ("/train tiny tuner=full", {"model": "tiny", "tuner": "full"}),
    ("/train tiny preset=Quick", {"model": "tiny", "preset": "quick"}),
    ("/train tiny dataset=alpaca-zh,TINY-MCQ", {"model": "tiny", "dataset": ("alpaca-zh", "tiny-mcq")}),
    ("/train tiny dataset=AI-ModelScope/alpaca-gpt4-data-zh", {"model": "tiny", "dataset": ("alpaca-zh",)}),
    ("/train tiny dataset=train.jsonl", {"model": "tiny", "dataset": ("data/train.jsonl",)}),
    ("/train tiny dataset=data/sub/dir/train.csv", {"model": "tiny", "dataset": ("data/sub/dir/train.csv",)}),
    ("/train tiny eval=cmmlu,ceval", {"model": "tiny", "eval": ("ceval", "cmmlu")}),
    ("/train tiny eval=None", {"model": "tiny", "eval": ("none",)}),
    ("/train tiny max_samples=100 warmup_ratio=0.03 torch_dtype=float16",
     {"model": "tiny", "max_samples": 100, "warmup_ratio": 0.03, "torch_dtype": "float16"}),
    ("/train Qwen/Qwen2.5-7B-Instruct dataset=alpaca-zh",
     {"model": "qwen2.5-7b-instruct", "hub": "modelscope", "dataset": ("alpaca-zh",)}),
    ("/train meta-llama/Meta-Llama-3-8B-Instruct dataset=alpaca-en",
     {"model": "llama3-8b-instruct", "hub": "huggingface", "dataset": ("alpaca-en",)}),
    ("/train qwen2.5-7b-instruct hub=huggingface revision=v1.1.4 dataset=alpaca-zh",
     {"model": "qwen2.5-7b-instruct", "hub": "huggingface", "revision": "v1.1.4", "dataset": ("alpaca-zh",)}),
    ("/train tiny revision=0123456789abcdef0123456789abcdef01234567",
     {"model": "tiny", "revision": "0123456789abcdef0123456789abcdef01234567"}),
    ("/eval cmmlu model=tiny", {"benchmarks": ("cmmlu",), "model": "tiny"}),
    ("/eval CMMLU ceval adapter=latest", {"benchmarks": ("ceval", "cmmlu"), "adapter": "latest"}),
    ("/eval ceval adapter=r-12.3_x limit=5 few_shot=5 force=yes",
     {"benchmarks": ("ceval",), "adapter": "r-12.3_x", "limit": 5, "few_shot": 5, "force": True}),
    ("/eval ceval model=tiny subsets=Logic,law", {"benchmarks": ("ceval",), "model": "tiny",
                                                  "subsets": ("law", "logic")}),
    ("/eval ceval model=tiny subsets=all", {"benchmarks": ("ceval",), "model": "tiny", "subsets": ("all",)}),
    ("/eval general_mcq model=tiny subsets=mine", {"benchmarks": ("general_mcq",), "model": "tiny",
                                                   "subsets": ("mine",)}),
    ("/eval cmmlu model=tiny force=off", {"benchmarks": ("cmmlu",), "model": "tiny", "force": False}),
    ("/compare", {}),
    ("/compare cmmlu", {"benchmarks": ("cmmlu",)}),
    ("/compare main", {"ref": "main"}),
    ("/compare release/v1.2 cmmlu,ceval", {"ref": "release/v1.2", "benchmarks": ("ceval", "cmmlu")}),
    ("/compare ref=cmmlu ceval", {"ref": "cmmlu", "benchmarks": ("ceval",)}),
    ("/compare abc1234 force=true limit=20", {"ref": "abc1234", "force": True, "limit": 20}),
    ("/status", {}),
    ("/status r-1", {"run": "r-1"}),
    ("/status #r-1", {"run": "r-1"}),
    ("/cancel run=r-1", {"run": "r-1"}),
    ("/retry r-1", {"run": "r-1"}),
    ("/leaderboard", {}),
    ("/leaderboard CEval", {"benchmark": "ceval"}),
    ("/ok-to-train", {}),
    ("/ok-to-train " + "ABC1234" * 5 + "ABCDE", {"sha": "abc1234" * 5 + "abcde"}),
]


@pytest.mark.parametrize(("text", "args"), OK)
def test_valid_arguments(parse, text: str, args: dict) -> None:
    decision = parse(text)
    assert isinstance(decision, Parsed), decision
    assert dict(decision.commands[0].args) == args


BAD = [
    ("/train qwen-7b lora_rnak=16",
     "unknown key `lora_rnak` (did you mean `lora_rank`?); allowed: model, tuner (lora|qlora|full), dataset, "
     "preset, lora_rank (1–256), lora_alpha (1–1024)"),
    ("/train tiny lora_rank=0", "`lora_rank` must be between 1 and 256, got `0`"),
    ("/train tiny lora_rank=257", "between 1 and 256"),
    ("/train tiny lora_rank=16.0", "`lora_rank` must be a whole number (1–256), not `16.0`"),
    ("/train tiny lora_rank=", "`lora_rank` needs a value, e.g. `lora_rank=16`"),
    ("/train tiny learning_rate=1", "between 1e-07 and 0.1"),
    ("/train tiny learning_rate=nan", "must be a number"),
    ("/train tiny learning_rate=inf", "must be a number"),
    ("/train tiny learning_rate=1e-400", "between 1e-07 and 0.1"),
    ("/train tiny learning_rate=0x10", "must be a number"),
    ("/train tiny seed=99999999999999999999", "must be a whole number"),
    ("/train tiny tuner=adapter", "`tuner` must be one of lora, qlora, full, not `adapter`"),
    ("/train tiny tuner=qlor", "did you mean `qlora`?"),
    ("/train tiny quant_bits=3", "`quant_bits` must be one of 4, 8"),
    ("/train tiny tuner=lora quant_bits=4", "`quant_bits` applies to `tuner=qlora` only"),
    ("/train tiny tuner=full lora_rank=8", "`lora_rank` does not apply to `tuner=full`"),
    ("/train gpt-5", "unknown model `gpt-5`"),
    ("/train qwen-7", "did you mean `qwen-7b`?"),
    ("/train some-org/evil-model", "unknown model"),
    ("/train tiny extra words", "unexpected `extra words`: `/train` takes one model"),
    ("/train tiny model=tiny", "the model is given twice"),
    ("/train", "which model? `/train <model>`"),
    ("/train qwen2.5-7b-instruct", "which data? add `dataset=<name>`"),
    ("/train tiny preset=fast", "unknown training preset `fast`"),
    ("/train tiny dataset=alpaca", "unknown dataset `alpaca`; did you mean `alpaca-zh`?"),
    ("/train tiny dataset=/etc/passwd.jsonl", "`/etc/passwd.jsonl` is not a valid value for `dataset`"),
    ("/train tiny dataset=other/x.jsonl", "must be files under `data/`"),
    ("/train tiny dataset=data/.hidden/x.jsonl", "must be files under `data/`"),
    ("/train tiny dataset=,", "`dataset` needs at least one name"),
    ("/train tiny eval=mmlu", "unknown benchmark `mmlu`; did you mean `cmmlu`?"),
    ("/train glm4-9b-chat hub=huggingface dataset=alpaca-zh revision=..", "is not a commit SHA, tag or branch name"),
    ("/train tiny hub=github", "`hub` must be one of modelscope, huggingface"),
    ("/eval", "which benchmark? `/eval <benchmark>`"),
    ("/eval cmmlu", "which model? add `model=<preset>`"),
    ("/eval cmmlu model=tiny adapter=../x", "is not a run id"),
    ("/eval cmmlu model=tiny force=maybe", "`force` is true or false, not `maybe`"),
    ("/eval cmmlu ceval model=tiny subsets=logic", "`subsets=` needs exactly one benchmark"),
    ("/eval ceval model=tiny subsets=logik", "ceval has no subject `logik`; did you mean `logic`?"),
    ("/eval ceval model=tiny limit=0", "between 1 and 100_000"),
    ("/eval general_mcq model=tiny subsets=sub/arith", "general_mcq subsets are file names in `data/mcq/` without "
                                                       "the extension (no folders), got `sub/arith`"),
    ("/eval cmmlu model=tiny few_shot=11", "between 0 and 10"),
    ("/eval cmmlu model=tiny lora_rank=8", "unknown key `lora_rank`"),
    ("/compare main v2 cmmlu", "compare against one thing at a time"),
    ("/compare -main", "command-line flags are not supported"),
    ("/compare a..b", "is not a branch, tag, commit or run id"),
    ("/compare main.lock", "is not a branch"),
    ("/status r-1 r-2", "takes at most one run id"),
    ("/status run=r-1 r-2", "takes at most one run id"),
    ("/status rm -rf", "flags are not supported"),
    ("/cancel ../../x", "is not a run id"),
    ("/leaderboard cmmlu ceval", "at most one benchmark"),
    ("/leaderboard mmlu", "unknown benchmark"),
    ("/help trian", "no help on `trian`; did you mean `train`?"),
    ("/help train eval", "at most one topic"),
    ("/ok-to-train main", "is not a commit SHA"),
    ("/ok-to-train abc1234", "is a short SHA; `/ok-to-train` approves the PR's current head, or the commit you "
                             "reviewed, named by its full 40-hex-digit SHA"),
    ("/ok-to-train abc1234 def5678", "at most the commit you reviewed"),
    ("/ok-to-train sha=abc1234", "unknown key `sha`; allowed: none"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_invalid_arguments_are_explained(parse, text: str, message: str) -> None:
    decision = parse(text)
    assert isinstance(decision, Reply), decision
    assert message in decision.text
    assert "usage: `/" in decision.text


def test_policy_restricts_models_and_supplies_defaults(parse, catalog) -> None:
    pol = parse_policy("models: {allowed: [tiny, qwen2.5-0.5b-instruct], default: tiny}\n"
                       "benchmarks: {default: [ceval]}\ndatasets: {default: [alpaca-zh], dir: corpora}\n",
                       catalog=catalog)
    assert isinstance(pol, Policy)
    denied = parse("/train qwen-7b", pol)
    assert isinstance(denied, Reply)
    assert "model `qwen-7b` is not allowed in this repository; allowed: tiny, qwen2.5-0.5b-instruct" in denied.text
    unknown = parse("/train qwen9", pol)
    assert isinstance(unknown, Reply) and "known: tiny, qwen2.5-0.5b-instruct" in unknown.text
    default_model = parse("/train", pol)
    assert isinstance(default_model, Parsed)
    assert default_model.commands[0].args == {"model": "tiny"}
    assert any("repository default `tiny`" in n for n in default_model.notes)
    assert isinstance(parse("/train qwen2.5-0.5b-instruct", pol), Parsed)  # datasets.default supplies the data
    assert isinstance(parse("/eval", pol), Parsed)  # default benchmark and model
    assert isinstance(parse("/eval subsets=logic", pol), Parsed)  # one default benchmark: subsets are allowed
    local = parse("/train tiny dataset=x.jsonl", pol)
    assert isinstance(local, Parsed) and local.commands[0].args["dataset"] == ("corpora/x.jsonl",)
    outside = parse("/train tiny dataset=data/x.jsonl", pol)
    assert isinstance(outside, Reply) and "under `corpora/`" in outside.text


def test_policy_hub_datasets_extend_the_registry(parse, catalog) -> None:
    pol = parse_policy("datasets:\n  hub:\n    my-sft: {source: huggingface, id: my-org/my-sft}\n", catalog=catalog)
    assert isinstance(pol, Policy)
    by_name = parse("/train tiny dataset=my-sft", pol)
    by_id = parse("/train tiny dataset=my-org/my-sft", pol)
    assert isinstance(by_name, Parsed) and isinstance(by_id, Parsed)
    assert by_name.commands[0] == by_id.commands[0]
    assert isinstance(parse("/train tiny dataset=my-org/other", pol), Reply)
    assert isinstance(parse("/train tiny dataset=my-org/my-sft"), Reply)  # not allowlisted without the policy


def test_hub_without_hf_id_is_refused(parse, catalog) -> None:
    from dataclasses import replace

    from commands import parse_comment
    from commands.catalog import Catalog

    models = dict(catalog.models)
    models["ms-only"] = replace(models["qwen2.5-7b-instruct"], name="ms-only", hf_id=None, modelscope_id="org/ms-only")
    cat = Catalog(models, catalog.size_defaults, catalog.training, catalog.benchmarks, catalog.datasets)
    decision = parse_comment("/train ms-only hub=huggingface dataset=alpaca-zh", catalog=cat,
                             policy=parse_policy(None))  # type: ignore[arg-type]
    assert isinstance(decision, Reply) and "has no Hugging Face id; use `hub=modelscope`" in decision.text
