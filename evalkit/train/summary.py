"""logps_summary of runs trained in parts (sDPO steps, on-policy rounds), and its one-line form.

Pure functions on evalkit.json's records (no torch): sDPO and on-policy write them, the console,
report and model card read them.
"""
from __future__ import annotations

from typing import Any


def summary_by_part(summaries: list[dict | None], part: str, indices: list[int] | None = None,
                    fixed: dict | None = None) -> dict[str, Any]:
    """logps_summary of a run trained in parts (sDPO steps, on-policy rounds): each part's own
    start -> end, on its own pairs (start under the model before the part, end after it).
    There is no whole-run start -> end on the training pairs: the parts train on different
    pairs, so the first part's start and the last part's end would compare different texts.
    `fixed` (held-out pairs measured at every part: their `start` under the base and `end`
    under the final model) gives the one whole-run number, on a fixed set."""
    indices = indices or list(range(1, len(summaries) + 1))
    out: dict[str, Any] = {
        f"per_{part}": [{part: i, **(s or {})} for i, s in zip(indices, summaries)],
        "note": f"each {part}'s own pairs: start under the model before that {part}, end after it; "
                "a whole-run number only on a fixed pair set (held-out pairs)"}
    if fixed and (fixed.get("start") or {}).get("chosen") is not None:
        out["whole_run"] = {"pairs": f"the {fixed.get('n_pairs')} held-out pairs, the same at every {part}, "
                                     "never trained on; start under the base, end under the final model",
                            **{f"{k}_{when}": fixed[when].get(k) for k in ("chosen", "rejected")
                               for when in ("start", "end")}}
    return out


def logps_line(summary: dict) -> str:
    """'start -> end' of a logps_summary, one per part for runs trained in parts."""
    def one(s: dict) -> str:
        line = f"chosen {s.get('chosen_start', float('nan')):.2f} -> {s.get('chosen_end', float('nan')):.2f}"
        return line + (f", rejected {s['rejected_start']:.2f} -> {s['rejected_end']:.2f}"
                       if s.get("rejected_start") is not None else "")
    parts = next((k for k in summary if k.startswith("per_")), None)
    if parts is None:
        return one(summary)
    name = parts[len("per_"):]
    text = "; ".join(f"{name} {p[name]}: {one(p)}" for p in summary[parts])
    if summary.get("whole_run"):
        text += f"; whole run on held-out pairs: {one(summary['whole_run'])}"
    return text
