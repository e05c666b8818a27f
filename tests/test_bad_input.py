"""Bad input, every command: each case runs `ostap ...` in-process on malformed input and must end
in one stderr line `ostap <command>: error: ...` naming the offending thing with exit code 2, or in
a documented quarantine (exit 0, the bad rows in dq.rejects or dq.conflicts). After every case the
warehouse holds no partial partition (no _staging_/_trash_ folder, _lock_ file, _runs record, or
ds= folder without _SUCCESS) and no row is lost. The last test prints the figures the README's
"Reliability" section reports.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

START, DS = "2024-01-01", "2024-01-02"  # the generated replicas land on these two days

# What the last test reports; every case records itself here.
RESULTS: dict[str, dict] = {}


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]  # {wh}: the case's warehouse, {in}: its folder of input files
    names: tuple[str, ...] = ()  # what the error line must name
    outcome: str = "refused"  # refused | quarantined | accepted
    prepare: Callable | None = None  # prepare(wh, inputs, raw): write the case's inputs
    check: Callable | None = None  # check(wh, inputs) -> (rows read, rows published, rows quarantined)
    env: tuple[tuple[str, str], ...] = ()
    unwritable_by_chmod: bool = False  # needs a chmod that binds (not root)

    @property
    def command(self) -> str:
        return self.argv[0]


# ---------------------------------------------------------------------------------------------
# inputs


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def csv(name: str, text: str) -> Callable:
    def prepare(wh, inputs, raw):
        _write(inputs / name, text)
    return prepare


def raw_of(*entities: str) -> Callable:
    def prepare(wh, inputs, raw):
        for entity in entities:
            shutil.copytree(raw / entity, wh / "raw" / entity)
    return prepare


def both(*steps: Callable) -> Callable:
    def prepare(wh, inputs, raw):
        for step in steps:
            step(wh, inputs, raw)
    return prepare


def corrupt_parquet(wh, inputs, raw):
    raw_of("clients")(wh, inputs, raw)
    (wh / "raw" / "clients" / f"load_date={DS}" / "part-00001.parquet").write_bytes(b"PAR1 not parquet at all")


NON_ASCII = ["Łukasz Żółć", "Иван Петров", "李雷", "Zoë Ñúñez", "محمد", "Ἀθηνᾶ", "🙂 Smiley", "e\u0301 combining"]


def non_ascii_clients(wh, inputs, raw):
    raw_of("clients")(wh, inputs, raw)
    for path in sorted((wh / "raw" / "clients").rglob("*.parquet")):
        table = pq.read_table(path)
        # By key: a change delivered twice stays the same change (no conflict made here).
        names = [NON_ASCII[key % len(NON_ASCII)] for key in table.column("client_id").to_pylist()]
        index = table.schema.get_field_index("full_name")
        table = table.set_column(index, "full_name", pa.array(names, table.schema.field(index).type))
        pq.write_table(table, path)


def read_only_warehouse(wh, inputs, raw):
    csv("changes.csv", GOOD_CHANGES)(wh, inputs, raw)
    wh.chmod(0o555)


def under_a_file(wh, inputs, raw):
    csv("changes.csv", GOOD_CHANGES)(wh, inputs, raw)
    _write(inputs / "a_file", "not a folder\n")


GOOD_CHANGES = """id,name,amount,ods_dt,ods_seq,ods_type
1,a,10.5,2024-01-01 10:00:00,1,I
2,b,11.0,2024-01-01 10:00:01,2,I
3,c,12.0,2024-01-02 09:00:00,3,I
"""

# Five good rows and one of each kind of bad row: every row a distinct key, so that each row
# read is either published or in dq.rejects.
BAD_CHANGES = """id,name,amount,ods_dt,ods_seq,ods_type
1,a,10.5,2024-01-01 10:00:00,1,I
2,b,11.0,2024-01-01 10:00:01,2,I
3,c,12.0,2024-01-02 09:00:00,3,I
4,d,13.0,2024-01-02 09:00:01,4,U
5,Ünïcödé,14.0,2024-01-02 09:00:02,5,I
6,bad type,1.0,2024-01-02 09:00:03,6,X
7,impossible date,1.0,2024-02-30 10:00:00,7,I
8,seq not a number,1.0,2024-01-02 09:00:04,abc,I
9,huge seq,1.0,2024-01-02 09:00:05,99999999999999999999999,I
,null key,1.0,2024-01-02 09:00:06,10,I
11,null ods_dt,1.0,,11,I
"""

# Key 2 has two different changes at the same (ods_dt, ods_seq): a conflict.
CONFLICTING_CHANGES = """id,name,amount,ods_dt,ods_seq,ods_type
1,a,10.5,2024-01-01 10:00:00,1,I
2,b,11.0,2024-01-01 10:00:01,2,I
2,B,99.0,2024-01-01 10:00:01,2,I
3,c,12.0,2024-01-02 09:00:00,3,I
"""

SALES_HEADER = "store_id,date,sales\n"
GOOD_SALES = "".join(f"{store},2023-{month:02d}-01,{100 + month}\n" for store in (1, 2) for month in range(1, 13))


def sales(rows: str, header: str = SALES_HEADER) -> Callable:
    return csv("sales.csv", header + rows)


INTERACTIONS = "user_id,item_id,weight\n1,10,1\n1,11,2\n2,10,1\n2,12,1\n3,11,1\n"


def interactions(text: str) -> Callable:
    return csv("interactions.csv", text)


# ---------------------------------------------------------------------------------------------
# checks of the quarantine and acceptance cases: (rows read, rows published, rows quarantined)


def _rows(folder: Path) -> int:
    files = [p for p in folder.glob("*.parquet")] if folder.is_dir() else []
    return sum(pq.ParquetFile(p).metadata.num_rows for p in files)


def _csv_rows(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines()) - 1


def snapshot_rows(entity: str, dq_table: str) -> Callable:
    def check(wh, inputs):
        return (_csv_rows(inputs / "changes.csv"), _rows(wh / "ods" / entity / f"ds={DS}"),
                _rows(wh / "dq" / dq_table / f"ds={DS}"))
    return check


def names_intact(wh, inputs):
    """The names as written, and every client live at the end of DS published (recomputed here)."""
    published = wh / "ods" / "clients" / f"ds={DS}"
    table = pq.read_table(published, columns=["client_id", "full_name"])
    assert set(table.column("full_name").to_pylist()) == set(NON_ASCII)
    changes = pq.read_table(wh / "raw" / "clients").to_pandas()
    changes = changes[changes["ods_dt"] < pd.Timestamp(DS, tz="UTC") + pd.Timedelta(days=1)]
    last = changes.sort_values(["ods_dt", "ods_seq"]).groupby("client_id").tail(1)
    live = set(last.loc[last["ods_type"] != "D", "client_id"])
    kept = live & set(table.column("client_id").to_pylist())
    return len(live), len(kept), 0


# ---------------------------------------------------------------------------------------------
# the cases

WH = ("--warehouse", "{wh}")
SNAP = ("snapshot", *WH, "--ds", DS)
GENERIC = (*SNAP, "--entity", "changes", "--source", "{in}/changes.csv", "--key", "id")
FORECAST = ("forecast", *WH, "--ds", "2024-01-01", "--sales", "{in}/sales.csv")
RECOMMEND = ("recommend", *WH, "--ds", DS, "--interactions", "{in}/interactions.csv")
PII = (("OSTAP_PII_KEY", "a-test-key-of-enough-characters"),)

CASES = [
    # dates
    Case("snapshot-bad-date", ("snapshot", *WH, "--entity", "clients", "--ds", "2024-13-01"), ("--ds", "2024-13-01")),
    Case("snapshot-impossible-date", ("snapshot", *WH, "--entity", "clients", "--ds", "2024-02-30"), ("--ds",)),
    Case("snapshot-last-date", ("snapshot", *WH, "--entity", "clients", "--ds", "9999-12-31"), ("--ds",),
         prepare=raw_of("clients")),
    Case("snapshot-first-date", ("snapshot", *WH, "--entity", "clients", "--ds", "0001-01-01"), ("--ds",),
         prepare=raw_of("clients")),
    Case("forecast-far-date", ("forecast", *WH, "--ds", "2999-01-01", "--sales", "{in}/sales.csv"), ("--ds",),
         prepare=sales(GOOD_SALES)),
    Case("generate-impossible-start", ("generate", "--out", "{wh}", "--start", "2023-02-29", "--days", "1"),
         ("--start",)),
    # unknown entities and tables, missing inputs
    Case("snapshot-unknown-entity", (*SNAP, "--entity", "nosuch"), ("'nosuch'",)),
    Case("snapshot-entity-not-a-name", (*SNAP, "--entity", "../clients"), ("--entity",)),
    Case("snapshot-missing-replica", (*SNAP, "--entity", "clients"), ("raw.clients",)),
    Case("snapshot-missing-source", (*SNAP, "--entity", "x", "--source", "{in}/nothing.csv", "--key", "id"),
         ("nothing.csv",)),
    Case("snapshot-key-not-the-registry's", (*SNAP, "--entity", "clients", "--key", "full_name"),
         ("--key", "client_id"), prepare=raw_of("clients")),
    Case("snapshot-corrupt-parquet", (*SNAP, "--entity", "clients", "--full"), ("part-00001.parquet",),
         prepare=corrupt_parquet),
    Case("targets-missing-partition", ("targets", *WH, "--ds", DS), ("ods.contracts", f"ds={DS}"), env=PII),
    Case("targets-no-pii-key", ("targets", *WH, "--ds", DS), ("OSTAP_PII_KEY",),
         env=(("OSTAP_PII_KEY", ""),)),
    Case("targets-negative-window", ("targets", *WH, "--ds", DS, "--outcome-window-days", "-5"),
         ("--outcome-window-days",), env=PII),
    Case("forecast-missing-partition", ("forecast", *WH, "--ds", DS), ("ods.sales", f"ds={DS}")),
    Case("recommend-missing-partition", ("recommend", *WH, "--ds", DS), ("ods.tenants", f"ds={DS}")),
    Case("validate-unknown-table", ("validate", *WH, "--table", "marts.nosuch", "--ds", DS), ("marts.nosuch",)),
    Case("validate-missing-partition", ("validate", *WH, "--table", "ods.clients", "--ds", DS),
         ("ods.clients", f"ds={DS}")),
    Case("validate-bad-band", ("validate", *WH, "--table", "ods.clients", "--ds", DS, "--row-count-band", "2:1"),
         ("2:1",)),
    Case("serve-load-missing-partition", ("serve", "load", *WH, "--ds", DS, "--redis", "redis://127.0.0.1:9/0"),
         ("marts.recommendations", f"ds={DS}")),
    Case("serve-load-without-ds", ("serve", "load", *WH, "--redis", "redis://127.0.0.1:9/0"), ("--ds",)),
    Case("query-bad-sql", ("query", *WH, "selec * form marts.sales_plan"), ("query failed",)),
    Case("query-unknown-table", ("query", *WH, "select * from marts.nosuch"), ("nosuch",)),
    Case("generate-bad-scale", ("generate", "--out", "{wh}", "--scale", "huge"), ("--scale", "'huge'")),
    Case("generate-bad-days", ("generate", "--out", "{wh}", "--days", "two"), ("--days",)),
    # --source change rows: wrong types, bad values, empty
    Case("snapshot-bad-rows-quarantined", (*GENERIC, "--max-reject-share", "0.9"), outcome="quarantined",
         prepare=csv("changes.csv", BAD_CHANGES), check=snapshot_rows("changes", "rejects")),
    Case("snapshot-bad-rows-above-share", GENERIC, ("raw.changes", "dq.rejects"),
         prepare=csv("changes.csv", BAD_CHANGES)),
    Case("snapshot-conflict-quarantined", (*GENERIC, "--on-conflict", "quarantine"), outcome="quarantined",
         prepare=csv("changes.csv", CONFLICTING_CHANGES), check=snapshot_rows("changes", "conflicts")),
    Case("snapshot-conflict-refused", GENERIC, ("raw.changes", "id=2"),
         prepare=csv("changes.csv", CONFLICTING_CHANGES)),
    Case("snapshot-source-missing-column", GENERIC, ("ods_seq",),
         prepare=csv("changes.csv", "id,name,ods_dt,ods_type\n1,a,2024-01-01 10:00:00,I\n")),
    Case("snapshot-source-header-only", GENERIC, ("changes.csv",),
         prepare=csv("changes.csv", "id,name,amount,ods_dt,ods_seq,ods_type\n")),
    Case("snapshot-source-empty-file", GENERIC, ("changes.csv",), prepare=csv("changes.csv", "")),
    Case("snapshot-registry-source-wrong-type",
         (*SNAP, "--entity", "stores", "--source", "{in}/stores.csv", "--full"), ("store_id",),
         prepare=csv("stores.csv", "store_id,store_name,region,store_format,opened_date,ods_dt,ods_seq,ods_type\n"
                                   "S1,a,north,mall,2020-01-01,2024-01-01 10:00:00,1,I\n")),
    Case("snapshot-bad-max-reject-share", (*GENERIC, "--max-reject-share", "2"), ("--max-reject-share",),
         prepare=csv("changes.csv", GOOD_CHANGES)),
    # forecast --sales
    Case("forecast-sales-wrong-type", FORECAST, ("sales.csv", "sales", "abc"),
         prepare=sales(GOOD_SALES + "1,2023-12-02,abc\n")),
    Case("forecast-sales-id-not-integer", FORECAST, ("sales.csv", "store_id", "S7"),
         prepare=sales(GOOD_SALES + "S7,2023-12-02,5\n")),
    Case("forecast-sales-impossible-date", FORECAST, ("sales.csv", "date", "2023-02-30"),
         prepare=sales(GOOD_SALES + "1,2023-02-30,5\n")),
    Case("forecast-sales-negative", FORECAST, ("sales.csv", "sales", "-5"),
         prepare=sales(GOOD_SALES + "1,2023-12-02,-5\n")),
    Case("forecast-sales-nan", FORECAST, ("sales.csv", "sales", "NaN"),
         prepare=sales(GOOD_SALES + "1,2023-12-02,NaN\n")),
    Case("forecast-sales-infinite", FORECAST, ("sales.csv", "sales", "Infinity"),
         prepare=sales(GOOD_SALES + "1,2023-12-02,Infinity\n")),
    Case("forecast-sales-huge-id", FORECAST, ("sales.csv", "store_id", "99999999999"),
         prepare=sales(GOOD_SALES + "99999999999,2023-12-02,5\n")),
    Case("forecast-sales-huge-values", FORECAST, ("sales.csv", "too large"),
         prepare=sales(GOOD_SALES + "1,2023-12-02,1e308\n1,2023-12-03,1e308\n")),
    Case("forecast-sales-duplicated-rows", FORECAST, ("sales.csv", "store_id=1", "2023-03-01"),
         prepare=sales(GOOD_SALES + "1,2023-03-01,103\n")),
    Case("forecast-sales-missing-column", FORECAST, ("sales.csv", "sales"),
         prepare=sales("1,2023-01-01\n", header="store_id,date\n")),
    Case("forecast-sales-header-only", FORECAST, ("sales.csv",), prepare=sales("")),
    Case("forecast-sales-missing-file", FORECAST, ("sales.csv",)),
    Case("forecast-bad-horizon", (*FORECAST, "--horizon", "0"), ("--horizon",), prepare=sales(GOOD_SALES)),
    # recommend --interactions (generic mode)
    Case("recommend-ids-not-integers", RECOMMEND, ("user_id", "u2"),
         prepare=interactions(INTERACTIONS + "u2,10,1\n")),
    Case("recommend-fractional-ids", RECOMMEND, ("item_id", "10.5"),
         prepare=interactions(INTERACTIONS + "2,10.5,1\n")),
    Case("recommend-huge-ids", RECOMMEND, ("user_id", "99999999999999999999999"),
         prepare=interactions(INTERACTIONS + "99999999999999999999999,10,1\n")),
    Case("recommend-infinite-weight", RECOMMEND, ("weight",),
         prepare=interactions(INTERACTIONS + "2,11,1e400\n")),
    Case("recommend-negative-weight", RECOMMEND, ("weight", "-3"),
         prepare=interactions(INTERACTIONS + "2,11,-3\n")),
    Case("recommend-bad-timestamp", RECOMMEND, ("ts", "not-a-time"),
         prepare=interactions("user_id,item_id,ts\n1,10,2024-01-01 10:00:00\n2,11,not-a-time\n")),
    Case("recommend-header-only", RECOMMEND, ("interactions",), prepare=interactions("user_id,item_id\n")),
    Case("recommend-empty-file", RECOMMEND, ("interactions.csv",), prepare=interactions("")),
    Case("recommend-bad-k", (*RECOMMEND, "--k", "0"), ("--k",), prepare=interactions(INTERACTIONS)),
    # non-ASCII names: they just work
    Case("snapshot-non-ascii-names", (*SNAP, "--entity", "clients"), outcome="accepted",
         prepare=non_ascii_clients, check=names_intact),
    # an unwritable warehouse
    Case("snapshot-warehouse-under-a-file",
         ("snapshot", "--warehouse", "{in}/a_file/wh", "--ds", DS, "--entity", "changes",
          "--source", "{in}/changes.csv", "--key", "id"), ("a_file",), prepare=under_a_file),
    Case("snapshot-read-only-warehouse", GENERIC, ("{wh}",), prepare=read_only_warehouse, unwritable_by_chmod=True),
    Case("generate-out-under-a-file", ("generate", "--out", "{in}/a_file/wh", "--days", "1"), ("a_file",),
         prepare=under_a_file),
    Case("query-csv-under-a-file", ("query", *WH, "select 1 as x", "--csv", "{in}/a_file/out.csv"), ("a_file",),
         prepare=under_a_file),
]


# ---------------------------------------------------------------------------------------------
# what every case must leave behind


def partial_partitions(root: Path) -> list[str]:
    """Leftovers of an interrupted or refused publish under `root`: staging and trash folders,
    publish locks, run records, and ds= folders without _SUCCESS (a model folder is whole when it
    has its metrics; report folders are not tables)."""
    found = []
    if not root.is_dir():
        return found
    for path in root.rglob("*"):
        name, rel = path.name, path.relative_to(root)
        if name.startswith(("_staging_", "_trash_", "_lock_")):
            found.append(str(rel))
        elif path.parent.name == "_runs" and name.endswith(".json"):
            found.append(str(rel))
        elif path.is_dir() and name.startswith("ds=") and rel.parts[0] != "reports":
            whole = (path / "metrics.json").exists() if rel.parts[0] == "models" else (path / "_SUCCESS").exists()
            if not whole:
                found.append(str(rel))
    return found


def published(root: Path) -> set[str]:
    """The published partitions outside dq (whose logs a refused run may append to)."""
    return {str(p.parent.relative_to(root)) for p in root.rglob("_SUCCESS")
            if p.parent.name.startswith("ds=") and p.relative_to(root).parts[0] != "dq"} if root.is_dir() else set()


def fingerprint(*folders: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in folders if folder.is_dir() for p in sorted(folder.rglob("*")) if p.is_file()}


def input_rows(*folders: Path) -> int:
    rows = 0
    for folder in folders:
        for path in folder.rglob("*") if folder.is_dir() else ():
            if path.suffix == ".csv":
                rows += max(_csv_rows(path), 0) if path.stat().st_size else 0
            elif path.suffix == ".parquet":
                try:
                    rows += pq.ParquetFile(path).metadata.num_rows
                except Exception:  # noqa: BLE001 - the corrupt file of its case
                    pass
    return rows


def chmod_binds(folder: Path) -> bool:
    """Whether a read-only folder refuses writes here (not for root, nor CAP_DAC_OVERRIDE)."""
    probe = folder / ".probe"
    try:
        probe.write_text("x")
    except PermissionError:
        return True
    probe.unlink()
    return False


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """Small generated replicas (two load days), made once; cases copy what they need."""
    from jobs.generator.generate import generate_demo

    out = tmp_path_factory.mktemp("bad_input_sources")
    generate_demo(out=str(out), start=START, days=2, seed=1, scale="small")
    return out / "raw"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, spark, raw, warehouse, tmp_path, monkeypatch, capsys):
    from jobs import cli

    inputs = tmp_path / "in"
    inputs.mkdir()
    for key, value in case.env:
        monkeypatch.setenv(key, value)
    if case.prepare:
        case.prepare(warehouse, inputs, raw)
    if case.unwritable_by_chmod and not chmod_binds(warehouse):
        warehouse.chmod(0o755)
        RESULTS[case.id] = {"outcome": "skipped"}
        pytest.skip("chmod does not stop writes for this user (root): the cases with a warehouse under a "
                    "regular file cover an unwritable warehouse instead")
    argv = [a.format(wh=warehouse, **{"in": inputs}) for a in case.argv]
    before, inputs_before = published(warehouse), fingerprint(inputs, warehouse / "raw")
    capsys.readouterr()
    try:
        code = cli.main(argv)
    finally:
        warehouse.chmod(0o755)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    partial = partial_partitions(warehouse) + partial_partitions(inputs)
    intact = fingerprint(inputs, warehouse / "raw") == inputs_before
    record = {"outcome": "unclear", "partial": len(partial), "lost": 0, "line": lines[0] if lines else ""}
    RESULTS[case.id] = record
    if not intact:  # a refused run must leave its input as it was
        record["lost"] = input_rows(inputs, warehouse / "raw") or 1
    if case.outcome == "refused":
        assert code == 2, f"exit {code}: {err}"
        assert len(lines) == 1 and lines[0].startswith(f"ostap {case.command}: error: "), err
        for name in case.names:
            assert name.format(wh=warehouse) in lines[0], f"{name!r} not named in: {lines[0]}"
        assert published(warehouse) == before, "a refused run published a partition"
        record["outcome"] = "refused"
    else:
        assert code == 0, err
        read, kept, quarantined = case.check(warehouse, inputs)
        record["lost"] = read - kept - quarantined
        assert (read, quarantined > 0) == (kept + quarantined, case.outcome == "quarantined")
        record["outcome"] = case.outcome
    assert intact, "the case's input files changed"
    assert published(warehouse) >= before
    assert partial == [], partial
    assert record["lost"] == 0


def test_figures():
    """The figures of the README's Reliability section (run with the whole module)."""
    missing = [c.id for c in CASES if c.id not in RESULTS]
    if missing:
        pytest.skip(f"run the whole module for the figures ({len(missing)} cases did not run)")
    outcomes = [r["outcome"] for r in RESULTS.values()]
    figures = {
        "cases tried": sum(o != "skipped" for o in outcomes),
        "refused clearly (exit 2, one line)": outcomes.count("refused"),
        "quarantined (exit 0, rows in dq)": outcomes.count("quarantined"),
        "accepted intact": outcomes.count("accepted"),
        "skipped": outcomes.count("skipped"),
        "partial partitions left": sum(r.get("partial", 0) for r in RESULTS.values()),
        "rows lost": sum(r.get("lost", 0) for r in RESULTS.values()),
    }
    print("\n" + "\n".join(f"{case_id:<36} {r['outcome']:<11} {r.get('line', '')[:200]}"
                           for case_id, r in RESULTS.items()))
    print("\n".join(f"{name:<38}{value:>4}" for name, value in figures.items()))
    assert outcomes.count("unclear") == 0, [k for k, r in RESULTS.items() if r["outcome"] == "unclear"]
    assert figures["partial partitions left"] == 0
    assert figures["rows lost"] == 0
