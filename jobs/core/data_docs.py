"""Great Expectations' Data Docs of every validation the quality gate (jobs.core.quality) runs:
one page per validation, rendered by GX, and an index of every page, on any Hadoop file system."""

from __future__ import annotations

import html
import logging

from jobs.core import settings

log = logging.getLogger(__name__)

def data_docs_root(root: str) -> str:
    return f"{root}/reports/data_docs"


def write_page(spark, verdict, result, root: str) -> str | None:
    """Render the validation with GX's own Data Docs renderer to one page, and refresh the index.

    An ephemeral GX context keeps results in memory, so a GX site would index only this
    process's runs; pages written per run plus an index built from the folder cover every run,
    on any Hadoop file system. A rendering problem never fails the gate.
    """
    if settings.DQ_DATA_DOCS.get() == "0":
        return None
    try:
        from great_expectations.render.renderer import ValidationResultsPageRenderer
        from great_expectations.render.view import DefaultJinjaPageView

        page = DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result))
        status = "passed" if verdict.passed else "failed"
        relative = f"validations/{verdict.table}/ds={verdict.ds}/{verdict.run_id}.{status}.html"
        docs = data_docs_root(root)
        _write_text(spark, f"{docs}/{relative}", page)
        _write_text(spark, f"{docs}/index.html", _index_page(spark, docs))
        return f"{docs}/{relative}"
    except Exception as exc:  # noqa: BLE001 - docs are a report, not a gate
        log.warning("data docs for %s ds=%s not written: %s: %s", verdict.table, verdict.ds,
                    type(exc).__name__, exc)
        return None


def _write_text(spark, path: str, text: str) -> None:
    from jobs.core.storage import write_bytes

    write_bytes(spark, path, text.encode("utf-8"))


def _index_page(spark, docs: str) -> str:
    from jobs.core import files

    pages = [page for page in files.files_under(f"{docs}/validations") if page.endswith(".html")]
    rows = []
    for page in sorted(pages, key=lambda p: (p.split("/")[1], p), reverse=True):
        table, partition, name = page.split("/")[-3:]
        run_id, status = name.rsplit(".", 2)[:2]
        rows.append(f"<tr class='{status}'><td>{html.escape(partition[3:])}</td><td>{html.escape(table)}</td>"
                    f"<td>{status.upper()}</td><td><a href='validations/{html.escape(page)}'>"
                    f"{html.escape(run_id)}</a></td></tr>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>ostap data docs</title><style>"
            "body{font-family:sans-serif}td,th{padding:2px 12px;text-align:left}"
            ".failed td{color:#b00}</style></head><body><h1>ostap data quality: validations</h1>"
            "<table><tr><th>ds</th><th>table</th><th>verdict</th><th>run</th></tr>"
            + "".join(rows) + "</table></body></html>")
