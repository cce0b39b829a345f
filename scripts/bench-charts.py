"""Charts of a benchmark run: reads the harness's raw data (outcomes.json, cost.json) and writes SVGs.

    python scripts/bench-charts.py [--results Benchmarks/JobSyncBenchmarks/results] [--out docs/bench]

outcomes-<scenario>.svg  time to outcome per client as a CDF over all watched jobs (x: log scale). A missed job
                         never reaches the line, so a client that missed jobs ends below 100 %.
cost.svg                 bytes per minute (REST and WebSocket) and requests per minute per client.

Each chart's footer names the run (date, commit, mode) from the data's provenance.
"""

import argparse
import json
import os
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, PercentFormatter  # noqa: E402

plt.rcParams.update({"font.size": 9, "svg.fonttype": "none", "axes.spines.top": False, "axes.spines.right": False})


def footer(fig, provenance):
    dirty = " + uncommitted changes" if provenance.get("uncommittedChanges") else ""
    text = (f"{provenance.get('date', '?')} · commit {provenance.get('commit', '?')}{dirty} · "
            f"{provenance.get('mode', '?')} run · {provenance.get('cores', '?')} cores · {provenance.get('command', '')}")
    fig.text(0.01, 0.01, text, fontsize=7, color="#666666")


PNG = False


def save(fig, stem):
    """Writes stem.svg (and stem.png with --png, to look at a chart where SVG cannot be shown)."""
    fig.savefig(stem + ".svg")
    if PNG:
        fig.savefig(stem + ".png", dpi=110)
    plt.close(fig)
    return stem + ".svg"


def milliseconds(value, _position=None):
    if value >= 1000:
        return f"{value / 1000:g} s"
    return f"{value:g} ms"


# Latencies below this are drawn at it (a notification can even come before the harness reads its clock after the
# commit: measured as 0).
FLOOR_MS = 0.1

# One colour family per kind of client, so that JobSync, the Python client and the pollers read apart.
FAMILIES = {
    "JobSync": ["#08519c", "#4292c6", "#9ecae1"],
    "Python": ["#a50f15", "#ef3b2c", "#fc9272", "#fdae6b"],
    "other": ["#238b45", "#74c476", "#636363", "#bdbdbd"],
}


def colour(name, used):
    family = "JobSync" if name.startswith("JobSync") else "Python" if name.startswith("Python") else "other"
    index = used.get(family, 0)
    used[family] = index + 1
    palette = FAMILIES[family]
    return palette[index % len(palette)], (2.0 if family == "JobSync" else 1.3)


def outcome_chart(scenario, data, out_dir):
    fig, ax = plt.subplots(figsize=(10, 6.4))
    highest = FLOOR_MS
    used = {}
    for client in scenario["clients"]:
        latencies = [max(value, FLOOR_MS) for value in client["latenciesMs"]]
        jobs = client["jobs"]
        color, width = colour(client["name"], used)
        if not latencies:
            ax.plot([], [], color=color, label=f"{client['name']} (none of {jobs} reported)")
            continue
        highest = max(highest, latencies[-1])
        # Step CDF over all jobs: reaches len(latencies) / jobs; missed jobs keep it below 100 %.
        fractions = [(index + 1) / jobs for index in range(len(latencies))]
        missed = client["missed"]
        label = client["name"] + (f" — {missed} of {jobs} missed" if missed else "")
        ax.step([latencies[0]] + latencies, [0] + fractions, where="post", label=label, color=color,
                linewidth=width)
        if missed:
            # The missed jobs never arrive: the line stays below 100 % to the right edge.
            ax.plot([latencies[-1], 1e12], [fractions[-1]] * 2, color=color, linewidth=1.0, linestyle="--")
    ax.set_xscale("log")
    ax.set_xlim(FLOOR_MS / 1.2, highest * 1.5)
    ax.set_ylim(0, 1.02)
    ax.xaxis.set_major_formatter(FuncFormatter(milliseconds))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.axhline(1.0, color="#999999", linewidth=0.6, linestyle=":")
    ax.grid(True, which="major", linewidth=0.4, alpha=0.5)
    ax.set_xlabel(f"time from terminal commit to the client's notification (log scale; below {FLOOR_MS:g} ms "
                  f"drawn at {FLOOR_MS:g} ms)")
    ax.set_ylabel("share of all watched jobs notified")
    fault = textwrap.fill(f"fault: {scenario['fault']}", 110)
    ax.set_title(f"Time to outcome: {scenario['scenario']} ({data['jobs']} jobs)\n{fault}", fontsize=10, loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(0, -0.13), ncol=2, fontsize=7.5, frameon=False,
              title="a line ending below 100 % (dashed to the right) missed jobs: they were never notified",
              title_fontsize=7.5, alignment="left")
    footer(fig, data["provenance"])
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return save(fig, os.path.join(out_dir, f"outcomes-{scenario['option']}"))


