"""Splitting long comments: parts fit, stay well-formed, keep order, and the headline stays in the first part."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.render.split import balanced, measure, split_comment

HEADLINE = "### ✅ CMMLU +2.3 (p = 0.01, significant) · C-Eval −0.4 (within noise)"


def independent_balance(text: str) -> bool:
    """A second, deliberately simple checker (not the splitter's own parser): fences toggle, details count."""
    fence: str | None = None
    depth = 0
    for line in text.split("\n"):
        stripped = line.strip()
        if fence is not None:
            if stripped and set(stripped) == {fence[0]} and len(stripped) >= len(fence) and line.startswith(
                    ("", " ", "  ", "   ")) and len(line) - len(line.lstrip(" ")) <= 3:
                fence = None
            continue
        m = re.match(r"^ {0,3}(`{3,}|~{3,})", line)
        if m:
            fence = m.group(1)
            continue
        for tag in re.findall(r"<details(?=[\s>])[^>]*>|</details\s*>", line):
            depth += -1 if tag.startswith("</") else 1
            if depth < 0:
                return False
    return fence is None and depth == 0


# Free text starts with a letter so that it never forms a fence or a tag by accident (the input stays balanced).
words = st.text(alphabet=st.sampled_from(list("abc xyz|*_-:.,0123456789测试数据😀`<>/")), min_size=0, max_size=80).map(
    lambda s: "t" + s)
long_words = st.text(alphabet=st.sampled_from(list("ab c😀中`")), min_size=100, max_size=3000).map(lambda s: "L" + s)


@st.composite
def block(draw: st.DrawFn, depth: int = 0) -> list[str]:
    kind = draw(st.sampled_from(["text", "text", "long", "fence", "details", "table"] if depth < 3 else ["text"]))
    if kind == "text":
        return [draw(words) for _ in range(draw(st.integers(1, 8)))]
    if kind == "long":
        return [draw(long_words)]
    if kind == "table":
        rows = draw(st.integers(1, 30))
        return ["| a | b |", "|---|--:|"] + [f"| {draw(words).replace('|', '/')} | {i} |" for i in range(rows)]
    if kind == "fence":
        ticks = "`" * draw(st.integers(3, 5))
        info = draw(st.sampled_from(["", "text", "mermaid", "python"]))
        body = [draw(words).replace("`", "'") for _ in range(draw(st.integers(0, 40)))]
        if draw(st.booleans()):
            body.append(draw(long_words).replace("`", "'"))
        return [f"{ticks}{info}", *body, ticks]
    inner: list[str] = []
    for _ in range(draw(st.integers(1, 4))):
        inner += draw(block(depth + 1))
    summary = draw(words).replace("<", "").replace(">", "").replace("`", "")
    if draw(st.booleans()):
        head = [f"<details><summary>{summary}</summary>", ""]
    else:
        head = ["<details>", f"<summary>{summary}</summary>", ""]
    return [*head, *inner, "", "</details>"]


@st.composite
def document(draw: st.DrawFn) -> str:
    lines = [HEADLINE, ""]
    for _ in range(draw(st.integers(1, 12))):
        lines += draw(block())
        lines.append("")
    return "\n".join(lines)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=document(), limit=st.integers(min_value=300, max_value=4000))
def test_parts_fit_are_balanced_and_start_with_the_headline(text: str, limit: int) -> None:
    assert independent_balance(text)
    parts = split_comment(text, limit)
    assert parts
    for part in parts:
        assert measure(part) <= limit
        assert independent_balance(part), part
        assert balanced(part)
    assert parts[0].startswith(HEADLINE)
    # Nothing is lost: every non-empty original line shows up, in order (a line cut across parts in pieces).
    joined = "\n".join(parts)
    pos = 0
    for line in text.split("\n"):
        if not line.strip() or measure(line) > limit // 3:
            continue
        found = joined.find(line, pos)
        assert found >= 0, line
        pos = found + len(line)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=document(), limit=st.integers(min_value=300, max_value=3000), max_parts=st.integers(1, 4))
def test_max_parts_keeps_the_beginning_and_says_what_was_dropped(text: str, limit: int, max_parts: int) -> None:
    full = split_comment(text, limit)
    parts = split_comment(text, limit, max_parts=max_parts, omitted_note="({k} more parts omitted)")
    assert len(parts) <= max_parts
    assert parts[0].startswith(HEADLINE)
    for part in parts:
        assert measure(part) <= limit
        assert independent_balance(part)
    if len(full) > max_parts:
        assert re.search(r"\(\d+ more parts omitted\)$", parts[-1])
    else:
        assert parts == full  # nothing to drop: the cap changes nothing


