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
