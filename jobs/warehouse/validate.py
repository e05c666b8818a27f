"""`ostap validate --table NAME --ds D`: check a published partition against its expectation suite.

Runs the same suite as the gate before publishing (expectations/<pipeline>/<zone>.<name>.json), records the
results in dq.validation_results and a Data Docs page, and prints a short verdict. Exit status 0
when no critical expectation failed, 1 otherwise (warnings do not change the status).
"""

from __future__ import annotations

HELP = "validate a published partition against its Great Expectations suite and print a verdict"


def add_arguments(parser) -> None:
    parser.add_argument("--table", required=True, metavar="NAME",
                        help="table to check, zone.name or a unique name (e.g. ods.premises, scoring_targets)")
    parser.add_argument("--ds", required=True, metavar="YYYY-MM-DD", help="partition to check")
    parser.add_argument("--row-count-band", metavar="LO:HI",
                        help="allowed ratio of rows to the previous partition, e.g. 0.5:2 "
                             "(default: $OSTAP_DQ_ROW_COUNT_BAND or the suite's meta)")
    parser.add_argument("--run-id", help="run id recorded with the results (default: random)")


def run(args, ctx) -> int:
    import dataclasses

    from jobs.core import quality, storage
    from jobs.core.errors import OstapError
    from jobs.core.tables import table as lookup

    ds, root = ctx.ds, ctx.warehouse
    if args.run_id:
        ctx = dataclasses.replace(ctx, run_id=args.run_id)
    if args.row_count_band:
        quality.parse_band(args.row_count_band)  # refuse a malformed band before starting Spark
    target = lookup(args.table)
    spark = ctx.spark("ostap-validate")
    if not storage.path_exists(spark, f"{target.partition_path(ds, root)}/_SUCCESS"):
        raise OstapError(f"{target.qualified} has no published partition ds={ds} "
                         f"(looked in {target.partition_path(ds, root)})")
    frame = storage.read_partition(spark, target, ds, root)
    verdict = quality.validate(frame, target, ds, ctx, band=args.row_count_band)
    frame.unpersist()
    print(verdict.summary())
    return 0 if verdict.passed else 1