def size(value, _position=None):
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.0f} B"


def count(value):
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def cost_chart(data, out_dir):
    cost = data["cost"]
    rows = cost["rows"]
    names = [row["client"] for row in rows]
    fig, (bytes_ax, requests_ax) = plt.subplots(
        1, 2, figsize=(12, 0.75 * len(rows) + 2), sharey=True, gridspec_kw={"width_ratios": [3, 2]})
    height = 0.38
    kinds = (("REST", "restBytesPerMinute", "#4c72b0", -height / 2), ("WebSocket", "webSocketBytesPerMinute",
                                                                       "#dd8452", height / 2))
    for label, key, color, offset in kinds:
        values = [row[key] for row in rows]
        positions = [index + offset for index in range(len(rows))]
        bytes_ax.barh(positions, [max(value, 0.5) if value else 0 for value in values], height=height,
                      color=color, label=label)
        for position, value in zip(positions, values):
            bytes_ax.text(max(value, 1) * 1.15, position, size(value) if value else "0", va="center", fontsize=7.5)
    bytes_ax.set_xscale("log")
    bytes_ax.set_xlim(1, max(max(row["restBytesPerMinute"], row["webSocketBytesPerMinute"]) for row in rows) * 20)
    bytes_ax.set_xticks([1, 1024, 1024**2, 1024**3][: 2 + int(bytes_ax.get_xlim()[1] > 1024**2)
                                                      + int(bytes_ax.get_xlim()[1] > 1024**3)])
    bytes_ax.xaxis.set_major_formatter(FuncFormatter(size))
    bytes_ax.xaxis.set_minor_locator(plt.NullLocator())
    bytes_ax.set_xlabel("bytes / min on the wire, both directions (log scale)")
    bytes_ax.legend(loc="lower right", fontsize=8, frameon=False)
    requests = [row["requestsPerMinute"] for row in rows]
    requests_ax.barh(range(len(rows)), requests, height=0.5, color="#55a868")
    requests_ax.set_xscale("symlog", linthresh=1)
    requests_ax.set_xlim(0, max(requests + [1]) * 20)
    requests_ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _position: count(value)))
    requests_ax.set_xlabel("REST requests / min (log scale above 1)")
    for position, value in enumerate(requests):
        requests_ax.text(max(value, 0) * 1.15 + 0.1, position, count(value), va="center", fontsize=7.5)
    bytes_ax.set_yticks(list(range(len(rows))), names)
    bytes_ax.invert_yaxis()
    for ax in (bytes_ax, requests_ax):
        ax.grid(True, axis="x", linewidth=0.4, alpha=0.5)
    fig.suptitle(f"Cost of watching {cost['watched']:,} jobs, 1 % changing per minute "
                 f"({cost['windowSeconds']:g} s window after a {cost['warmUpSeconds']:g} s warm-up; every client "
                 "against its own SupabaseLocal stack, same jobs and changes)", fontsize=10, x=0.01, ha="left")
    footer(fig, data["provenance"])
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return save(fig, os.path.join(out_dir, "cost"))


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", default=os.path.join(root, "Benchmarks/JobSyncBenchmarks/results"))
    parser.add_argument("--out", default=os.path.join(root, "docs/bench"))
    parser.add_argument("--png", action="store_true", help="also write PNG copies (to look at the charts)")
    args = parser.parse_args()
    global PNG
    PNG = args.png
    os.makedirs(args.out, exist_ok=True)
    written = []
    outcomes = os.path.join(args.results, "outcomes.json")
    if os.path.exists(outcomes):
        with open(outcomes) as handle:
            data = json.load(handle)
        for scenario in data["scenarios"]:
            written.append(outcome_chart(scenario, data, args.out))
    cost = os.path.join(args.results, "cost.json")
    if os.path.exists(cost):
        with open(cost) as handle:
            written.append(cost_chart(json.load(handle), args.out))
    for path in written:
        print(f"chart: {os.path.relpath(path, root)}")
    if not written:
        print(f"no raw data in {args.results}: no charts")


if __name__ == "__main__":
    main()
