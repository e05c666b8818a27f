"""The package's architecture contracts (import-linter, `[importlinter]` in setup.cfg): core imports
nothing above it, no pipeline imports another, nothing in production imports the local-development
packages, the generator or a test tool, and no package or module import cycle."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint), "setup.cfg"], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={"PATH": str(lint.parent), "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "4 kept, 0 broken" in result.stdout, result.stdout[-2000:]


def test_every_pipeline_has_its_dag_package_readme_sql_and_suites():
    """One name runs through a pipeline: dags/<pipeline>_<cadence>.py, jobs/<pipeline>/ with its
    README, sql/<pipeline>/ (when it runs SQL) and expectations/<pipeline>/ (when it publishes)."""
    from jobs.core.tables import published_tables

    pipelines = {"ods_snapshot": "daily", "scoring_targets": "daily", "sales_forecast": "monthly",
                 "recommendations": "daily", "serving": None}
    for pipeline, cadence in pipelines.items():
        assert (REPO / "jobs" / pipeline / "README.md").is_file(), pipeline
        if cadence:
            assert (REPO / "dags" / f"{pipeline}_{cadence}.py").is_file(), pipeline
            assert any((REPO / "sql" / pipeline).glob("*.sql")), pipeline
    for table in published_tables():
        assert (REPO / "expectations" / table.pipeline / f"{table.qualified}.json").is_file(), table.qualified
    assert {p.name for p in (REPO / "expectations").iterdir()} == {t.pipeline for t in published_tables()}
