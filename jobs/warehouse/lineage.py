"""`ostap lineage`: where a partition came from, and which partitions are stale.

`ostap lineage TABLE --ds D [--depth N] [--json]` prints the upstream tree of a partition from the
manifests publishing writes (`_RUN.json`): each node with the run that built it and when, down to
the raw load-date folders. `ostap lineage stale [--since D]` lists every published partition whose
inputs were republished after it was built (an input's current run differs from the one its
manifest recorded), and everything built from those, in the order to rebuild them, each with the
Airflow command that rebuilds it.
"""

from __future__ import annotations

import json
import os

from jobs.core import config, tables
from jobs.core.errors import BadInputError, OstapError

HELP = "upstream tree of a partition (ostap lineage TABLE --ds D) or the stale partitions (ostap lineage stale)"

DAGS = {"ods_snapshot": "ods_snapshot_daily", "scoring_targets": "scoring_targets_daily",
        "sales_forecast": "sales_forecast_monthly", "recommendations": "recommendations_daily",
        "abtest": "abtest_daily"}
ZONE_ORDER = {"state": 0, "ods": 0, "marts": 1}


def add_arguments(parser) -> None:
    parser.add_argument("target", metavar="TABLE|stale", help="a table (zone.name or a unique name), or `stale`")
    parser.add_argument("--ds", metavar="YYYY-MM-DD", help="the partition whose tree to print")
    parser.add_argument("--depth", type=int, default=10, metavar="N", help="levels of inputs to follow (default 10)")
    parser.add_argument("--since", metavar="YYYY-MM-DD", help="stale: only partitions of this date or later")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def read_manifest(root: str, table: tables.Table, value: str) -> dict | None:
    folder = os.path.join(config.local_path(table.partition_path(value, root)))
    path = os.path.join(folder, "_RUN.json")
    if not os.path.exists(os.path.join(folder, "_SUCCESS")) or not os.path.exists(path):
        return None
    with open(path) as fh:
        return json.load(fh)


def current_run(root: str, table_name: str, value: str) -> str | None:
    table = tables.TABLES.get(table_name)
    manifest = read_manifest(root, table, value) if table is not None else None
    return manifest.get("run_id") if manifest else None


def tree(root: str, table: tables.Table, value: str, depth: int) -> dict:
    """The partition's node: its run, when it was built, and its inputs' nodes."""
    manifest = read_manifest(root, table, value)
    node = {"table": table.qualified, "partition": value, "run_id": None, "built_at": None, "inputs": []}
    if manifest is None:
        node["note"] = "not published, or published before manifests"
        return node
    node.update(run_id=manifest["run_id"], built_at=manifest.get("staged_at"), job=manifest.get("job"))
    for entry in manifest.get("inputs", []):
        upstream = tables.TABLES.get(entry["table"])
        if upstream is None or upstream.zone == "raw" or depth <= 1:
            node["inputs"].append({"table": entry["table"], "partition": entry["partition"],
                                   "run_id": entry.get("run_id"), "inputs": []})
            continue
        child = tree(root, upstream, entry["partition"], depth - 1)
        child["read_run_id"] = entry.get("run_id")
        child["stale"] = child["run_id"] != entry.get("run_id")
        node["inputs"].append(child)
    return node


def tree_lines(node: dict, indent: str = "") -> list[str]:
    built = f" built {node['built_at']}" if node.get("built_at") else ""
    run = f" run {node['run_id']}" if node.get("run_id") else ""
    stale = f" (read run {node['read_run_id']}: republished since)" if node.get("stale") else ""
    lines = [f"{indent}{node['table']} {node['partition']}{run}{built}{stale}{' ' + node['note'] if node.get('note') else ''}"]
    for child in node["inputs"]:
        lines.extend(tree_lines(child, indent + "  "))
    return lines


def published_manifests(root: str) -> dict[tuple[str, str], dict]:
    found = {}
    for table in tables.TABLES.values():
        if table.zone not in ZONE_ORDER:
            continue
        base = config.local_path(table.path(root))
        if not os.path.isdir(base):
            continue
        for name in os.listdir(base):
            if name.startswith(f"{table.partition}="):
                value = name.split("=", 1)[1]
                manifest = read_manifest(root, table, value)
                if manifest:
                    found[(table.qualified, value)] = manifest
    return found


def stale(root: str, since: str | None = None) -> list[dict]:
    """Stale partitions in rebuild order: those whose input was republished, then what was built from them."""
    manifests = published_manifests(root)
    why: dict[tuple[str, str], str] = {}
    for key, manifest in manifests.items():
        for entry in manifest.get("inputs", []):
            source = (entry["table"], entry["partition"])
            if source in manifests and manifests[source]["run_id"] != entry.get("run_id"):
                why[key] = (f"{entry['table']} {entry['partition']} is run {manifests[source]['run_id']}, "
                            f"built from run {entry.get('run_id')}")
    changed = True
    while changed:  # what was built from a stale partition is stale too
        changed = False
        for key, manifest in manifests.items():
            if key in why:
                continue
            for entry in manifest.get("inputs", []):
                if (entry["table"], entry["partition"]) in why:
                    why[key] = f"built from {entry['table']} {entry['partition']}, which is stale"
                    changed = True
                    break
    found = []
    for (name, value), reason in why.items():
        if since and value < since:
            continue
        table = tables.TABLES[name]
        found.append({"table": name, "partition": value, "run_id": manifests[(name, value)]["run_id"],
                      "why": reason, "rebuild": rebuild_command(table, value)})
    return sorted(found, key=lambda f: (f["partition"], ZONE_ORDER[f["table"].split(".")[0]], f["table"]))


def rebuild_command(table: tables.Table, value: str) -> str:
    # The answer log's exposures are landed and snapshotted by the A/B test's own DAG.
    dag = DAGS["abtest" if table.name in tables.LANDED_ENTITIES else table.pipeline]
    # Airflow 3 matches -t as a part of the task id, not as a regex (`^...$` would match nothing).
    task = f" -t snapshot_{table.name}" if table.zone in tables.SOURCE_ZONES else ""
    return f"airflow tasks clear {dag}{task} -s {value} -e {value} -y"


def run(args, ctx) -> int:
    root = ctx.warehouse
    if not config.is_local(root):
        raise OstapError(f"ostap lineage reads a local warehouse; {root} is remote")
    if args.target == "stale":
        found = stale(root, args.since)
        if args.json:
            print(json.dumps(found, indent=1))
        elif not found:
            print("nothing is stale: every partition was built from the current runs of its inputs")
        else:
            seen_commands = []
            for item in found:
                print(f"{item['table']} {item['partition']} (run {item['run_id']}): {item['why']}")
                if item["rebuild"] not in seen_commands:
                    seen_commands.append(item["rebuild"])
            print("\nrebuild, in this order (each once the runs it started have finished):")
            print("\n".join(seen_commands))
        return 0
    if not args.ds:
        raise BadInputError("ostap lineage TABLE needs --ds YYYY-MM-DD")
    if args.depth < 1:
        raise BadInputError(f"--depth {args.depth}: must be at least 1")
    node = tree(root, tables.table(args.target), ctx.ds, args.depth)
    if node["run_id"] is None:
        raise OstapError(f"{node['table']} ds={ctx.ds}: {node['note']}")
    print(json.dumps(node, indent=1) if args.json else "\n".join(tree_lines(node)))
    return 0
