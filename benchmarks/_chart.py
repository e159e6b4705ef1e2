"""The PNG chart of a run (matplotlib, a benchmark-only dependency)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Bar labels, short enough to sit side by side.
LABELS = {
    "sdk_push": "vtex_tracking\npush_all",
    "raw_aiohttp": "raw aiohttp\npool (a)",
    "raw_aiohttp_orjson": "raw aiohttp\npool, orjson",
    "httpx_pool": "httpx pool\n(b)",
    "requests_threads": "requests\n64 threads (c)",
    "sdk_send_pool": "client.send,\n64 tasks (diag.)",
    "sdk_sync_seq": "TrackingClient\n(sync)",
    "requests_seq": "requests\nSession",
    "sdk_async_seq": "AsyncTracking-\nClient, awaited",
}


def draw(results: dict[str, Any], path: Path) -> str | None:
    """Draw ``results`` to ``path``; returns why not when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib): no chart drawn"

    # A scenario whose harness broke left only {"error": ...}: drawn as "not run".
    sc = {name: section for name, section in results["scenarios"].items() if "error" not in section}
    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5))
    m = results["machine"]
    fig.suptitle(
        f"vtex-tracking benchmarks ({results['mode']}, {m['date'][:10]}) - {m['cpu_model']},"
        f" {m['usable_cpus']} CPUs, {m['python']}, server {results['server'].get('kind', '-')}"
        "  (bars: median, whiskers: min-max)",
        fontsize=11,
    )
    _bars(axes[0][0], sc.get("bulk"), "rps", "Bulk, concurrency 64: requests/s (log)", log=True)
    _bars(
        axes[0][1], sc.get("bulk"), "cpu_us_per_req", "Bulk: client CPU us/request (log)", log=True
    )
    _bars(axes[0][2], sc.get("sync"), "rps", "Sequential single calls: requests/s")
    _memory(axes[1][0], sc.get("memory"))
    _rate_limited(axes[1][1], sc.get("rate_limited"))
    _profile(axes[1][2], sc.get("profile"))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return None


def _empty(ax: Any, title: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def _bars(ax: Any, section: dict[str, Any] | None, key: str, title: str, log: bool = False) -> None:
    contenders = {n: c for n, c in (section or {}).get("contenders", {}).items() if c.get(key)}
    if not contenders:
        _empty(ax, title)
        return
    labels = [LABELS.get(n, n) for n in contenders]
    medians = [c[key]["median"] for c in contenders.values()]
    low = [c[key]["median"] - c[key]["min"] for c in contenders.values()]
    high = [c[key]["max"] - c[key]["median"] for c in contenders.values()]
    colors = ["tab:blue" if n.startswith("sdk") else "tab:gray" for n in contenders]
    ax.bar(range(len(medians)), medians, yerr=[low, high], capsize=4, color=colors)
    ax.set_xticks(range(len(medians)), labels, fontsize=8)
    tops = [c[key]["max"] for c in contenders.values()]
    for i, (value, top) in enumerate(zip(medians, tops, strict=True)):
        ax.annotate(
            f"{value:,.0f}", (i, top), ha="center", va="bottom", fontsize=8,
            xytext=(0, 3), textcoords="offset points",
        )  # fmt: skip
    if log:
        ax.set_yscale("log")
        ax.set_ylim(min(medians) / 3, max(tops) * 3)
    else:
        ax.set_ylim(0, max(tops) * 1.15)
    ax.set_title(title, fontsize=10)


def _memory(ax: Any, section: dict[str, Any] | None) -> None:
    title = "Memory: RSS while pushing a lazy stream"
    if not section or not section.get("sdk"):
        _empty(ax, title)
        return
    for key, label, color in (
        ("sdk", "vtex_tracking push", "tab:blue"),
        ("baseline_raw_aiohttp", "raw aiohttp pool", "tab:gray"),
    ):
        figures = section.get(key)
        if figures:
            points = [(n, rss) for n, rss in figures["rss_samples"] if rss is not None]
            ax.plot([n for n, _ in points], [rss for _, rss in points], label=label, color=color)
    ax.axhline(100, color="tab:red", linestyle="--", linewidth=1, label="target: peak < 100 MB")
    ax.axvline(section["mark"], color="black", linestyle=":", linewidth=1, label="mark")
    ax.set_xlabel("results received")
    ax.set_ylabel("RSS (MB)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)


def _rate_limited(ax: Any, section: dict[str, Any] | None) -> None:
    title = "Rate-limited push: time / ideal (N/R)"
    if not section or not section["adaptive"]["time_over_ideal"]:
        _empty(ax, title)
        return
    modes = [m for m in ("adaptive", "fixed") if section[m]["time_over_ideal"]]
    for i, mode in enumerate(modes):
        t = section[mode]["time_over_ideal"]
        share = section[mode]["share_429"]
        ax.bar(
            i,
            t["median"],
            yerr=[[t["median"] - t["min"]], [t["max"] - t["median"]]],
            capsize=4,
            color="tab:blue" if mode == "adaptive" else "tab:gray",
        )
        label = f"{t['median']:.2f} x\n429s {share['median'] * 100:.1f} %" if share else ""
        ax.annotate(
            label,
            (i, t["median"]),
            ha="center",
            va="bottom",
            fontsize=8,
            xytext=(0, 4),
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8},
            textcoords="offset points",
        )
    ax.axhline(1.15, color="tab:red", linestyle="--", linewidth=1, label="target <= 1.15")
    highest = max(section[m]["time_over_ideal"]["max"] for m in modes)
    ax.set_ylim(0, max(highest, 1.15) * 1.25)
    ax.set_xticks(range(len(modes)), [f"adaptive={m == 'adaptive'}" for m in modes])
    ax.legend(fontsize=8)
    ax.set_title(
        f"{title}\n{section['n']:,} updates at {section['rate_limit']:g}/s, ideal"
        f" {section['ideal_s']:.0f} s",
        fontsize=10,
    )


def _profile(ax: Any, section: dict[str, Any] | None) -> None:
    title = "Bulk push profile: own time per request by area (us)"
    sdk = (section or {}).get("sdk_push")
    if not sdk:
        _empty(ax, title)
        return
    raw = section.get("raw_aiohttp") if section else None
    sdk_us = {r["area"]: r["self_s"] / sdk["n"] * 1e6 for r in sdk["by_area"]}
    raw_us = {r["area"]: r["self_s"] / raw["n"] * 1e6 for r in raw["by_area"]} if raw else {}
    areas = [a for a, _ in sorted(sdk_us.items(), key=lambda kv: -kv[1])[:10]][::-1]
    ys = range(len(areas))
    ax.barh(
        [y + 0.2 for y in ys],
        [sdk_us[a] for a in areas],
        height=0.4,
        color="tab:blue",
        label="vtex_tracking push",
    )
    if raw_us:
        ax.barh(
            [y - 0.2 for y in ys],
            [raw_us.get(a, 0.0) for a in areas],
            height=0.4,
            color="tab:gray",
            label="raw aiohttp pool",
        )
    ax.set_yticks(list(ys), areas, fontsize=8)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
