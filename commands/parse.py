"""Reads a comment and decides: parsed commands, a reply (help, usage errors, suggestions), or silence."""

from __future__ import annotations

from .args import ArgError, did_you_mean
from .catalog import Catalog
from .decision import Command, Decision, Ignore, Parsed, Reply, quote_user
from .grammar import CommandLine, TokenError, scan, split_words
from .help import render_help
from .policy import Policy
from .verbs import REGISTRY, Context, RawCommand, get_spec

MAX_COMMANDS_PER_COMMENT = 10  # any verb; the policy caps the ones that start GPU work (quotas.commands_per_comment)
MAX_ERRORS_SHOWN = 10  # a reply must stay far below GitHub's 65,536-character comment limit


def parse_comment(text: str, *, catalog: Catalog, policy: Policy, bot_login: str = "tunebot") -> Decision:
    """The decision for one comment. Never raises: anything unexpected becomes an Ignore with the reason."""
    try:
        return _parse(text if isinstance(text, str) else "", catalog, policy, bot_login)
    except Exception as exc:  # pragma: no cover - a bug must never take the webhook down; the log keeps the reason
        return Ignore(f"internal error while parsing: {type(exc).__name__}: {exc}")


def _parse(text: str, catalog: Catalog, policy: Policy, bot_login: str) -> Decision:
    found = scan(text, bot_login)
    if not found.commands and not found.problems:
        reason = "no command"
        if found.skipped:
            reason += " (ignored command-like lines: " + "; ".join(found.skipped[:5]) + ")"
        return Ignore(reason)
    errors: list[str] = [f"line {n}: {quote_user(line)}: {msg}" for n, line, msg in found.problems]
    commands: list[Command] = []
    helps: list[str] = []
    notes: list[str] = []
    unknown: list[str] = []
    lines = list(found.commands)
    if len(lines) > MAX_COMMANDS_PER_COMMENT:
        errors.append(f"this comment holds {len(lines)} commands; at most {MAX_COMMANDS_PER_COMMENT} are read "
                      "from one comment")
        lines = lines[:MAX_COMMANDS_PER_COMMENT]
    for cl in lines:
        spec = get_spec(cl.verb)
        if spec is None:
            # Other bots' verbs (`/assign`, `/retest`) share comments with ours: suggest only near-misses, unless
            # the user addressed tunebot by name.
            suggestion = did_you_mean(cl.verb, list(REGISTRY), prefix="did you mean /",
                                      cutoff=0.6 if cl.mentioned else 0.75)
            if suggestion or cl.mentioned:
                hint = suggestion.replace("/`", "`/") if suggestion else "`/help` lists the commands"
                errors.append(f"line {cl.lineno}: unknown command `/{cl.verb}`; {hint}")
            else:
                unknown.append(cl.verb)  # another bot's verb (`/cc`, `/assign`): not ours to answer
            continue
        ctx = Context(catalog=catalog, policy=policy)
        result = _validate(cl, spec.name, ctx)
        if isinstance(result, str):
            errors.append(f"line {cl.lineno}: {quote_user(cl.line)}: {result}\n  usage: `{spec.usage}` "
                          f"(`/help {spec.name}` for details)")
            continue
        notes.extend(f"line {cl.lineno}: {n}" for n in ctx.notes)
        if spec.parser_replies:
            helps.append(render_help(_topic(result), catalog=catalog, policy=policy))
            continue
        commands.append(result)
    dispatching = [c for c in commands if _dispatches(c)]
    cap = policy.quotas.max_dispatches_per_comment
    if len(dispatching) > cap:
        errors.append(f"this comment would start {len(dispatching)} jobs; the limit is {cap} per comment "
                      "(`quotas.commands_per_comment` in .tunebot.yml)")
    if errors:
        shown = [f"- {e}" for e in errors[:MAX_ERRORS_SHOWN]]
        if len(errors) > MAX_ERRORS_SHOWN:
            shown.append(f"- … and {len(errors) - MAX_ERRORS_SHOWN} more")
        return Reply("⚠️ Nothing was started:\n\n" + "\n".join(shown))
    if not commands and helps:
        return Reply("\n\n".join(helps))
    if not commands:
        return Ignore("no tunebot command (other verbs: " + ", ".join(sorted(set(unknown))) + ")")
    return Parsed(tuple(commands), tuple(notes) + tuple(helps))


def _validate(cl: CommandLine, verb: str, ctx: Context) -> Command | str:
    spec = REGISTRY[verb]
    try:
        words = split_words(_strip_trailing_punctuation(cl.rest))
        args = spec.validate(RawCommand(verb, tuple(words), cl.line, cl.lineno), ctx)
    except (ArgError, TokenError) as exc:
        return str(exc)
    return Command(verb=verb, args=args, line=cl.line, lineno=cl.lineno)


def _strip_trailing_punctuation(rest: str) -> str:
    # "/train tiny max_steps=20." — sentence punctuation (often added by autocorrect) is not part of the value.
    rest = rest.rstrip()
    if len(rest) >= 2 and rest[-1] in ".!?;," and rest[-2].isalnum():
        return rest[:-1]
    return rest


def _topic(cmd: Command) -> str | None:
    topic = cmd.args.get("topic")
    return topic if isinstance(topic, str) else None


def _dispatches(cmd: Command) -> bool:
    spec = REGISTRY.get(cmd.verb)
    return bool(spec and spec.dispatches)


def parse_command(line: str, *, catalog: Catalog, policy: Policy) -> Command | str:
    """One command line to a Command, or the message saying why not (for config files and tests)."""
    found = scan(line)
    if found.problems:
        return found.problems[0][2]
    if len(found.commands) != 1:
        return "expected exactly one command line"
    cl = found.commands[0]
    spec = get_spec(cl.verb)
    if spec is None:
        return f"unknown command `/{cl.verb}`"
    return _validate(cl, spec.name, Context(catalog=catalog, policy=policy))
