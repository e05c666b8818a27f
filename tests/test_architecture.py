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
                 "recommendations": "daily", "serving": None, "abtest": "daily"}
    for pipeline, cadence in pipelines.items():
        assert (REPO / "jobs" / pipeline / "README.md").is_file(), pipeline
        if cadence:
            assert (REPO / "dags" / f"{pipeline}_{cadence}.py").is_file(), pipeline
            assert any((REPO / "sql" / pipeline).glob("*.sql")), pipeline
    for table in published_tables():
        assert (REPO / "expectations" / table.pipeline / f"{table.qualified}.json").is_file(), table.qualified
    assert {p.name for p in (REPO / "expectations").iterdir()} == {t.pipeline for t in published_tables()}


def _production_modules():
    """Every module that production runs: jobs/ outside the local-development packages and the generator."""
    for path in sorted((REPO / "jobs").rglob("*.py")):
        if path.relative_to(REPO / "jobs").parts[0] not in ("local", "generator"):
            yield path


def test_the_run_context_is_the_only_way_a_run_learns_its_root_date_and_id():
    """The CLI makes one RunContext and passes it down: no production module writes to os.environ
    (the old way the warehouse root travelled), parses a --ds of its own or mints a run id."""
    import ast

    offences = []
    for path in _production_modules():
        name = str(path.relative_to(REPO))
        for node in ast.walk(ast.parse(path.read_text())):
            text = ast.unparse(node) if isinstance(node, ast.Assign | ast.Call) else ""
            if isinstance(node, ast.Assign) and any("os.environ[" in ast.unparse(t) for t in node.targets):
                offences.append(f"{name}:{node.lineno} writes os.environ: {text}")
            if isinstance(node, ast.Call) and ast.unparse(node.func) in ("os.environ.setdefault", "os.putenv"):
                if "GX_ANALYTICS_ENABLED" not in text and "PYSPARK_" not in text:
                    offences.append(f"{name}:{node.lineno} writes os.environ: {text}")
            if name != "jobs/core/run.py" and isinstance(node, ast.Assign) and "uuid" in text and any(
                    "run_id" in ast.unparse(t) for t in node.targets):
                offences.append(f"{name}:{node.lineno} mints a run id: {text}")
            if isinstance(node, ast.FunctionDef) and node.name in ("parse_ds", "_parse_ds") \
                    and name != "jobs/core/run.py":
                offences.append(f"{name}:{node.lineno} parses dates itself: def {node.name}")
            if isinstance(node, ast.arg) and node.arg == "root" and node.annotation is not None \
                    and "None" in ast.unparse(node.annotation):
                offences.append(f"{name}:{node.lineno} threads an optional root: {ast.unparse(node.annotation)}")
    assert offences == []


def test_the_cli_passes_the_warehouse_down_without_touching_the_environment(tmp_path, monkeypatch):
    import os

    from jobs import cli
    from jobs.core.run import RunContext

    monkeypatch.delenv("OSTAP_WAREHOUSE", raising=False)
    seen = {}

    class Probe:
        HELP = "probe"

        @staticmethod
        def run(args, ctx):
            seen["ctx"] = ctx
            return 0

    parser = cli.build_parser()
    args = parser.parse_args(["validate", "--table", "ods.clients", "--ds", "2024-06-01",
                              "--warehouse", str(tmp_path / "wh"), "--conf", "spark.sql.shuffle.partitions=3"])
    args._module = Probe
    monkeypatch.setattr(cli.argparse.ArgumentParser, "parse_args", lambda self, argv=None: args)
    assert cli.main([]) == 0
    ctx = seen["ctx"]
    assert isinstance(ctx, RunContext)
    assert (ctx.warehouse, ctx.ds, dict(ctx.conf)) == (str(tmp_path / "wh"), "2024-06-01",
                                                       {"spark.sql.shuffle.partitions": "3"})
    assert len(ctx.run_id) == 12
    assert "OSTAP_WAREHOUSE" not in os.environ


def test_a_bad_date_is_refused_in_one_line_before_any_command_runs(capsys):
    from jobs import cli

    for command in (["snapshot", "--entity", "clients"], ["targets"], ["recommend"], ["forecast"],
                    ["validate", "--table", "ods.clients"], ["serve", "load"]):
        for bad in ("2024-13-01", "20240601", "yesterday"):
            assert cli.main([*command, "--ds", bad]) == 2, (command, bad)
            err = capsys.readouterr().err.strip()
            assert err == f"ostap {command[0]}: error: --ds {bad!r}: expected a date YYYY-MM-DD, e.g. 2024-06-01"


def test_no_production_module_reaches_into_the_jvm():
    """Jobs run unchanged on a classic or a Spark Connect session, which has no SparkContext and no
    py4j gateway: no production module touches `sparkContext`, `_jvm`, `_jsc`, a classic object's
    JVM handle (`_jdf`, `_jo`, ...) or imports py4j (the
    file system is reached from Python, jobs.core.files). jobs/local is development tooling (the
    JVM class archive trains a classic driver) and stays outside."""
    import ast

    # The py4j handles of classic objects (a DataFrame's _jdf, an Observation's _jo, ...) too.
    jvm_handles = ("sparkContext", "_jvm", "_jsc", "_gateway", "_jdf", "_jo", "_jconf", "_jsparkSession")
    offences = []
    for path in _production_modules():
        name = str(path.relative_to(REPO))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in jvm_handles:
                offences.append(f"{name}:{node.lineno} uses .{node.attr}")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
                    and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and node.args[1].value in jvm_handles):
                offences.append(f"{name}:{node.lineno} uses {node.func.id}(..., {node.args[1].value!r})")
            if isinstance(node, ast.Import | ast.ImportFrom):
                modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                offences += [f"{name}:{node.lineno} imports {m}" for m in modules if m.split(".")[0] == "py4j"]
    assert offences == []
