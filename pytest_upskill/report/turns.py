"""Agent loops in the reports: the pass@turn curve, the tokens to a pass, the records as they
stood after a given turn (for the lift before any feedback), and the lines that say so."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..sanitize import clean_text
from .stats import mean

if TYPE_CHECKING:
    from .results import SampleRecord, Statistics, SummaryRow
    from .tables import Text

__all__ = ["at_turn", "padded", "turn_fields", "turn_lines"]


def turn_fields(counted: list[SampleRecord]) -> dict[str, Any]:
    """The pass@turn curve and the tokens to a pass, when a sample took more than one turn."""
    most = max((r.turns for r in counted), default=1)
    if most <= 1 and not any(r.per_turn for r in counted):
        return {}
    curve = {}
    for turn in range(1, most + 1):
        rows = [
            (r.test, r.passed_at_turn is not None and r.passed_at_turn <= turn) for r in counted
        ]
        per_test: dict[str, list[bool]] = {}
        for test, passed in rows:
            per_test.setdefault(test, []).append(passed)
        rates = [sum(v) / len(v) for v in per_test.values()]
        curve[str(turn)] = round(sum(rates) / len(rates), 6)
    spent = [r.usage.input_tokens + r.usage.output_tokens for r in counted if r.outcome == "passed"]
    disclosed = [r.skill_loaded_at_turn is not None for r in counted if r.skill_mode == "disclose"]
    paid = [r.cost_usd for r in counted if r.outcome == "passed" and r.cost_usd is not None]
    return {
        "pass_at_turn": curve,
        "mean_tokens_to_pass": mean(spent) if spent else None,
        "mean_cost_to_pass": mean(paid) if paid else None,
        "skill_load_rate": mean([float(d) for d in disclosed]) if disclosed else None,
    }


def at_turn(records: Iterable[SampleRecord], turn: int) -> list[SampleRecord]:
    """The records as they stood after `turn` turns: a later pass is that turn's failure."""
    stood = []
    for record in records:
        later = record.passed_at_turn is not None and record.passed_at_turn > turn
        if later:
            logged = [t for t in record.per_turn if t.turn == turn]
            stage = logged[0].stage if logged else record.stage
            record = record.model_copy(update={"outcome": "failed", "stage": stage})
        stood.append(record)
    return stood


def turn_lines(stats: Statistics, text: Text = clean_text) -> list[str]:
    """One line per (model, condition) with its pass@turn curve and tokens to a pass, then each
    skill's lift after the first turn beside its lift after the last."""
    lines = []
    for row in stats.summary:
        if not row.pass_at_turn:
            continue
        curve = ", ".join(f"turn {turn} {rate:.0%}" for turn, rate in row.pass_at_turn.items())
        tokens = row.mean_tokens_to_pass
        spent = "" if tokens is None else f"; {tokens:,.0f} tokens to a pass on average"
        if row.mean_cost_to_pass is not None:
            spent += f" (${row.mean_cost_to_pass:.4f})"
        loads = row.skill_load_rate
        read = "" if loads is None else f"; skill read in {loads:.0%} of samples"
        lines.append(f"pass@turn {text(row.model)} {text(row.condition)}: {curve}{spent}{read}")
    last = {(row.model, row.skill): row for row in stats.lift}
    for first in stats.lift_at_turn_1:
        after = last.get((first.model, first.skill))
        if after is None or first.no_lift or after.no_lift:
            continue
        lines.append(
            f"lift {text(first.model)} {text(first.skill)} at turn 1: {first.lift * 100:+.0f} pts "
            f"[{first.ci_low * 100:+.0f}, {first.ci_high * 100:+.0f}]; after the last turn: "
            f"{after.lift * 100:+.0f} pts [{after.ci_low * 100:+.0f}, {after.ci_high * 100:+.0f}]"
        )
    return lines


def padded(rows: list[SummaryRow]) -> list[SummaryRow]:
    """The rows with their pass@turn curves carried to the longest: a row whose samples all
    ended by turn 2 still has its rate at turn 4, so the curves compare turn by turn."""
    most = max((len(row.pass_at_turn) for row in rows), default=0)
    out = []
    for row in rows:
        curve = dict(row.pass_at_turn)
        if curve and len(curve) < most:
            last = curve[str(len(curve))]
            curve.update({str(turn): last for turn in range(len(curve) + 1, most + 1)})
            row = row.model_copy(update={"pass_at_turn": curve})
        out.append(row)
    return out
