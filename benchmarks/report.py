"""What ``run.py`` prints and saves: the summary over rounds, the table with its targets, the chart."""

from __future__ import annotations

import argparse
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common import percentile, save_json
from rediscost import RedisCost, breakdown, format_breakdown

if TYPE_CHECKING:
    from run import Run


@dataclass(frozen=True)
class Target:
    """A target of the speed issue: ``subject`` compared with ``bound`` by ``op``.

    ``subject`` is ``ratio`` (aury/raw), ``aury`` (aury's own figure), ``bulk_over_single`` (aury's
    bulk rate over its single-send rate) or ``aury_minus_raw``.
    """

    subject: str
    op: str
    bound: float
    text: str

    def met(self, value: float) -> bool:
        return {">=": value >= self.bound, "<": value < self.bound, "<=": value <= self.bound}[self.op]


@dataclass(frozen=True)
class Row:
    """A line of the table: a metric, its label, how it is printed and its target."""

    key: str
    label: str
    digits: str
    #: Percentiles over the samples of all rounds, not a median of per-round figures.
    pooled: bool = False
    target: Target | None = None


ROWS = [
    Row("enqueue_rate", "enqueue (msg/s)", ",.0f", target=Target("ratio", ">=", 0.95, "aury/raw >= 0.95x")),
    Row("bulk_rate", "bulk enqueue (msg/s)", ",.0f",
        target=Target("bulk_over_single", ">=", 4.0, "aury bulk/single >= 4x")),
    Row("drain_rate", "drain, ledger on (msg/s)", ",.0f",
        target=Target("ratio", ">=", 1.2, "aury/raw >= 1.2x")),
    Row("latency_p50_ms", "latency, {interval:g} ms gaps: p50 (ms)", ".1f", pooled=True),
    Row("latency_p95_ms", "latency, {interval:g} ms gaps: p95 (ms)", ".1f", pooled=True,
        target=Target("aury", "<", 3.0, "aury < 3 ms")),
    Row("latency_p99_ms", "latency, {interval:g} ms gaps: p99 (ms)", ".1f", pooled=True,
        target=Target("aury", "<", 5.0, "aury < 5 ms")),
    Row("idle_p50_ms", "latency after {gap:g} s idle: p50 (ms)", ".1f", pooled=True),
    Row("idle_p95_ms", "latency after {gap:g} s idle: p95 (ms)", ".1f", pooled=True),
    Row("idle_p99_ms", "latency after {gap:g} s idle: p99 (ms)", ".1f", pooled=True,
        target=Target("aury", "<", 5.0, "aury < 5 ms")),
    Row("idle_commands_per_s", "idle Redis commands/s per worker process", ".2f",
        target=Target("aury", "<=", 2.0, "aury <= 2/s")),
    Row("peak_rss_mib", "worker peak RSS (MiB)", ".1f",
        target=Target("aury_minus_raw", "<=", 10.0, "aury - raw <= 10 MiB")),
    Row("enqueue_cpu_us", "producer CPU per send (µs)", ",.0f"),
    Row("drain_cpu_us", "worker CPU per task, draining (µs)", ",.0f"),
    Row("worker_start_s", "worker start -> first task (s)", ".2f"),
    Row("enqueue_redis_cpu_us", "Redis CPU per send (µs)", ".1f"),
    Row("enqueue_redis_commands", "Redis commands per send", ".2f"),
    Row("drain_redis_cpu_us", "Redis CPU per task, draining (µs)", ".1f"),
    Row("drain_redis_commands", "Redis commands per task, draining", ".2f"),
    Row("redis_cpu_us", "Redis CPU per task, ledger on (drain+enqueue) (µs)", ".1f",
        target=Target("ratio", "<=", 1.3, "aury/raw <= 1.3x")),
]  # fmt: skip

