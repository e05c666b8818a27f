"""The `ostap` command line. Each command lives in its own module under `jobs/` and exposes

    HELP: str                      one line for `ostap --help`
    add_arguments(parser) -> None
    run(args, ctx) -> int | None      ctx: the RunContext made here from --warehouse, --master,
                                      --conf and --ds (jobs.core.run)

Errors the user can act on (OstapError) print as one line; `--verbose` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from jobs.core.errors import OstapError
from jobs.core.run import RunContext
from jobs.core.spark import end_remote_session

# command name -> module (or, for a command with actions, action -> module).
COMMANDS: dict[str, str] = {
    "demo": "jobs.local.demo",
    "generate": "jobs.generator.generate",
    "snapshot": "jobs.ods_snapshot.snapshot",
    "targets": "jobs.scoring_targets.targets",
    "forecast": "jobs.sales_forecast.forecast",
    "recommend": "jobs.recommendations.recommend",
    "validate": "jobs.warehouse.validate",
    "tables": "jobs.warehouse.tables_cmd",
    "query": "jobs.warehouse.query",
    "ddl": "jobs.warehouse.ddl",
    "lineage": "jobs.warehouse.lineage",
    "serve": "jobs.serving.serve",
    "abtest": {"land": "jobs.abtest.land", "readout": "jobs.abtest.readout",
               "simulate": "jobs.local.abtest_simulate"},
    "redis": "jobs.local.redis_local",
    "jvm-archive": "jobs.local.jvm_archive",
    "connect": "jobs.local.connect_server",
}


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--warehouse", metavar="URI",
                        help="warehouse root (default: $OSTAP_WAREHOUSE or ./warehouse)")
    common.add_argument("--master", metavar="URL",
                        help="Spark master (default: $OSTAP_SPARK_MASTER or local[*])")
    common.add_argument("--remote", metavar="sc://HOST:PORT",
                        help="run on this Spark Connect server (default: $OSTAP_SPARK_REMOTE; unset: --master)")
    common.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                        help="extra Spark setting, repeatable")
    common.add_argument("--lineage-parent", metavar="NAMESPACE/JOB/RUN_ID",
                        help="OpenLineage parent run of this job's events (the DAGs pass the Airflow task's)")
    common.add_argument("--verbose", "-v", action="store_true", help="show tracebacks and debug logs")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ostap",
        description="ostap: batch ML platform (ODS snapshots, scoring targets, forecasts, recommendations).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _common_options()
    for name, module_name in COMMANDS.items():
        if isinstance(module_name, dict):
            _add_actions(sub, name, module_name, common)
            continue
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP, parents=[common])
        module.add_arguments(cmd)
        cmd.set_defaults(_module=module)
    return parser


GROUP_HELP = {"abtest": "the online A/B test: land the answer log, read the experiment out, simulate it"}


def _add_actions(sub, name: str, actions: dict[str, str], common) -> None:
    """`ostap NAME ACTION ...`: one module per action, each with the common options."""
    group = sub.add_parser(name, help=GROUP_HELP[name], description=GROUP_HELP[name])
    inner = group.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, module_name in actions.items():
        module = importlib.import_module(module_name)
        cmd = inner.add_parser(action, help=module.HELP, description=module.HELP, parents=[common])
        module.add_arguments(cmd)
        cmd.set_defaults(_module=module)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "cmdstanpy", "prophet", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        ctx = RunContext.from_args(args)  # a bad --ds is refused here, before any Spark starts
        if getattr(args._module, "EMITS_LINEAGE", False):
            return _run_with_lineage_events(args, ctx)
        return int(args._module.run(args, ctx) or 0)
    except OstapError as exc:
        if args.verbose:
            raise
        print(f"ostap {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ostap {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence of a CLI
        if args.verbose:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"ostap {args.command}: unexpected error: {type(exc).__name__}: {first} "
              "(rerun with --verbose for the traceback)", file=sys.stderr)
        return 1
    finally:
        end_remote_session()


def main_then_exit() -> None:
    """`python -m jobs` (how DAG tasks run a command): main(), then exit at once. The job has
    closed its files and its session; tearing the interpreter down (modules, gRPC) would cost most
    of a second more per task. The exit handlers still run."""
    import atexit

    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(code)


def _run_with_lineage_events(args, ctx: RunContext) -> int:
    """Run a job between its OpenLineage START and its COMPLETE or FAIL event."""
    from jobs.core import quality
    from jobs.core.lineage_events import RunEvents

    # These jobs publish validated tables; their validation then finds the import done.
    quality.import_in_background()
    events = RunEvents(ctx, parent=ctx.lineage_parent)
    events.start()
    try:
        code = int(args._module.run(args, ctx) or 0)
    except BaseException as exc:
        events.fail(exc)
        raise
    if code:
        events.fail(f"ostap {args.command} exited with code {code}")
    else:
        events.complete()
    return code


if __name__ == "__main__":
    sys.exit(main())
