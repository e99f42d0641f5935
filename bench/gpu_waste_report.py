"""Tables and goals of ``bench/gpu_waste.py`` (docs/contract.md §12): one row per run and configuration."""

from __future__ import annotations


def mixed_table(rows: list[dict]) -> str:
    """Benchmark (a)'s rows as Markdown."""
    lines = [
        "| run | configuration | reloads | GPU s lost to loading | wait p50 (s) | wait p95 (s) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['run']} | {row['config']} | {row['reloads']} | {row['lost_s']:.1f} | "
            f"{row['p50']:.2f} | {row['p95']:.2f} |"
        )
    return "\n".join(lines)


def turns_table(rows: list[dict]) -> str:
    """Benchmark (b)'s rows as Markdown."""
    lines = [
        "| run | configuration | turns | prompt evaluation (s) | TTFT p50 (s) | TTFT p95 (s) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['run']} | {row['config']} | {row['turns']} | {row['eval_s']:.1f} | "
            f"{row['p50']:.2f} | {row['p95']:.2f} |"
        )
    return "\n".join(lines)


def mixed_goals(rows: list[dict]) -> list[tuple[str, bool]]:
    """≥ 90 % fewer reloads and a p95 wait no worse, in every run."""
    out = []
    for run in sorted({row["run"] for row in rows}):
        client, server = (r for r in rows if r["run"] == run)
        fewer = server["reloads"] <= 0.1 * client["reloads"]
        out.append((f"run {run}: reloads {server['reloads']} vs {client['reloads']} (>= 90 % fewer)", fewer))
        out.append(
            (
                f"run {run}: wait p95 {server['p95']:.2f} s vs {client['p95']:.2f} s",
                server["p95"] <= client["p95"],
            )
        )
    return out


def turns_goals(rows: list[dict]) -> list[tuple[str, bool]]:
    """≥ 3x less prompt evaluation and a better p95 time to first token, in every run."""
    out = []
    for run in sorted({row["run"] for row in rows}):
        sticky, loose = (r for r in rows if r["run"] == run)
        ratio = loose["eval_s"] / max(sticky["eval_s"], 1e-9)
        out.append((f"run {run}: prompt evaluation {ratio:.1f}x less (>= 3x)", ratio >= 3))
        out.append(
            (
                f"run {run}: TTFT p95 {sticky['p95']:.2f} s vs {loose['p95']:.2f} s",
                sticky["p95"] < loose["p95"],
            )
        )
    return out


def report(goals: list[tuple[str, bool]]) -> bool:
    """Print each goal as met or missed; True if all are met."""
    for text, ok in goals:
        print(f"{'met   ' if ok else 'MISSED'} {text}")
    print()
    return all(ok for _, ok in goals)
