"""Help and the command reference are generated from the verb specs; every example in them must parse."""

from __future__ import annotations

import re

import pytest

from commands import Parsed, Reply
from commands.help import render_command_reference, render_help, who_may
from commands.policy import Policy, parse_policy
from commands.verbs import REGISTRY, all_specs, get_spec
from tests.paths import REPO

EXAMPLES = [(spec.name, example) for spec in all_specs() for example in spec.examples]
_CELL_BORDER = re.compile(r"(?<!\\)\|")  # an unescaped pipe: GitHub splits table cells there, even inside `code`


@pytest.mark.parametrize(("verb", "example"), EXAMPLES)
def test_every_example_parses(parse, rich_policy: Policy, verb: str, example: str) -> None:
    decision = parse(example, rich_policy)
    if verb == "help":
        assert isinstance(decision, Reply) and "Nothing was started" not in decision.text
        return
    assert isinstance(decision, Parsed), decision
    assert decision.commands[0].verb == verb


def test_every_verb_has_a_spec_with_help() -> None:
    assert [s.name for s in all_specs()] == ["train", "eval", "compare", "plan", "status", "cancel", "resume", "retry",
                                             "leaderboard", "ok-to-train", "approve", "help"]
    for spec in all_specs():
        assert spec.usage.startswith(f"/{spec.name}") and spec.summary and spec.summary_zh and spec.examples
        assert get_spec(spec.name.upper()) is spec
    assert get_spec("ok_to_train") is REGISTRY["ok-to-train"] and get_spec("nope") is None


def test_help_lists_every_verb() -> None:
    text = render_help(None)
    for spec in all_specs():
        assert f"`{spec.usage}`" in text
    zh = render_help(None, lang="zh")
    assert "tunebot 命令" in zh and REGISTRY["train"].summary_zh in zh


def test_verb_help_shows_keys_ranges_examples_and_who(catalog) -> None:
    text = render_help("/train")
    assert "| `lora_rank` (also rank, r) | 1–256 | LoRA rank r |" in text
    assert "- `/train tiny max_steps=20`" in text
    assert text.endswith("Who may use it: `write` permission or above.")
    strict = parse_policy("permissions: {train: maintain, eval: none}\n")
    assert isinstance(strict, Policy)
    assert "`maintain` permission or above" in render_help("train", policy=strict)
    assert render_help("eval", policy=strict).endswith("Who may use it: anyone.")
    assert who_may("approve") == "`maintain` permission or above"
    assert "Examples:" in render_help("status") and "| key |" not in render_help("ok-to-train")


def _table_rows_with_wrong_cell_count(text: str) -> list[str]:
    """Rows of the Markdown tables in `text` that do not have as many cells as their header."""
    lines, wrong = text.splitlines(), []
    for i, line in enumerate(lines):
        if i and re.fullmatch(r"\|(?:\s*:?-+:?\s*\|)+", line):
            cells = len(_CELL_BORDER.split(lines[i - 1]))
            for row in lines[i + 1:]:
                if not row.startswith("|"):
                    break
                if len(_CELL_BORDER.split(row)) != cells:
                    wrong.append(row)
    return wrong


def test_help_tables_keep_their_columns(catalog) -> None:
    texts = [render_help(topic, catalog=catalog, lang=lang) for topic in [s.name for s in all_specs()]
             for lang in ("en", "zh")]
    assert sum(t.count("| key | values | meaning |") for t in texts) >= 6  # the check below has tables to read
    assert [row for text in texts for row in _table_rows_with_wrong_cell_count(text)] == []
    assert "| `tuner` | lora\\|qlora\\|full |" in render_help("train")  # shows as lora|qlora|full on GitHub


def test_catalog_topics(catalog) -> None:
    assert "`qwen2.5-7b-instruct` (7.6B)" in render_help("models", catalog=catalog)
    limited = parse_policy("models: {allowed: [tiny]}\ndatasets: {dir: corpora}\n")
    assert isinstance(limited, Policy)
    assert "qwen" not in render_help("models", catalog=catalog, policy=limited)
    assert "Default subjects: agronomy, anatomy." in render_help("benchmarks", catalog=catalog)
    datasets = render_help("datasets", catalog=catalog, policy=limited)
    assert "`alpaca-zh`" in datasets and "under `corpora/`" in datasets
    assert "`quick` — A smoke test" in render_help("presets", catalog=catalog)
    assert "`operating_system`" in render_help("ceval", catalog=catalog)
    mcq = render_help("general_mcq", catalog=catalog)
    assert "`data/mcq/<subset>.csv` or `data/mcq/<subset>.jsonl`" in mcq
    assert "`question`, `A`, `B`, … up to `J`, `answer`; optional `id` and `explanation`" in mcq
    assert "2 to 10 options" in mcq and "fails the run with its file, line and reason" in mcq
    assert "docs/general-mcq.md" in mcq and (REPO / "docs" / "general-mcq.md").is_file()
    assert "`corpora/mcq/<subset>.csv`" in render_help("general_mcq", catalog=catalog, policy=limited)
    assert "Questions: `corpora/mcq/<subset>.csv` or `.jsonl`" in render_help("benchmarks", catalog=catalog,
                                                                              policy=limited)
    assert render_help("nope", catalog=catalog).startswith("No help on `nope`.")
    assert render_help("models").startswith("No help on `models`.")  # needs a catalog


def test_help_through_the_parser(parse) -> None:
    decision = parse("/help models")
    assert isinstance(decision, Reply) and "**Models**" in decision.text
    both = parse("/help\n/help cmmlu")
    assert isinstance(both, Reply) and "tunebot commands" in both.text and "**cmmlu**" in both.text


def test_command_reference_is_generated_from_the_specs() -> None:
    table = render_command_reference()
    lines = table.splitlines()
    rows = [line for line in lines if line.startswith("| `/")]
    assert len(rows) == len(REGISTRY)
    for spec, row in zip(all_specs(), rows, strict=True):
        usage = spec.usage.replace("|", "\\|")  # escaped for the table cell; GitHub shows a plain `|`
        assert row.startswith(f"| `{usage}` |") and f"`{spec.examples[0]}`" in row
    # Every line has exactly the header's four cells: a `|` inside a usage such as `[adapter=<run-id>|latest]`
    # must be escaped, or the row falls apart on GitHub.
    assert lines[1] == "|---|---|---|---|" and _table_rows_with_wrong_cell_count(table) == []
    assert "`/eval <benchmark…> [model=<preset>] [adapter=<run-id>\\|latest]" in table


README_BLOCK = re.compile(r"<!-- commands:start -->\n(.*?)<!-- commands:end -->", re.DOTALL)


def test_readme_embeds_the_current_command_reference() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = README_BLOCK.search(readme)
    assert match is not None, "README.md lost its <!-- commands:start --> … <!-- commands:end --> block"
    assert match.group(1) == render_command_reference(), (
        "README's command table is stale: paste commands.help.render_command_reference() between the markers")
