"""Write docs/scale.md and its plots from the fleet-scale measurements.

    python bench/fleet_sim.py && python bench/scale_report.py

Reads ``docs/scale/sim.json`` (``bench/fleet_sim.py``: the gossip core on the
simulator at N = 100 to 10,000) and, when present, ``docs/scale/crowd.json``
(``bench/fleet.py``: one real agent process in a crowd of N members). The crowd file
is read generically: a list of per-N result dicts, alone or as a value of the top
dict, whose numeric fields with names like ``idle_cpu_percent``, ``rss_mb``,
``bytes_sent_per_s``, ``join_seconds`` or ``health_p99_ms`` are plotted against N.
Writes PNG plots (matplotlib, Agg backend) to ``docs/scale/`` and the page to
``docs/scale.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib

# No display on servers and CI: render straight to files.
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # the backend is chosen first
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, NullFormatter

ROOT = Path(__file__).resolve().parent.parent
SCALE_DIR = ROOT / "docs" / "scale"
PAGE = ROOT / "docs" / "scale.md"
# Crowd fields drawn first, in this order, when present (names from the brief of
# bench/fleet.py and the names it settled on); then health-check p99s and fields whose
# names match CROWD_HINTS, up to CROWD_PLOTS panels. The table lists every numeric field.
CROWD_FIELDS = (
    "idle_cpu_percent",
    "rss_mb",
    "rss_mib",
    "bytes_sent_per_s",
    "idle_bytes_per_s",
    "join_seconds",
    "health_p99_ms",
)
CROWD_HINTS = ("cpu", "rss", "memory", "bytes", "join", "p99", "lag", "latency", "detect")
CROWD_PLOTS = 6
CROWD_N_KEYS = ("n", "N", "members", "crowd", "crowd_size", "size", "nodes", "num_members")
COLORS = {
    "blue": "#1f77b4",
    "orange": "#ff7f0e",
    "green": "#2ca02c",
    "red": "#d62728",
    "purple": "#9467bd",
    "grey": "#7f7f7f",
    "brown": "#8c564b",
}


# ---------------------------------------------------------------------------- data


def load(path: Path) -> Any | None:
    if not path.exists():
        return None
    return json.loads(path.read_text())


def series(
    results: Sequence[dict[str, Any]], section: str, key: str
) -> tuple[list[int], list[float], list[float], list[float]]:
    """(N, median, min, max) over seeds of ``run[section][key]``; N without a value is left out."""
    ns: list[int] = []
    med: list[float] = []
    low: list[float] = []
    high: list[float] = []
    for result in results:
        values = [
            run[section][key]
            for run in result["runs"]
            if section in run and run[section].get(key) is not None
        ]
        if not values:
            continue
        ns.append(result["n"])
        med.append(statistics.median(values))
        low.append(min(values))
        high.append(max(values))
    return ns, med, low, high


def formula(results: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    return [r["n"] for r in results], [float(r["formulas"][key]) for r in results]


def crowd_rows(data: Any) -> tuple[str, list[dict[str, float]]]:
    """(name of the size field, rows of numeric fields) from the crowd file, any shape."""
    candidates: list[Any] = []
    if isinstance(data, list):
        candidates = [data]
    elif isinstance(data, dict):
        candidates = [value for value in data.values() if isinstance(value, list)]
    for items in candidates:
        dicts = [item for item in items if isinstance(item, dict)]
        if not dicts:
            continue
        n_key = next((k for k in CROWD_N_KEYS if all(_number(d.get(k)) for d in dicts)), None)
        if n_key is None:
            continue
        rows = []
        for item in dicts:
            row = {key: float(value) for key, value in _flatten(item).items() if _number(value)}
            rows.append(row)
        rows.sort(key=lambda row: row[n_key])
        return n_key, rows
    return "", []


def crowd_errors(data: Any, n_key: str) -> list[tuple[float, str]]:
    """(N, message) of crowd results that carry an ``error`` string."""
    items = data if isinstance(data, list) else []
    if isinstance(data, dict):
        items = [item for value in data.values() if isinstance(value, list) for item in value]
    return [
        (float(item[n_key]), item["error"])
        for item in items
        if isinstance(item, dict)
        and isinstance(item.get("error"), str)
        and _number(item.get(n_key))
    ]


def _flatten(item: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in item.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def crowd_panels(n_key: str, rows: list[dict[str, float]]) -> list[tuple[str, list[str]]]:
    """(title, fields) per plot panel: the preferred fields one each, the health-check
    p99s together, then other hinted fields, up to CROWD_PLOTS panels."""
    present = {key for row in rows for key in row if key != n_key}
    panels = [(field, [field]) for field in CROWD_FIELDS if field in present]
    used = {field for _title, fields in panels for field in fields}
    health = sorted(key for key in present - used if "health" in key and "p99" in key)
    if health:
        panels.append(("health check p99 (ms)", health))
        used.update(health)
    panels += [
        (key, [key])
        for key in sorted(present - used)
        if any(hint in key.lower() for hint in CROWD_HINTS)
    ]
    return panels[:CROWD_PLOTS]


def crowd_table_fields(n_key: str, rows: list[dict[str, float]]) -> list[str]:
    """Every numeric field, plotted ones first."""
    plotted = [field for _title, fields in crowd_panels(n_key, rows) for field in fields]
    present = {key for row in rows for key in row if key != n_key}
    return plotted + sorted(present - set(plotted))


# ---------------------------------------------------------------------------- plots


def _n_axis(ax: Axes, ns: Sequence[int]) -> None:
    ax.set_xscale("log")
    ax.set_xticks(list(ns))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:,.0f}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("members (N, log scale)")
    ax.grid(True, which="major", alpha=0.3)


def _line(
    ax: Axes,
    ns: Sequence[float],
    values: Sequence[float],
    label: str,
    color: str,
    *,
    low: Sequence[float] | None = None,
    high: Sequence[float] | None = None,
    style: str = "-",
    marker: str = "o",
    annotate: str | None = None,
    nudge: float = 0.0,
) -> None:
    if not ns:
        return
    if (
        low is not None
        and high is not None
        and any(h > lo for lo, h in zip(low, high, strict=True))
    ):
        errors = [
            [v - lo for v, lo in zip(values, low, strict=True)],
            [h - v for v, h in zip(values, high, strict=True)],
        ]
        ax.errorbar(ns, values, yerr=errors, fmt="none", ecolor=color, alpha=0.5, capsize=3)
    ax.plot(ns, values, style, marker=marker, color=color, label=label, linewidth=2)
    if annotate:
        ax.annotate(
            annotate.format(values[-1]),
            (ns[-1], values[-1]),
            textcoords="offset points",
            xytext=(6, nudge),
            va="center",
            fontsize=9,
            color=color,
        )


def _headroom(ax: Axes, factor: float = 1.45) -> None:
    """Room above the lines for the legend, so it hides no data."""
    ax.set_ylim(0, ax.get_ylim()[1] * factor)


def _save(fig: Any, name: str) -> str:
    fig.tight_layout()
    path = SCALE_DIR / name
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return name


def plot_convergence(results: list[dict[str, Any]]) -> str:
    fig, ax = plt.subplots(figsize=(8, 4.8))
    ns = [r["n"] for r in results]
    for section, label, color in (
        ("convergence", "core as is", COLORS["blue"]),
        ("convergence_ticker", "gossip on 200 ms ticks (memberlist)", COLORS["orange"]),
    ):
        n9, v9, lo9, hi9 = series(results, section, "t9999_s")
        _line(ax, n9, v9, f"{label}: 99.99 %", color, low=lo9, high=hi9, annotate="{:.2f} s")
        n1, v1, _lo, _hi = series(results, section, "t100_s")
        _line(ax, n1, v1, f"{label}: 100 %", color, style="--", marker="s")
    fn, fv = formula(results, "model_t9999_s")
    _line(ax, fn, fv, "Serf's model, 99.99 % (synchronous rounds)", COLORS["grey"], style=":")
    _n_axis(ax, ns)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("seconds after the update")
    ax.set_title("One metadata update reaching every member: grows like log N")
    _headroom(ax)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_xlim(right=max(ns) * 2.2)
    return _save(fig, "convergence.png")


def plot_detection(results: list[dict[str, Any]]) -> str:
    fig, ax = plt.subplots(figsize=(8, 4.8))
    ns = [r["n"] for r in results]
    fn, fmin = formula(results, "suspicion_min_s")
    _line(ax, fn, fmin, "suspicion timeout, minimum (4 x log10 N x 1 s)", COLORS["grey"], style=":")
    for key, label, color, nudge in (
        ("first_suspect_s", "first member suspects it", COLORS["green"], 0.0),
        ("first_dead_s", "first member declares it dead", COLORS["red"], -7.0),
        ("all_dead_s", "every member sees it dead", COLORS["purple"], 7.0),
    ):
        sn, sv, lo, hi = series(results, "detection", key)
        _line(ax, sn, sv, label, color, low=lo, high=hi, annotate="{:.1f} s", nudge=nudge)
    _n_axis(ax, ns)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("seconds after the kill")
    ax.set_title("Failure detection: the suspicion timeout (log N) dominates")
    _headroom(ax)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_xlim(right=max(ns) * 2.2)
    return _save(fig, "detection.png")


def plot_bytes(results: list[dict[str, Any]]) -> str:
    fig, ax = plt.subplots(figsize=(8, 4.8))
    ns = [r["n"] for r in results]
    for key, label, color, style in (
        ("bytes_per_member_s", "total", COLORS["purple"], "-"),
        ("push_pull_bytes_per_member_s", "push-pull (full state exchanges)", COLORS["orange"], "-"),
        (
            "push_pull_bytes_per_member_s_expected",
            "push-pull, expected: 2 x state / interval",
            COLORS["grey"],
            ":",
        ),
        ("udp_bytes_per_member_s", "UDP (probes, acks, gossip)", COLORS["blue"], "-"),
    ):
        sn, sv, lo, hi = series(results, "idle", key)
        annotate = None if style == ":" else "{:,.0f} B/s"
        nudge = -7.0 if key == "push_pull_bytes_per_member_s" else 0.0
        if key == "bytes_per_member_s":
            nudge = 7.0
        _line(
            ax, sn, sv, label, color, low=lo, high=hi, style=style, annotate=annotate, nudge=nudge
        )
    _n_axis(ax, ns)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: _bytes(value)))
    ax.set_ylabel("bytes sent per member per second (log scale)")
    ax.set_title("Idle traffic per member: UDP flat, push-pull grows like N / log N")
    low, high = ax.get_ylim()
    # Room above the lines for the legend (a log axis: a factor, not an offset).
    ax.set_ylim(low, high * 8)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_xlim(right=max(ns) * 2.2)
    return _save(fig, "bytes.png")


def plot_cpu(results: list[dict[str, Any]]) -> str:
    fig, ax = plt.subplots(figsize=(8, 4.8))
    ns = [r["n"] for r in results]
    for key, label, color in (
        ("wall_us_per_member_s", "whole simulation (measured window)", COLORS["purple"]),
        ("scans_us_per_member_s", "reconnect/reap scans of the node map", COLORS["red"]),
        ("push_pull_steady_us_per_member_s", "push-pull, steady state", COLORS["orange"]),
        ("probe_gossip_us_per_member_s", "probe + gossip path of the core", COLORS["blue"]),
    ):
        sn, sv, lo, hi = series(results, "idle", key)
        _line(ax, sn, sv, label, color, low=lo, high=hi, annotate="{:,.0f} µs")
    _n_axis(ax, ns)
    ax.set_ylabel("µs of CPU per member per second (log scale)")
    ax.set_title("CPU per member at idle: the probe path is flat, full-view work is not")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
    low, high = ax.get_ylim()
    # Room above the lines for the legend (a log axis: a factor, not an offset).
    ax.set_ylim(low, high * 8)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_xlim(right=max(ns) * 2.2)
    return _save(fig, "cpu.png")


def plot_crowd(
    n_key: str, rows: list[dict[str, float]], panels: list[tuple[str, list[str]]]
) -> str:
    columns = min(2, len(panels))
    lines = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(lines, columns, figsize=(8, 3.4 * lines), squeeze=False)
    palette = list(COLORS.values())
    for index, (title, fields) in enumerate(panels):
        ax = axes[index // columns][index % columns]
        sizes: set[int] = set()
        for number, field in enumerate(fields):
            points = [(row[n_key], row[field]) for row in rows if field in row]
            xs = [x for x, _y in points]
            sizes.update(int(x) for x in xs)
            color = palette[(index + number) % len(palette)]
            _line(ax, xs, [y for _x, y in points], field, color)
        _n_axis(ax, sorted(sizes))
        ax.set_ylim(bottom=0)
        ax.set_title(title, fontsize=10)
        if len(fields) > 1:
            ax.legend(fontsize=7)
    for index in range(len(panels), lines * columns):
        axes[index // columns][index % columns].axis("off")
    fig.suptitle("One real agent in a crowd of N members")
    return _save(fig, "crowd.png")


def _bytes(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:g} MB"
    if value >= 1e3:
        return f"{value / 1e3:g} kB"
    return f"{value:g} B"


# ---------------------------------------------------------------------------- page


def _fmt(value: float | None, digits: int = 2, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{unit}"


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"


def _med(result: dict[str, Any], section: str, key: str) -> float | None:
    values = [
        run[section][key]
        for run in result["runs"]
        if section in run and run[section].get(key) is not None
    ]
    return statistics.median(values) if values else None


def _range(result: dict[str, Any], section: str, key: str, digits: int = 2) -> str:
    values = [
        run[section][key]
        for run in result["runs"]
        if section in run and run[section].get(key) is not None
    ]
    missing = len(result["runs"]) - len(values)
    if not values:
        return "not reached"
    text = _fmt(statistics.median(values), digits, " s")
    if len(values) > 1:
        text += f" ({_fmt(min(values), digits)} to {_fmt(max(values), digits)})"
    if missing:
        text += f", {missing} run(s) not within the limit"
    return text


def _ratio(last: float | None, first: float | None) -> str:
    if last is None or not first:
        return "-"
    return f"{last / first:,.1f}x"


def page(sim: dict[str, Any], crowd: Any | None, plots: dict[str, str]) -> str:
    results: list[dict[str, Any]] = sorted(sim["results"], key=lambda r: r["n"])
    first, last = results[0], results[-1]
    n0, n1 = first["n"], last["n"]
    machine = sim.get("machine", {})
    generated = sim.get("generated", "")
    try:
        date = datetime.fromisoformat(generated).strftime("%Y-%m-%d")
    except ValueError:
        date = generated or "unknown"
    config = sim.get("config", {})
    seeds = ", ".join(f"{r['n']:,}: {len(r['runs'])}" for r in results)
    loads = [run["load_before"] for r in results for run in r["runs"]]
    loads += [run["load_after"] for r in results for run in r["runs"]]
    out: list[str] = []
    w = out.append

    def idle(result: dict[str, Any], key: str) -> float | None:
        return _med(result, "idle", key)

    w("# How the cost of a member grows with the cluster\n")
    w(
        "What one member of a gossip cluster pays as the cluster grows from "
        f"{n0:,} to {n1:,} members: how fast news spreads, how fast a dead member is "
        "noticed, how many bytes and how much CPU a member spends while nothing happens. "
        "Measured on the deterministic simulator (`controlplane.testing.sim`), which runs the "
        "real gossip core (`controlplane.gossip`) for every member in one process, with "
        "memberlist's `lan` profile and no packet loss.\n"
    )
    w(
        "*Flat per member* means a member's own cost does not depend on N: the cluster as a "
        "whole then costs N times a constant, as if the machines were independent. SWIM was "
        "designed so that its probing and gossip are flat; memberlist adds anti-entropy "
        "(push-pull of the full member list) whose per-member cost is not flat, and scales "
        "its timers with N to keep it in check.\n"
    )

    w("## At a glance\n")
    w(f"| cost | grows like | N = {n0:,} | N = {n1:,} | ratio |")
    w("|---|---|---:|---:|---:|")
    rows = [
        (
            "update reaches 99.99 % (core as is)",
            "log N",
            _med(first, "convergence", "t9999_s"),
            _med(last, "convergence", "t9999_s"),
            " s",
            2,
        ),
        (
            "update reaches 99.99 % (200 ms gossip ticks)",
            "log N",
            _med(first, "convergence_ticker", "t9999_s"),
            _med(last, "convergence_ticker", "t9999_s"),
            " s",
            2,
        ),
        (
            "dead member: first declaration",
            "log N (suspicion timeout)",
            _med(first, "detection", "first_dead_s"),
            _med(last, "detection", "first_dead_s"),
            " s",
            1,
        ),
        (
            "dead member: everyone knows",
            "log N",
            _med(first, "detection", "all_dead_s"),
            _med(last, "detection", "all_dead_s"),
            " s",
            1,
        ),
        (
            "UDP bytes per member per second",
            "flat",
            idle(first, "udp_bytes_per_member_s"),
            idle(last, "udp_bytes_per_member_s"),
            " B/s",
            0,
        ),
        (
            "push-pull bytes per member per second",
            "N / log N",
            idle(first, "push_pull_bytes_per_member_s"),
            idle(last, "push_pull_bytes_per_member_s"),
            " B/s",
            0,
        ),
        (
            "CPU of the probe + gossip path",
            "flat work (see below)",
            idle(first, "probe_gossip_us_per_member_s"),
            idle(last, "probe_gossip_us_per_member_s"),
            " µs/s",
            1,
        ),
        (
            "CPU of push-pull (steady state)",
            "N / log N",
            idle(first, "push_pull_steady_us_per_member_s"),
            idle(last, "push_pull_steady_us_per_member_s"),
            " µs/s",
            1,
        ),
        (
            "CPU of reconnect/reap scans",
            "N",
            idle(first, "scans_us_per_member_s"),
            idle(last, "scans_us_per_member_s"),
            " µs/s",
            1,
        ),
    ]
    for label, growth, a, b, unit, digits in rows:
        w(
            f"| {label} | {growth} | {_fmt(a, digits, unit)} | {_fmt(b, digits, unit)} | "
            f"{_ratio(b, a)} |"
        )
    w(
        f"\nN grows {n1 / n0:,.0f}x; log10 N grows "
        f"{math.log10(n1) / math.log10(n0):.1f}x. CPU is microseconds of CPU per member per "
        "second of cluster time.\n"
    )

    w("## How it was measured\n")
    w(f"- Date: {date}. Command: `{sim.get('command', 'python bench/fleet_sim.py')}`.")
    w(
        f"- Machine: {machine.get('cpus', '?')} CPU cores ({machine.get('cpu_model', 'unknown')}), "
        f"{machine.get('memory_gb', '?')} GB of memory, Python {machine.get('python', '?')}; "
        "the bench runs on one core at a time and the machine was shared with other work "
        f"(load average {min(loads):.1f} to {max(loads):.1f} during the runs)."
        if loads
        else f"- Machine: {machine.get('cpus', '?')} CPU cores."
    )
    w(
        f"- Profile `lan` (memberlist DefaultLANConfig): probe every "
        f"{config.get('probe_interval', 1.0):g} s, gossip to {config.get('gossip_nodes', 3)} "
        f"members every {config.get('gossip_interval', 0.2):g} s, push-pull every "
        f"{config.get('push_pull_interval', 30.0):g} s before scaling. Members carry "
        f"{sim.get('meta_bytes', 0)} bytes of tags, as an agent does. No loss; one-way "
        "latency 1 to 5 ms."
    )
    w(
        f"- Seeds per N: {seeds}. Tables give the median, with the range over seeds in "
        "brackets where there are several."
    )
    w(
        "- Members start with a full view and with their timers at random phases of their "
        "intervals, the state of a cluster that has run for a while; nothing is measured for "
        f"the first {sim.get('warmup_s', 3):g} s. Idle traffic and CPU are measured over a "
        "window of 10 to 20 s of cluster time."
    )
    w(
        "- The simulator holds every member's view, so it needs N² member records: "
        f"{peak_gb(results):.1f} GB at {n1:,} members. A real agent holds N.\n"
    )
    w(
        f"Regenerate (this run took {sim.get('total_wall_s', 0) / 60:.0f} minutes and at most "
        f"{peak_gb(results):.1f} GB of memory):\n"
    )
    w("<!-- docs-test: skip installs packages and runs for ten minutes -->")
    w("```sh")
    w("pip install -r requirements-bench.txt")
    w("python bench/fleet_sim.py && python bench/scale_report.py")
    w("```\n")
    w("`python bench/fleet_sim.py --quick` runs N = 100, 300 and 1,000 in about a minute.\n")

    # -- formulas
    w("## memberlist's scaling rules\n")
    w(
        "The core computes these as memberlist does (`controlplane/gossip/formulas.py`, "
        "after memberlist's `util.go` and `suspicion.go`):\n"
    )
    w(
        "- **Retransmit limit**: a broadcast rides on RetransmitMult x ceil(log10(N + 1)) "
        "packets (4 x ...). Infection-style spread needs about log N rounds to reach everyone, "
        "so the limit grows with log N."
    )
    w(
        "- **Suspicion timeout**: a suspect is declared dead after SuspicionMult x "
        "max(1, log10 N) x ProbeInterval (4 x log10 N s), so the news of the suspicion has "
        "time to reach the suspect, which refutes it. Lifeguard starts the timer at "
        "SuspicionMaxTimeoutMult (6) times that and shrinks it toward the minimum as "
        f"independent confirmations arrive ({first['formulas']['confirmations']} expected)."
    )
    w(
        "- **pushPullScale**: above 32 members the push-pull interval is multiplied by "
        "ceil(log2 N - log2 32) + 1, so a full state exchange, whose size grows with N, "
        "happens less often.\n"
    )
    w("| N | retransmits | suspicion min | suspicion max | push-pull every |")
    w("|---:|---:|---:|---:|---:|")
    for r in results:
        f = r["formulas"]
        w(
            f"| {r['n']:,} | {f['retransmit_limit']} | {f['suspicion_min_s']:.1f} s | "
            f"{f['suspicion_max_s']:.1f} s | {f['push_pull_interval_s']:.0f} s |"
        )
    w("")

    # -- convergence
    w("## Convergence: one update reaching every member\n")
    w(f"![convergence time vs N](scale/{plots['convergence']})\n")
    w(
        "One member publishes new metadata; the time until 99.99 % and 100 % of the other "
        "members have it. Each member that has the update passes it to 3 random members "
        "per gossip round (and on its probes), so the informed part of the cluster roughly "
        "quadruples per round: reaching N members takes about log4 N rounds. A hundred "
        "times more members add only a few rounds. Up to 10,000 members, 99.99 % of the "
        "others rounds up to all of them, so the two columns agree: no member was left "
        "waiting for push-pull.\n"
    )
    w(
        "Two variants are measured. *Core as is*: an idle member's gossip deadline is not "
        "advanced while it has nothing to send, so a member that receives a broadcast gossips "
        "it at once and every hop costs only network latency. *200 ms ticks*: the simulator "
        "holds each member's gossip until its next GossipInterval tick, as memberlist's ticker "
        "does; each hop then waits half a tick on average. Serf's convergence model assumes "
        "synchronous rounds and is an upper bound for both.\n"
    )
    w(
        "| N | 99.99 % (core) | 100 % (core) | 99.99 % (ticks) | 100 % (ticks) "
        "| Serf model 99.99 % |"
    )
    w("|---:|---:|---:|---:|---:|---:|")
    for r in results:
        w(
            f"| {r['n']:,} | {_range(r, 'convergence', 't9999_s')} | "
            f"{_range(r, 'convergence', 't100_s')} | "
            f"{_range(r, 'convergence_ticker', 't9999_s')} | "
            f"{_range(r, 'convergence_ticker', 't100_s')} | "
            f"{r['formulas']['model_t9999_s']:.2f} s |"
        )
    w("")

    # -- detection
    w("## Detection: a member is killed\n")
    w(f"![detection time vs N](scale/{plots['detection']})\n")
    w(
        "A member stops without a word. Every member probes one member per second in a "
        "shuffled round-robin, so some member probes the dead one within about a second; the "
        "probe and the indirect probes through 3 other members fail and that member raises a "
        "suspicion. The suspicion is gossiped; other members that probe the dead member "
        "confirm it, and with each confirmation the timeout shrinks from the maximum toward "
        "4 x log10 N seconds. When the first timer expires, that member declares the member "
        "dead and gossips it, and within a fraction of a second everyone knows (the core as "
        "is, see above, gossips news at once). The time is "
        "the suspicion timeout plus about two seconds, and it grows with log10 N.\n"
    )
    w("| N | first suspicion | first declares dead | all see dead | suspicion min to max |")
    w("|---:|---:|---:|---:|---:|")
    for r in results:
        f = r["formulas"]
        w(
            f"| {r['n']:,} | {_range(r, 'detection', 'first_suspect_s', 1)} | "
            f"{_range(r, 'detection', 'first_dead_s', 1)} | "
            f"{_range(r, 'detection', 'all_dead_s', 1)} | "
            f"{f['suspicion_min_s']:.1f} to {f['suspicion_max_s']:.1f} s |"
        )
    w("")

    # -- bytes
    w("## Bytes per member per second at idle\n")
    w(f"![bytes per member per second vs N](scale/{plots['bytes']})\n")
    udp0, udp1 = idle(first, "udp_bytes_per_member_s"), idle(last, "udp_bytes_per_member_s")
    w(
        "**UDP is flat.** At idle a member sends one ping per second and answers the pings it "
        f"receives (on average one): about {_fmt(idle(last, 'udp_packets_per_member_s'), 1)} "
        f"datagrams and {_fmt(udp1, 0)} bytes per second whatever N is "
        f"({_fmt(udp0, 0)} B/s at {n0:,}). Gossip rounds send nothing when there is no news.\n"
    )
    state1 = idle(last, "state_bytes")
    w(
        "**Push-pull is not.** Each member exchanges its full member list with one random "
        "member every push-pull interval; a state lists every member "
        f"({_fmt(state1 / 1024 if state1 else None, 0)} KiB at {n1:,}), and each exchange "
        "moves two of them. The state grows like N, while pushPullScale adds one more base "
        "interval (30 s) only each time N doubles beyond 32, so the interval grows like "
        "log N and the bytes per member per second like N / log N. This is what a member "
        "pays for anti-entropy at scale, as in memberlist; the gRPC and HTTP/2 framing "
        "around each state is not counted.\n"
    )
    total1 = idle(last, "bytes_per_member_s")
    if total1:
        w(
            f"Across the whole cluster: {n1:,} members x {_fmt(total1, 0)} B/s = "
            f"{n1 * total1 / 1e6:,.0f} MB/s on the network at idle, almost all of it "
            "push-pull. A longer push-pull interval divides it (the `wan` profile's 60 s "
            "halves it); the price is slower repair of what gossip missed.\n"
        )
    w(
        "| N | UDP datagrams/s | UDP B/s | push-pull B/s | (expected) | total B/s | state size "
        "| exchanges measured |"
    )
    w("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        state = idle(r, "state_bytes")
        w(
            f"| {r['n']:,} | {_fmt(idle(r, 'udp_packets_per_member_s'), 2)} | "
            f"{_fmt(idle(r, 'udp_bytes_per_member_s'), 0)} | "
            f"{_fmt(idle(r, 'push_pull_bytes_per_member_s'), 0)} | "
            f"{_fmt(idle(r, 'push_pull_bytes_per_member_s_expected'), 0)} | "
            f"{_fmt(idle(r, 'bytes_per_member_s'), 0)} | "
            f"{_fmt(state / 1024 if state else None, 1)} KiB | "
            f"{_fmt(idle(r, 'push_pull_exchanges'), 0)} |"
        )
    w(
        "\n*Expected* is 2 x state size / push-pull interval. The measured rate counts the "
        "exchanges that happened to fall in the window, so it scatters around it.\n"
    )

    # -- CPU
    w("## CPU per member at idle\n")
    w(f"![CPU per member vs N](scale/{plots['cpu']})\n")
    w(
        "Microseconds of CPU per member per second of cluster time: the simulation's wall "
        "time divided by N and by the virtual seconds it covered, and the core's share of "
        "it timed at its entry points. One real member does the same work in its own "
        "process, so these numbers are what an agent's gossip core costs, without its "
        "sockets and event loop.\n"
    )
    pg0 = idle(first, "probe_gossip_us_per_member_s")
    pg1 = idle(last, "probe_gossip_us_per_member_s")
    w(
        "- **Probe and gossip: flat work.** A probe picks the next member of a shuffled list "
        "and a gossip round picks 3 random members by index: the same work per member at "
        f"every N (the {_fmt(idle(last, 'udp_packets_per_member_s'), 1)} datagrams per member "
        "per second above do not change). The reshuffle after each round costs O(N) once "
        "every N probes, again constant per probe. The time for that work still rises, "
        f"from {_fmt(pg0, 0)} µs/s at {n0:,} to {_fmt(pg1, 0)} µs/s at {n1:,} "
        f"({_ratio(pg1, pg0)} for {n1 / n0:,.0f}x the members), and so does the simulator's: "
        "most likely memory locality, as the simulation's heap grows to "
        f"{peak_gb(results):.0f} GB of N² records and lookups miss the CPU caches; an agent "
        "holds one view of N records."
    )
    w(
        "- **Push-pull: N / log N**, like its bytes: a member encodes, and merges, N records "
        "once per interval. *Steady state* times one exchange between members that have "
        "exchanged before (each record's encoding is cached while it is unchanged) and "
        "divides by the interval; the measured window mostly holds first exchanges, which "
        "encode every record, and costs more."
    )
    w(
        "- **Reconnect and reap scans: N.** Every 30 s each member walks its whole node map "
        "twice, looking for failed members to reconnect to and for dead ones to reap. "
        "Serf keeps failed and left members in their own lists, so its scans cost the number "
        "of failed members, not N."
    )
    w(
        "- **Simulator**: the event heap and the simulated network; it exists only in the "
        "simulation.\n"
    )
    w(
        "| N | probe + gossip | scans | push-pull (window) | push-pull (steady) | "
        "warm exchange | simulator | whole simulation |"
    )
    w("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        w(
            f"| {r['n']:,} | {_fmt(idle(r, 'probe_gossip_us_per_member_s'), 1)} | "
            f"{_fmt(idle(r, 'scans_us_per_member_s'), 1)} | "
            f"{_fmt(idle(r, 'push_pull_us_per_member_s'), 1)} | "
            f"{_fmt(idle(r, 'push_pull_steady_us_per_member_s'), 1)} | "
            f"{_fmt(idle(r, 'push_pull_exchange_warm_ms'), 1)} ms | "
            f"{_fmt(idle(r, 'simulator_us_per_member_s'), 1)} | "
            f"{_fmt(idle(r, 'wall_us_per_member_s'), 1)} |"
        )
    w("\nAll in µs per member per second except the warm exchange (both sides of one exchange).\n")

    # -- crowd
    w("## One real agent in a crowd\n")
    if "crowd" in plots:
        crowd_data = crowd
        n_key, crowd = crowd_rows(crowd_data)
        sizes = [row[n_key] for row in crowd]
        w(f"![agent CPU and memory vs N](scale/{plots['crowd']})\n")
        w(
            "Measured by `bench/fleet.py` (`docs/scale/crowd.json`): one agent process, with "
            "its sockets, gRPC server and event loop, joined to a crowd of N members speaking "
            "the wire protocol on loopback addresses. Every numeric result, per crowd size:\n"
        )
        w("| result | " + " | ".join(f"N = {size:,.0f}" for size in sizes) + " |")
        w("|---|" + "---:|" * len(sizes))
        for field in crowd_table_fields(n_key, crowd):
            cells = [_num(row.get(field)) for row in crowd]
            w(f"| `{field}` | " + " | ".join(cells) + " |")
        w("")
        for size, error in crowd_errors(crowd_data, n_key):
            w(f"- N = {size:,.0f} did not complete: `{error}`")
        w("")
    else:
        w(
            "Not measured in this run: `bench/fleet.py` writes `docs/scale/crowd.json` (one "
            "real agent process in a crowd of N members); run it before `bench/scale_report.py` "
            "to add the agent's CPU and memory here.\n"
        )

    # -- runs
    w("## Runs\n")
    w("| N | seed | start | wall time | cluster time | events | peak memory |")
    w("|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        for run in r["runs"]:
            w(
                f"| {run['n']:,} | {run['seed']} | {run['start_s']:.1f} s | "
                f"{run['wall_s']:.1f} s | {run['virtual_s']:.0f} s | {run['events']:,} | "
                f"{run['peak_rss_mb']:,.0f} MB |"
            )
    w(
        f"\nTotal wall time {sim.get('total_wall_s', 0):.0f} s. *Start* fills every member's "
        "view; *cluster time* is the simulated seconds.\n"
    )
    return "\n".join(out)


def peak_gb(results: Sequence[dict[str, Any]]) -> float:
    return max(float(run["peak_rss_mb"]) for r in results for run in r["runs"]) / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sim", type=Path, default=SCALE_DIR / "sim.json")
    parser.add_argument("--crowd", type=Path, default=SCALE_DIR / "crowd.json")
    parser.add_argument("--out", type=Path, default=PAGE)
    args = parser.parse_args(argv)
    sim = load(args.sim)
    if sim is None:
        raise SystemExit(f"{args.sim} not found: run python bench/fleet_sim.py first")
    crowd = load(args.crowd)
    SCALE_DIR.mkdir(parents=True, exist_ok=True)
    results = sorted(sim["results"], key=lambda r: r["n"])
    plots = {
        "convergence": plot_convergence(results),
        "detection": plot_detection(results),
        "bytes": plot_bytes(results),
        "cpu": plot_cpu(results),
    }
    if crowd is not None:
        n_key, rows = crowd_rows(crowd)
        panels = crowd_panels(n_key, rows)
        if rows and panels:
            plots["crowd"] = plot_crowd(n_key, rows, panels)
        else:
            print(f"{args.crowd}: no per-N numeric results recognised; left out")
    if "crowd" not in plots:
        # A plot from an earlier crowd file would no longer match the page.
        (SCALE_DIR / "crowd.png").unlink(missing_ok=True)
    args.out.write_text(page(sim, crowd, plots))
    print(f"Wrote {args.out} and {', '.join(sorted(plots.values()))} in {SCALE_DIR}")


if __name__ == "__main__":
    main()
