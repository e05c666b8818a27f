"""The run report of a date: one HTML page under `<warehouse>/reports/` with every published
table and its rows, the data-quality results, the forecast plots and the recommendation metrics.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from jobs.warehouse import catalog, lineage
from jobs.core import config


def dq_verdicts(root: str, dates: list[str]) -> list[tuple]:
    """(ds, table, checks, failed critical, failed warning) per validated table and date."""
    con = catalog.connect(root)
    placeholders = ", ".join("?" for _ in dates)
    return con.execute(
        f"""
        SELECT ds, table_name, count(*) AS checks,
               count(*) FILTER (WHERE NOT success AND severity = 'critical') AS failed_critical,
               count(*) FILTER (WHERE NOT success AND severity = 'warning') AS failed_warning
        FROM dq.validation_results WHERE ds IN ({placeholders})
        GROUP BY 1, 2 ORDER BY 1, 2
        """, dates).fetchall()


def _html_table(header: list[str], rows: list[tuple]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _query(con, sql: str, params: list) -> tuple[list[str], list[tuple]]:
    result = con.execute(sql, params)
    return [d[0] for d in result.description], result.fetchall()


def cumulative_lift_plot(frame, path: Path) -> Path:
    """Per experiment, the readout's lift of signed_any_share by day (the cumulative test up to
    each day) with its 95% interval: where the interval leaves 0 for good, the test has decided."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates
    import matplotlib.pyplot as plt
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for experiment, part in frame.groupby("experiment"):
        days = pd.to_datetime(part["ds"])
        line = ax.plot(days, 100 * part["value"], marker="o", label=f"{experiment}: lift")
        ax.fill_between(days, 100 * part["ci_low"], 100 * part["ci_high"], alpha=0.2, color=line[0].get_color(),
                        label="95% interval")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylabel("lift of signed leases, %")
    ax.set_title("A/B test: cumulative lift (treatment vs control) by day")
    ax.xaxis.set_major_locator(matplotlib.dates.DayLocator(interval=max(1, frame["ds"].nunique() // 8)))
    ax.xaxis.set_major_formatter(matplotlib.dates.DateFormatter("%Y-%m-%d"))
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _ab_test_sections(con, ds: str, reports: Path) -> list[str]:
    """The A/B readout of ds and the plot of its cumulative lift over every day read out so far."""
    header, rows = _query(con, "SELECT experiment, metric, arm, round(value, 4) AS value, round(ci_low, 4) AS ci_low, "
                               "round(ci_high, 4) AS ci_high, round(p_value, 4) AS p_value, n_clients, flags "
                               "FROM marts.ab_readout WHERE ds = ? ORDER BY 1, 2, 3", [ds])
    if not rows:
        return []
    history = con.execute("SELECT experiment, ds, value, ci_low, ci_high FROM marts.ab_readout WHERE ds <= ? "
                          "AND metric = 'signed_any_share' AND arm = 'lift' ORDER BY 1, 2", [ds]).fetchdf()
    plot = cumulative_lift_plot(history, reports / "abtest" / f"ds={ds}" / "cumulative_lift.png")
    return ["<h2>A/B test readout</h2>" + _html_table(header, rows),
            f'<p><img src="{html.escape(os.path.relpath(plot, reports))}" width="720"></p>']


def write_run_report(root: str, ds: str, timings: list[tuple[str, str, float]] | None = None) -> str:
    reports = Path(config.local_path(root)) / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    con = catalog.connect(root)
    sections = [f"<h1>ostap run report, ds = {html.escape(ds)}</h1>"]
    if timings:
        sections.append("<h2>DAG runs</h2>" + _html_table(
            ["dag", "ds", "seconds"], [(d, s, f"{sec:.1f}") for d, s, sec in timings]))
    counts = [(t, n) for t, d, n in catalog.partition_counts(root) if d == ds]
    sections.append("<h2>Published tables</h2>" + _html_table(["table", "rows"], counts))
    lineage_rows = [(f"{name}", manifest["run_id"], "; ".join(
        f"{i['table']} {i['partition']}" + (f" (run {i['run_id']})" if i.get("run_id") else "")
        for i in manifest.get("inputs", [])))
        for (name, value), manifest in sorted(lineage.published_manifests(root).items()) if value == ds]
    sections.append("<h2>Lineage: each table's run and the runs of its inputs</h2>" + _html_table(
        ["table", "run", "inputs"], lineage_rows))
    sections.append("<h2>Data quality</h2>" + _html_table(
        ["ds", "table", "checks", "failed critical", "failed warning"], dq_verdicts(root, [ds])))
    failures = _query(con, """SELECT table_name, expectation, column_name, severity, observed_value
                              FROM dq.validation_results WHERE ds = ? AND NOT success ORDER BY 1, 2""", [ds])
    if failures[1]:
        sections.append("<h3>Failed expectations</h3>" + _html_table(*failures))
    for title, sql in [
        ("Scoring targets: phone recovery", "SELECT * EXCLUDE (ds) FROM marts.target_recovery WHERE ds = ?"),
        ("Forecast backtest (mean over stores)",
         "SELECT model, count(*) AS stores, round(avg(mape), 4) AS mape, round(avg(wape), 4) AS wape, "
         "count(*) FILTER (WHERE chosen) AS chosen_for FROM marts.forecast_backtest WHERE ds = ? "
         "GROUP BY 1 ORDER BY 4"),
        ("Recommendation metrics", "SELECT model, metric, k, round(value, 4) AS value FROM marts.rec_eval "
                                   "WHERE ds = ? ORDER BY 2, 1"),
    ]:
        header, rows = _query(con, sql, [ds])
        if rows:
            sections.append(f"<h2>{html.escape(title)}</h2>" + _html_table(header, rows))
    sections += _ab_test_sections(con, ds, reports)
    plots = sorted((reports / "forecast" / f"ds={ds}").glob("*.png"))
    if plots:
        sections.append("<h2>Forecast plots</h2>" + "".join(
            f'<p><img src="{html.escape(os.path.relpath(p, reports))}" width="720"></p>' for p in plots))
    docs = reports / "data_docs" / "index.html"
    if docs.exists():
        sections.append(f'<p><a href="{html.escape(os.path.relpath(docs, reports))}">Great Expectations Data Docs</a></p>')
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>ostap run " + html.escape(ds) + "</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}</style></head><body>"
            + "\n".join(sections) + "</body></html>")
    path = reports / f"run_{ds}.html"
    path.write_text(page)
    return str(path)
