"""Pieces every channel renders the same way: state and phase names, icons, the colon of each language."""

from __future__ import annotations

from . import fmt
from .i18n import Language, t
from .views import RunView

STATE_ICON = {"queued": "⏳", "dispatched": "📤", "running": "🔄", "succeeded": "✅", "failed": "❌", "cancelled": "🚫"}
VERDICT_ICON = {"improved": "🟢", "regressed": "🔴", "within_noise": "⚪", "untested": "❔"}
CONCLUSION_ICON = {"success": "✅", "neutral": "➖", "failure": "❌"}


def colon(lang: Language) -> str:
    """"：" in Chinese text, ": " in English."""
    return "：" if lang == "zh" else ": "


def phase_text(phase: str, lang: Language) -> str:
    """A known phase in words ("training", "评测"); an unknown one as given, made inert."""
    try:
        return t(lang, f"phase.{phase}")
    except KeyError:
        return fmt.defuse(" ".join(phase.split()))


def state_text(view: RunView, lang: Language) -> str:
    """The run's state, with its phase while it runs: "running: training" / "运行中：训练"."""
    text = t(lang, f"state.{view.state}")
    phase = view.phase or (view.progress.phase if view.progress else None)
    if view.state == "running" and phase:
        text += colon(lang) + phase_text(phase, lang)
    return text