#: Which samples a pooled row's percentile is taken over, and the percentile.
_POOLED = {
    "latency_p50_ms": ("latency_samples", 50), "latency_p95_ms": ("latency_samples", 95),
    "latency_p99_ms": ("latency_samples", 99), "idle_p50_ms": ("idle_samples", 50),
    "idle_p95_ms": ("idle_samples", 95), "idle_p99_ms": ("idle_samples", 99),
}  # fmt: skip


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def _median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def summarize(rounds: list[dict[str, Run]], names: list[str]) -> dict[str, dict[str, Any]]:
    """Per metric: each contender's figure, its ratio to raw Dramatiq, and the target's verdict.

    A figure is the median over rounds (a pooled percentile for latencies); a ratio is the median
    of the per-round ratios (for latencies, the ratio of the pooled figures).
    """
    summary: dict[str, dict[str, Any]] = {}
    for row in ROWS:
        per_round = {n: [r[n].metrics()[row.key] for r in rounds if n in r] for n in names}
        if row.pooled:
            attr, pct = _POOLED[row.key]
            values = {
                n: percentile([v for r in rounds if n in r for v in getattr(r[n], attr)], pct) for n in names
            }
        else:
            values = {n: _median(per_round[n]) for n in names}
        paired = {n: [(r[n].metrics()[row.key], r["raw"].metrics()[row.key]) for r in rounds if n in r]
                  for n in names}  # fmt: skip
        round_ratios = {n: [_ratio(a, b) for a, b in paired[n]] for n in names}
        if row.pooled:
            ratios = {n: _ratio(values[n], values["raw"]) for n in names}
        else:
            ratios = {n: _median(round_ratios[n]) for n in names}
        entry: dict[str, Any] = {
            "values": values,
            "ratios_to_raw": {n: ratios[n] for n in names if n != "raw"},
            "aury_round_ratios": round_ratios["aury"],
        }
        if row.target is not None:
            judged = _judged(row, rounds, values, ratios)
            entry.update(target=row.target.text, judged=judged, met=row.target.met(judged))
        summary[row.key] = entry
    return summary


def _judged(
    row: Row, rounds: list[dict[str, Run]], values: dict[str, float], ratios: dict[str, float]
) -> float:
    """The figure a row's target applies to."""
    assert row.target is not None
    if row.target.subject == "ratio":
        return ratios["aury"]
    if row.target.subject == "aury":
        return values["aury"]
    if row.target.subject == "bulk_over_single":
        return _median(
            [_ratio(r["aury"].metrics()["bulk_rate"], r["aury"].metrics()["enqueue_rate"]) for r in rounds]
        )
    return _median([r["aury"].metrics()[row.key] - r["raw"].metrics()[row.key] for r in rounds])


def format_table(
    summary: dict[str, dict[str, Any]], names: list[str], labels: dict[str, str], args: argparse.Namespace,
    cut: set[str],
) -> str:  # fmt: skip
    """The aligned table: a column per contender (peers with their ratio to raw), aury/raw, target."""
    headers = ["metric", *(labels[n] for n in names), "aury/raw", "per round", "target", "result"]
    rows = []
    for row in ROWS:
        entry = summary[row.key]
        cells = [row.label.format(interval=args.latency_interval, gap=args.idle_gap)]
        for n in names:
            value = entry["values"][n]
            cell = "—" if math.isnan(value) else format(value, row.digits)
            ratio = entry["ratios_to_raw"].get(n, math.nan)
            if n not in ("raw", "aury") and not math.isnan(ratio) and not math.isinf(ratio):
                cell += f" ({ratio:.2f}x)"
            if row.key == "drain_rate" and n in cut:
                cell += "*"
            cells.append(cell)
        aury_ratio = entry["ratios_to_raw"]["aury"]
        cells.append("—" if math.isnan(aury_ratio) else f"{aury_ratio:.2f}x")
        per_round = [f"{r:.2f}" for r in entry["aury_round_ratios"] if not math.isnan(r)]
        cells.append("" if row.pooled else " ".join(per_round))
        if "target" in entry:
            verdict = "met" if entry["met"] else "MISSED"
            subject = row.target.subject if row.target else ""
            if subject == "bulk_over_single":
                verdict = f"{entry['judged']:.2f}x {verdict}"
            elif subject == "aury_minus_raw":
                verdict = f"{entry['judged']:+.1f} MiB {verdict}"
            cells += [entry["target"], verdict]
        else:
            cells += ["", ""]
        rows.append(cells)
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    numeric = set(range(1, len(names) + 2))

    def line(cells: list[str]) -> str:
        aligned = [
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(aligned).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(row) for row in rows)])


