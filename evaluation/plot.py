"""Charts of one patient's twin: raw readings, what the twin did with them, and the filtered estimate.

Built on matplotlib's object API with the Agg canvas: no display, no pyplot global state, safe in a worker
thread or a test. Feed it a ``twin_state.trace.trace`` of the readings, e.g.::

    plot_trace(trace(readings, patient_id), Path("twin.png"), title=patient_id)
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from twin_state.catalogue import CATALOGUE
from twin_state.trace import Trace, TracePoint
from twin_state.twin import Outcome

Z95 = 1.96
"""The estimate's band is level +/- Z95 * sd: 95 % for a normal posterior."""
MS_PER_MIN = 60_000.0

ACCEPTED_COLOURS = ("tab:blue", "tab:green", "tab:cyan", "tab:olive", "tab:brown")
"""Accepted readings, one colour per device."""
OUTCOME_STYLE: dict[Outcome, tuple[str, str]] = {
    # outcome: (marker, colour)
    Outcome.REINITIALISED: ("*", "tab:purple"),
    Outcome.IMPLAUSIBLE: ("x", "tab:red"),
    Outcome.INNOVATION: ("D", "tab:orange"),
    Outcome.LATE: ("s", "tab:gray"),
    Outcome.DUPLICATE: ("+", "tab:gray"),
    Outcome.REDELIVERED: ("+", "silver"),
}


def plot_trace(trace: Trace, out: Path, title: str) -> None:
    """Write a PNG with one panel per vital in ``trace`` (catalogue order), sharing a time axis in minutes.

    Rejected readings far off the physiological scale (probe-off zeros, 277 bpm) are drawn on the panel's
    edge, so they stay visible without squashing the signal.
    """
    metrics = [m for m in CATALOGUE if trace.get(m)]
    if not metrics:
        raise ValueError("nothing to plot: the trace has no readings of a filtered vital")
    t0 = min(p.t for m in metrics for p in trace[m])
    fig = Figure(figsize=(13.0, 2.4 * len(metrics) + 0.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(metrics), 1, sharex=True, squeeze=False)[:, 0]
    for ax, metric in zip(axes, metrics, strict=True):
        spec = CATALOGUE[metric]
        _panel(ax, trace[metric], t0)
        ax.set_ylabel(f"{spec.display}\n[{spec.unit}]", fontsize=8)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, framealpha=0.8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("minutes since first reading")
    fig.suptitle(title)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=100)


def _panel(ax: Axes, points: list[TracePoint], t0: int) -> None:
    def minutes(p: TracePoint) -> float:
        return (p.t - t0) / MS_PER_MIN

    est = [p for p in points if not math.isnan(p.level)]
    xs = [minutes(p) for p in est]
    lo = [p.level - Z95 * p.sd for p in est]
    hi = [p.level + Z95 * p.sd for p in est]
    ax.fill_between(xs, lo, hi, color="tab:blue", alpha=0.2, linewidth=0, label="95% band")
    ax.plot(xs, [p.level for p in est], color="tab:blue", linewidth=1.2, label="estimate")

    accepted = [p for p in points if p.outcome in (Outcome.APPLIED, Outcome.REINITIALISED)]
    # The scale is the person's: accepted readings and the estimate's band, with a margin.
    scale = [p.raw for p in accepted] + lo + hi
    if scale:
        bottom, top = min(scale), max(scale)
        margin = max(0.15 * (top - bottom), 1e-3 * max(abs(top), 1.0))
        bottom, top = bottom - margin, top + margin
    else:
        bottom, top = min(p.raw for p in points) - 1.0, max(p.raw for p in points) + 1.0
    ax.set_ylim(bottom, top)

    devices = sorted({p.device_id for p in points if p.outcome is Outcome.APPLIED})
    for k, device in enumerate(devices):
        mine = [p for p in points if p.outcome is Outcome.APPLIED and p.device_id == device]
        ax.scatter([minutes(p) for p in mine], [p.raw for p in mine], s=10,
                   color=ACCEPTED_COLOURS[k % len(ACCEPTED_COLOURS)], label=f"applied ({device})", zorder=3)
    for outcome, (marker, colour) in OUTCOME_STYLE.items():
        mine = [p for p in points if p.outcome is outcome]
        if not mine:
            continue
        clipped = sum(1 for p in mine if not bottom <= p.raw <= top)
        label = f"{outcome.value} ({len(mine)}" + (f", {clipped} off-scale at edge)" if clipped else ")")
        ax.scatter([minutes(p) for p in mine], [min(max(p.raw, bottom), top) for p in mine], s=28,
                   marker=marker, color=colour, label=label, zorder=4, clip_on=False)
