"""Help texts and the Markdown command reference, generated from the verb specs (so they cannot drift)."""

from __future__ import annotations

from .catalog import Catalog
from .policy import DEFAULT_POLICY, Policy
from .verbs import REGISTRY, VerbSpec, all_specs, get_spec
from .verbs.base import Gate
from .verbs.misc import HELP_TOPICS


def who_may(gate: Gate, policy: Policy = DEFAULT_POLICY) -> str:
    """Who may use a verb under `policy`, in words: "`write` permission or above"."""
    level = {
        "train": policy.min_permission_train,
        "eval": policy.min_permission_eval,
        "approve": policy.min_permission_approve,
        "read": "read",
    }[gate]
    if level == "none":
        return "anyone"
    return f"`{level}` permission or above"


def _cell(text: str) -> str:
    """Text for a Markdown table cell: GitHub splits cells at every unescaped `|`, inside code spans too."""
    return text.replace("|", "\\|")


def _summary(spec: VerbSpec, lang: str) -> str:
    return spec.summary_zh if lang == "zh" else spec.summary


def render_help(
    verb: str | None = None,
    *,
    catalog: Catalog | None = None,
    policy: Policy | None = None,
    lang: str | None = None,
) -> str:
    """`/help` (all verbs) or `/help <verb>`; with a catalog also `/help models|benchmarks|datasets|presets|<pack>`."""
    pol = policy or DEFAULT_POLICY
    language = lang or pol.language
    if verb is None:
        head = "**tunebot 命令**" if language == "zh" else "**tunebot commands**"
        lines = [head, ""]
        lines += [f"- `{s.usage}` — {_summary(s, language)}" for s in all_specs()]
        tail = ("`/help <命令>` 查看参数与示例。命令写在评论的行首；引用（`>`）和代码块中的命令会被忽略。"
                if language == "zh" else
                "`/help <verb>` shows a command's settings and examples. Commands start a line; lines in quotes "
                "(`>`) and code blocks are ignored.")
        return "\n".join([*lines, "", tail])
    name = verb.removeprefix("/").lower()
    spec = get_spec(name)
    if spec is not None:
        return _verb_help(spec, pol, language)
    if catalog is not None:
        topic = _catalog_help(name, catalog, pol)
        if topic is not None:
            return topic
    return f"No help on `{name[:40]}`. Topics: " + ", ".join([*REGISTRY, *HELP_TOPICS])


def _verb_help(spec: VerbSpec, policy: Policy, lang: str) -> str:
    lines = [f"**`{spec.usage}`**", "", _summary(spec, lang)]
    if spec.details:
        lines += ["", spec.details]
    if spec.keys:
        lines += ["", "| key | values | meaning |", "|---|---|---|"]
        for key in spec.keys:
            aliases = f" (also {', '.join(key.aliases)})" if key.aliases else ""
            lines.append(f"| `{key.name}`{aliases} | {_cell(key.constraint() or '…')} | {_cell(key.help)} |")
    lines += ["", "Examples:", *[f"- `{e}`" for e in spec.examples]]
    lines += ["", f"Who may use it: {who_may(spec.gate, policy)}."]
    return "\n".join(lines)


def _catalog_help(name: str, catalog: Catalog, policy: Policy) -> str | None:
    if name == "models":
        rows = [f"- `{m.name}` ({m.size_b:g}B) — {m.description}" for m in catalog.models.values()
                if policy.model_allowed(m.name)]
        return "**Models** (`/train <model>`, `model=`)\n\n" + "\n".join(rows)
    if name == "benchmarks":
        rows = [f"- `{b.name}` — {b.description} " + (
                    f"Questions: `{policy.dataset_dir}/{b.repo_folder}/<subset>.csv` or `.jsonl` in your repository."
                    if b.repo_folder is not None else f"Default subjects: {', '.join(b.default_subsets) or '—'}.")
                for b in catalog.benchmarks.values()]
        return "**Benchmarks** (`/eval <benchmark>`)\n\n" + "\n".join(rows)
    if name == "datasets":
        rows = [f"- `{n}` — {d.description or d.id}" for n, d in sorted(policy.datasets(catalog).items())]
        rows.append(f"- any `.jsonl`, `.json` or `.csv` file under `{policy.dataset_dir}/` in this repository")
        return "**Datasets** (`dataset=`)\n\n" + "\n".join(rows)
    if name == "presets":
        rows = [f"- `{p.name}` — {p.description}" for p in catalog.training.values()]
        return "**Training presets** (`preset=`)\n\n" + "\n".join(rows)
    pack = catalog.benchmarks.get(name)
    if pack is not None and pack.repo_folder is not None:
        return repo_pack_help(pack.name, pack.description, f"{policy.dataset_dir}/{pack.repo_folder}")
    if pack is not None:
        subjects = ", ".join(f"`{s}`" for s in pack.subjects)
        return (f"**{pack.name}** — {pack.description}\n\nDefault subjects: {', '.join(pack.default_subsets)}. "
                f"`subsets=all` runs every subject.\n\nSubjects: {subjects}")
    return None


def repo_pack_help(name: str, description: str, folder: str) -> str:
    """`/help general_mcq`: where the repository's own questions go and the format they must have."""
    return "\n".join([
        f"**{name}** — {description}",
        "",
        f"Put your questions in `{folder}/` of the branch you evaluate, one file per subset: `{folder}/<subset>.csv` "
        f"or `{folder}/<subset>.jsonl` (the file name without its extension is the subset name).",
        "",
        "- Columns (CSV header, or JSONL keys): `question`, `A`, `B`, … up to `J`, `answer`; optional `id` and "
        "`explanation`. Nothing else.",
        "- 2 to 10 options per row, from `A` without gaps (a row may leave its last option cells empty).",
        "- `answer`: one letter among that row's options.",
        "- `id`: on every row or on none, unique in its file; without it a question's id is its line number, so give "
        "ids if you will insert or reorder rows (comparisons pair questions by id).",
        "- A bad row fails the run with its file, line and reason; nothing is skipped but blank lines.",
        "",
        f"`/eval {name}` runs every file; `subsets=a,b` runs `a.csv`/`a.jsonl` and `b…`; `limit=N` the first N "
        "questions of each. No few-shot. The result is tied to the commit and records the files' content hash.",
        "",
        "Example `arith.csv`:",
        "```",
        "id,question,A,B,C,D,answer",
        "q1,What is 4 plus 19?,14,23,26,39,B",
        "```",
        "Full description: docs/general-mcq.md.",
    ])


def render_command_reference(policy: Policy | None = None) -> str:
    """The Markdown table of every verb (the README embeds it; a test keeps the two in sync)."""
    pol = policy or DEFAULT_POLICY
    lines = ["| Command | What it does | Who may use it | Example |", "|---|---|---|---|"]
    for spec in all_specs():
        usage, summary, example = (_cell(text) for text in (spec.usage, spec.summary, spec.examples[0]))
        lines.append(f"| `{usage}` | {summary} | {who_may(spec.gate, pol)} | `{example}` |")
    return "\n".join(lines) + "\n"