def save_chart(path: Path, rounds: list[dict[str, Run]], names: list[str], labels: dict[str, str],
               args: argparse.Namespace) -> None:  # fmt: skip
    """Draw each contender's latency distribution (pooled over rounds) as a CDF, to a PNG at ``path``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("chart: skipped, matplotlib is not installed (pip install -e '.[bench]')")
        return
    panels = [("latency_samples", f"one task every {args.latency_interval:g} ms"),
              ("idle_samples", f"one task after {args.idle_gap:g} s idle")]  # fmt: skip
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    for ax, (attr, title) in zip(axes, panels, strict=True):
        for n in names:
            samples = sorted(max(v, 0.01) for r in rounds if n in r for v in getattr(r[n], attr))
            if not samples:
                continue
            fractions = [(i + 1) / len(samples) for i in range(len(samples))]
            p99 = percentile(samples, 99)
            label = f"{labels[n]}: p99 {p99:,.1f} ms, n={len(samples)}"
            ax.step(samples, fractions, where="post", label=label)
        for bound in (3.0, 5.0):
            ax.axvline(bound, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("submit → start latency (ms, log scale)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize="small")
    axes[0].set_ylabel("fraction of tasks started")
    fig.suptitle("Submit-to-start latency, no-op task (dotted: the 3 and 5 ms targets)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"chart: {path}")


def reproduce_command(args: argparse.Namespace) -> str:
    options = ["rounds", "tasks", "latency_tasks", "latency_interval", "idle_samples", "idle_gap",
               "idle_window", "enqueue_chunk", "bulk_chunk", "drain_budget", "threads",
               "processes"]  # fmt: skip
    return (
        "python benchmarks/run.py "
        + " ".join(f"--{name.replace('_', '-')} {getattr(args, name):g}" for name in options)
        + f" --peers {args.peers}"
    )


def report(
    args: argparse.Namespace,
    info: dict[str, Any],
    rounds: list[dict[str, Run]],
    labels: dict[str, str],
    notes: list[str],
    failures: dict[str, str],
) -> None:
    """Print the table and the notes under it; save the chart and, with ``--json``, the results."""
    names = [n for n in labels if any(n in r for r in rounds)]
    summary = summarize(rounds, names)
    cut = {n for r in rounds for n, run in r.items() if not run.drain.complete}
    print()
    print(
        f"{args.tasks:,} no-op tasks per contender; {args.latency_tasks} latency tasks one every "
        f"{args.latency_interval:g} ms and {args.idle_samples} after {args.idle_gap:g} s idle per round; "
        f"worker {args.processes} process(es) x {args.threads} thread(s); {len(rounds)} round(s)"
    )
    print(format_table(summary, names, labels, args, cut))
    print()
    if cut:
        print(f"* drain stopped {args.drain_budget:g} s after the first acknowledgement (the rate is over "
              "what was done by then) in some rounds")  # fmt: skip
    print("peers: (ratio to raw Dramatiq); rates and CPU are medians over rounds, latency percentiles "
          "over all rounds' samples; bulk enqueue: aury Task.send_many, RQ Queue.enqueue_many")  # fmt: skip
    for note in notes:
        print(f"note: {note}")
    for name, failure in failures.items():
        print(f"FAILED: {name} {failure.splitlines()[0]}")
    peers = ", ".join(
        f"{k} {v}" for k, v in info.items() if k in ("celery", "kombu", "rq", "taskiq", "taskiq-redis")
    )
    print(
        f"machine: {info['cpus']} CPU(s) {info['cpu']}, load at start {info['load_average']}; "
        f"{info['platform']}; Python {info['python']}; dramatiq {info['dramatiq']}; "
        f"aury-tasks {info['aury_tasks']}; redis-py {info['redis_py']}; {info['server']}"
        + (f"; {peers}" if peers else "")
        + f"; harness alone: {info['harness_idle_commands_per_s']} Redis commands/s"
        + _harness_cost(info)
    )
    print(f"reproduce: {reproduce_command(args)}")
    drain_cost, drain_tasks = pooled_drain_cost(rounds, "aury")
    if drain_tasks:
        print()
        print(format_breakdown(drain_cost, drain_tasks, "aury-tasks, draining"))
    if not args.no_chart:
        save_chart(args.chart, rounds, names, labels, args)
    if args.json:
        runs = [{name: {**run.metrics(), "drain_complete": run.drain.complete,
                        "latency_samples_ms": run.latency_samples, "idle_samples_ms": run.idle_samples}
                 for name, run in r.items()} for r in rounds]  # fmt: skip
        redis_breakdown = breakdown(drain_cost, drain_tasks) if drain_tasks else {}
        save_json(args, machine=info, summary=summary, rounds=runs, notes=notes, failures=failures,
                  aury_drain_redis_commands=redis_breakdown)  # fmt: skip


def _harness_cost(info: dict[str, Any]) -> str:
    harness = info.get("harness_redis_cpu_us")
    if not harness:
        return ""
    return (
        f", Redis CPU {harness['per_info_sample']} µs per INFO sample and {harness['per_polling_command']} "
        "µs per polling command (taken out of the Redis rows)"
    )


def pooled_drain_cost(rounds: list[dict[str, Run]], name: str) -> tuple[RedisCost, int]:
    """Contender ``name``'s Redis cost of draining, summed over the rounds; and the tasks it is for."""
    total, tasks = RedisCost(), 0
    for r in rounds:
        if name in r and r[name].drain_tasks:
            total.merge(r[name].drain_redis)
            tasks += r[name].drain_tasks
    return total, tasks
