"""matplotlib figures as inline SVG strings: no files, no network, text kept as text."""
from __future__ import annotations

import io
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# text.parse_math off: names come from users ("$5 model", "a$b$"); a "$" must stay a dollar sign,
# never become mathtext (which raises on unbalanced or unknown TeX)
matplotlib.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
                            "axes.spines.right": False, "figure.dpi": 96, "text.parse_math": False})
PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]


def to_svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]                      # drop the XML prologue and DOCTYPE
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    return svg


TRAINING_PANELS = [("logps_chosen", "log pi(y_w), training pairs"), ("logps_rejected", "log pi(y_l), training pairs"),
                   ("heldout_logps_chosen", "log pi(y_w), held-out pairs"),
                   ("heldout_logps_rejected", "log pi(y_l), held-out pairs"),
                   ("heldout_logps_unseen", "other prompts' responses (held-out)"),
                   ("loss", "loss"), ("reward_margin", "reward margin"), ("penalty_active", "DPOP penalty active (share)")]


def training_curves(training: dict[str, list[dict]], columns: int = 4) -> str | None:
    """Per variant: chosen/rejected log-probs on the training pairs and, beside them, on the
    held-out pairs and other prompts' responses (the dispersion diagnostic); then loss, reward
    margin, DPOP penalty share. Panels no variant has data for are left out."""
    if not training:
        return None
    panels = [(k, t) for k, t in TRAINING_PANELS if any(r.get(k) is not None for rows in training.values() for r in rows)]
    if not panels:
        return None
    n_rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(n_rows, columns, figsize=(3.0 * columns, 2.4 * n_rows), squeeze=False)
    flat = axes.ravel()
    for ax, (key, title) in zip(flat, panels):
        for i, (name, rows) in enumerate(training.items()):
            pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), label=name, color=PALETTE[i % len(PALETTE)], lw=1.4)
        ax.set_title(title)
        ax.set_xlabel("step")
    for ax in flat[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    # one legend for every panel, below them: never over a curve
    handles, labels = flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, frameon=False, loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=min(len(labels), columns) or 1)
    return to_svg(fig)


def contamination_bars(rows: list[dict]) -> str | None:
    """rows: {model, benchmark, result, control, ci, control_ci} -> grouped bars with CIs."""
    if not rows:
        return None
    benches = list(dict.fromkeys(r["benchmark"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(benches) * len(models) ** 0.5), 2.8))
    width = 0.8 / (len(models) + 1)
    for b_i, bench in enumerate(benches):
        for m_i, model in enumerate(models + ["control"]):
            r = next((x for x in rows if x["benchmark"] == bench and x["model"] == (model if model != "control" else models[0])), None)
            if r is None:
                continue
            val, ci = (r["control"], r["control_ci"]) if model == "control" else (r["result"], r["ci"])
            x = b_i + (m_i - len(models) / 2) * width
            ax.bar(x, val, width, color="#bbbbbb" if model == "control" else PALETTE[m_i % len(PALETTE)],
                   label=((model if model != "control" else "control (reference as target)") if b_i == 0 else None),
                   yerr=[[val - ci[0]], [ci[1] - val]], capsize=2)
            # every bar carries its value, and a 0.00 gets a visible floor line, so a chart of
            # zeros still shows one mark per result
            ax.text(x, max(val, ci[1]) + 0.02, f"{val:.2f}", ha="center", va="bottom", fontsize=6)
            if val == 0:
                ax.hlines(0.006, x - width / 2, x + width / 2, lw=2.5,
                          color="#bbbbbb" if model == "control" else PALETTE[m_i % len(PALETTE)])
    ax.axhline(0.85, ls="--", lw=0.8, color="#c44e52", label="0.85: likely contaminated above")
    ax.set_xticks(range(len(benches)), benches)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("result (share flagged)")
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))   # beside, never over bars
    fig.tight_layout()
    return to_svg(fig)


def score_histograms(per_model: dict[str, list[float]], xlabel: str) -> str | None:
    if not per_model:
        return None
    fig, ax = plt.subplots(figsize=(4.5, 2.4))
    for i, (name, vals) in enumerate(per_model.items()):
        ax.hist(vals, bins=20, range=(0, 1), alpha=0.55, label=name, color=PALETTE[i % len(PALETTE)])
    ax.axvline(0.1, ls="--", lw=0.8, color="#c44e52", label="s(x) < 0.1: flagged")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("examples")
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))   # beside, never over data
    fig.tight_layout()
    return to_svg(fig)


def category_bars(per_model: dict[str, dict[str, float]]) -> str | None:
    per_model = {k: v for k, v in per_model.items() if v}
    if not per_model:
        return None
    cats = sorted({c for d in per_model.values() for c in d})
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(cats)), 2.6))
    width = 0.8 / len(per_model)
    for i, (name, scores) in enumerate(per_model.items()):
        xs = [c_i + (i - len(per_model) / 2 + 0.5) * width for c_i in range(len(cats))]
        ax.bar(xs, [scores.get(c, 0) for c in cats], width, label=name, color=PALETTE[i % len(PALETTE)])
    ax.set_xticks(range(len(cats)), cats, rotation=30, ha="right")
    ax.set_ylim(0, 10)
    ax.set_ylabel("mean score (1-10)")
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))   # beside, never over data
    fig.tight_layout()
    return to_svg(fig)


def delta_panels(per_entry: dict[str, list[tuple[str, float, list | None]]]) -> str | None:
    """One small panel per benchmark: each variant's delta against the base (x100) with its
    paired bootstrap 95% interval; the line at 0 is the base."""
    if not per_entry:
        return None
    n = len(per_entry)
    fig, axes = plt.subplots(1, n, figsize=(max(2.6 * n, 4.0), 1.1 + 0.3 * max(len(v) for v in per_entry.values())),
                             squeeze=False)
    for ax, (entry, rows) in zip(axes[0], per_entry.items()):
        for i, (model, delta, ci) in enumerate(rows):
            # an interval from per-document rows that does not hold the summary's delta (e.g. an
            # entry averaged otherwise): drawn from the point, never a negative bar (matplotlib refuses)
            err = [[max(0.0, delta - ci[0])], [max(0.0, ci[1] - delta)]] if ci else None
            ax.errorbar(delta, i, xerr=err, fmt="o", ms=4, capsize=2, color=PALETTE[i % len(PALETTE)])
        ax.axvline(0, lw=0.8, color="#777")
        ax.set_yticks(range(len(rows)), [r[0] for r in rows])
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.invert_yaxis()
        ax.set_title(entry)
        ax.set_xlabel("delta vs base (x100)")
    fig.tight_layout()
    return to_svg(fig)