def test_short_balanced_text_is_returned_unchanged() -> None:
    text = "hello\n\n```\ncode\n```\n"
    assert split_comment(text) == [text]


def test_a_cut_inside_a_fence_closes_and_reopens_it_with_its_language() -> None:
    body = "\n".join(f"line {i:04d}" for i in range(200))
    text = f"{HEADLINE}\n\n<details><summary>Logs</summary>\n\n```python\n{body}\n```\n\n</details>\n"
    parts = split_comment(text, 500)
    assert len(parts) > 3
    for part in parts[1:-1]:
        assert part.startswith("<details><summary>Logs (…)</summary>\n\n```python\n")
        assert part.endswith("```\n\n</details>")
    assert all(measure(p) <= 500 for p in parts)


def test_a_block_opened_at_the_end_of_a_part_moves_to_the_next_part() -> None:
    filler = "\n".join(f"filler line {i:03d}" for i in range(25))
    table = "\n".join(f"| row {i} | {i} |" for i in range(30))
    text = f"{HEADLINE}\n\n{filler}\n\n<details><summary>Subjects</summary>\n\n{table}\n\n</details>\n"
    moved_whole = 0
    for limit in range(400, 800, 3):
        parts = split_comment(text, limit, continued=" (continued)")
        assert len(parts) >= 2
        for part in parts:
            assert not re.search(r"</summary>\n*</details>", part), part
        moved_whole += any(p.startswith("<details><summary>Subjects</summary>") for p in parts[1:])
    assert moved_whole > 0


def test_a_table_cut_in_two_repeats_its_header() -> None:
    rows = "\n".join(f"| subject_{i:02d} | {i} |" for i in range(80))
    text = f"{HEADLINE}\n\n<details><summary>Subjects</summary>\n\n| Subject | n |\n|---|--:|\n{rows}\n\n</details>\n"
    parts = split_comment(text, 500, continued=" (continued)")
    assert len(parts) > 2
    for part in parts[1:]:
        assert part.startswith("<details><summary>Subjects (continued)</summary>\n\n"
                               "| Subject | n |\n|---|--:|\n| subject_")
    assert sum(p.count("| subject_") for p in parts) == 80


def test_a_table_title_row_is_never_left_without_its_delimiter() -> None:
    rows = "\n".join(f"| s{i} | {i} |" for i in range(5))
    for pad in range(0, 120, 3):
        table = f"| Subject | n |\n|---|--:|\n{rows}"
        text = f"{HEADLINE}\n\n{'x' * pad}\n\n<details><summary>S</summary>\n\n{table}\n\n</details>"
        titles = 0
        for part in split_comment(text, 200):
            lines = part.split("\n")
            for i, line in enumerate(lines):
                if line == "| Subject | n |":
                    titles += 1
                    assert i + 1 < len(lines) and lines[i + 1] == "|---|--:|", part
        assert titles >= 1, pad  # the table is still there to check


def test_longer_fence_inside_is_respected() -> None:
    # A ```` fence containing ``` lines: the inner ``` must not be taken as its end.
    text = "````md\n" + "\n".join(["```", "inner", "```"] * 50) + "\n````\nafter\n" + "x" * 400
    parts = split_comment(text, 200)
    assert len(parts) > 1
    for part in parts:
        assert independent_balance(part)
        assert measure(part) <= 200
    assert "\n".join(parts).count("inner") == 50 and parts[-1].rstrip().endswith("x" * 40)


def test_astral_characters_count_twice() -> None:
    text = "😀" * 1000
    parts = split_comment(text, 100)
    assert all(measure(p) <= 100 for p in parts)
    assert "".join(parts) == text


def test_unbalanced_input_still_gives_balanced_parts() -> None:
    text = HEADLINE + "\n\n<details><summary>x</summary>\n\n```\n" + "\n".join(["data"] * 300)
    parts = split_comment(text, 400)
    assert len(parts) > 1 and all(independent_balance(p) and measure(p) <= 400 for p in parts)
    short = split_comment("```\nnever closed", 400)
    assert short == ["```\nnever closed\n```"]


def test_limit_too_small_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 64"):
        split_comment("x", 10)
