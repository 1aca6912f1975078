"""Rewrite tests/golden/ from the current renderers: `make golden` (or `python -m tests.commands.render.update_golden`).

A separate command on purpose: tests/commands/render/test_golden.py only compares and never writes. Run this after an
intended change to a message, then review `git diff tests/golden` like code before committing it.
"""

from __future__ import annotations

import sys

from .golden_cases import CASES, GOLDEN, LANGS, golden_path, render_case


def main() -> int:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    wanted = set()
    changed = 0
    for name in sorted(CASES):
        for lang in LANGS:
            path = golden_path(name, lang)
            wanted.add(path)
            text = render_case(name, lang)
            if path.is_file() and path.read_text(encoding="utf-8") == text:
                continue
            print(f"{'updated' if path.exists() else 'created'} {path.relative_to(GOLDEN.parent.parent)}")
            path.write_text(text, encoding="utf-8")
            changed += 1
    for stale in sorted(p for p in GOLDEN.iterdir() if p.is_file() and p not in wanted):
        print(f"removed {stale.relative_to(GOLDEN.parent.parent)} (no case renders it)")
        stale.unlink()
        changed += 1
    print(f"{changed} golden file(s) changed; review them with `git diff tests/golden`" if changed
          else "golden files are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
