"""The one-line form of a logps_summary (evalkit.schema.summary_by_part builds those of runs
trained in parts): the console and the model card print it.
"""
from __future__ import annotations


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
