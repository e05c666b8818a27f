"""The registry of every table ostap reads or writes: name, zone, keys, partition column, schema.

Zones (folders under the warehouse root):
  raw     ODS replica change rows as landed, partitioned by load_date
  ods     as-of snapshots, one row per live key, partitioned by ds
  state   incremental snapshot state (last change per key, tombstones included), by ds
  marts   published model outputs that reports read, by ds
  dq      data-quality records (rejects, conflicts, metrics, validation results), by ds

Schemas are Spark DDL strings. `sql/ddl/` holds the CREATE TABLE of every published table,
rendered from this registry (`ostap ddl --write`); a test keeps the two in sync.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jobs.core.errors import OstapError

CDC_COLUMNS = "ods_dt timestamp, ods_seq bigint, ods_type string"

# Personal data of the sources, by entity: column -> kind ("phone" is hashed as the published
# phone_hash is, after normalisation). These values live only in the source zones (raw, ods,
# state); anywhere else they appear as their keyed hash, or masked (jobs.core.pii).
PERSONAL_COLUMNS: dict[str, dict[str, str]] = {
    "clients": {"full_name": "name", "birth_date": "date", "msisdn": "phone"},
    "applications": {"phone": "phone"},
    "tenants": {"tenant_name": "name"},
    "managers": {"manager_name": "name"},
}
SOURCE_ZONES = ("raw", "ods", "state")
CDC_COLUMN_NAMES = ("ods_dt", "ods_seq", "ods_type")

# Payload of every ODS source entity (what the CRM/replica carries besides the CDC columns).
ENTITY_PAYLOADS: dict[str, tuple[tuple[str, ...], str, str]] = {
    # entity: (key columns, payload DDL, description)
    "clients": (
        ("client_id",),
        "client_id bigint, full_name string, birth_date date, msisdn string, region string, "
        "created_at timestamp",
        "Credit clients; msisdn is missing for about 40% of them.",
    ),
    "applications": (
        ("application_id",),
        "application_id bigint, client_id bigint, phone string, created_at timestamp, "
        "amount double, status string",
        "Credit applications; the phone is mandatory here.",
    ),
    "contracts": (
        ("contract_id",),
        "contract_id bigint, client_id bigint, application_id bigint, sign_date date, "
        "amount double, term_months int, bad_flag int",
        "Signed credit contracts; bad_flag = 1 marks a bad outcome.",
    ),
    "stores": (
        ("store_id",),
        "store_id int, store_name string, region string, store_format string, opened_date date",
        "Retail stores.",
    ),
    "sales": (
        ("store_id", "sale_date"),
        "store_id int, sale_date date, sales double, receipts int",
        "Daily sales per store.",
    ),
    "premises": (
        ("premise_id",),
        "premise_id bigint, area double, price double, district string, river_bank string, "
        "vacant boolean, floor int, premise_type string",
        "Commercial premises for lease; price is the monthly rent.",
    ),
    "tenants": (
        ("client_id",),
        "client_id bigint, tenant_name string, business_types string, districts string, "
        "river_bank string, scale string, area_min double, area_max double, budget double, "
        "manager_id int, created_at timestamp",
        "Agency clients looking for space; business_types and districts are '|'-separated lists; "
        "river_bank is left, right or any; budget is the monthly rent they can pay.",
    ),
    "managers": (
        ("manager_id",),
        "manager_id int, manager_name string, hired_date date, fired boolean",
        "Agency managers; fired ones keep their history.",
    ),
    "deals": (
        ("deal_id",),
        "deal_id bigint, client_id bigint, premise_id bigint, manager_id int, created_at timestamp, "
        "status string, signed_at timestamp, monthly_rent double",
        "Lease deals; status is open, signed or lost.",
    ),
    "proposals": (
        ("proposal_id",),
        "proposal_id bigint, client_id bigint, premise_id bigint, manager_id int, "
        "proposed_at timestamp, outcome string",
        "Premises a manager proposed to a tenant; outcome is shown, viewed, rejected or deal.",
    ),
    "page_views": (
        ("view_id",),
        "view_id bigint, client_id bigint, premise_id bigint, viewed_at timestamp, "
        "session_id string, duration_s int",
        "Premise pages viewed on the site by known tenants.",
    ),
    "serve_exposures": (
        ("request_id",),
        "request_id string, served_at timestamp, experiment string, client_id bigint, arm string, "
        "model string, cold_start boolean, version string, item_ids string",
        "Answers of the recommendation API (GET /recommendations) landed from its answer log: the client, "
        "its A/B arm and experiment, the model and Redis version served and the premise ids shown "
        "('|'-separated, in rank order).",
    ),
}

# Sources ostap lands itself (the serving answer log) rather than receives from the CRM's replica:
# snapshotted like the others, but neither generated by `ostap generate` nor in ods_snapshot_daily.
LANDED_ENTITIES = ("serve_exposures",)
ENTITIES = tuple(e for e in ENTITY_PAYLOADS if e not in LANDED_ENTITIES)


@dataclass(frozen=True)
class Table:
    name: str
    zone: str
    keys: tuple[str, ...]
    schema: str  # Spark DDL of the data columns (the partition column excluded)
    partition: str = "ds"
    description: str = ""
    published: bool = True  # published tables get DDL in sql/ddl and GX suites
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def personal(self) -> dict[str, str]:
        """Personal columns of the table (column -> kind); only source-zone tables have them."""
        return PERSONAL_COLUMNS.get(self.name, {}) if self.zone in SOURCE_ZONES else {}

    @property
    def qualified(self) -> str:
        return f"{self.zone}.{self.name}"

    @property
    def pipeline(self) -> str:
        """The pipeline that publishes the table: its suite is expectations/<pipeline>/."""
        if self.zone in ("raw", "ods", "state"):
            return "ods_snapshot"
        if self.zone == "dq":
            return "core"  # written by publishing and the quality gate for every pipeline
        return MART_PIPELINES.get(self.name, "")

    @property
    def column_types(self) -> list[tuple[str, str]]:
        """(name, Spark SQL type) of each column, in schema order (partition column excluded)."""
        return [tuple(part.strip().split(" ", 1)) for part in _split_ddl(self.schema)]

    @property
    def columns(self) -> list[str]:
        return [name for name, _ in self.column_types]

    def spark_schema(self):
        from pyspark.sql.types import StructType

        return StructType.fromDDL(self.schema)

    def path(self, root: str) -> str:
        """The table's folder under the warehouse root (a RunContext's `warehouse`)."""
        return f"{root}/{self.zone}/{self.name}"

    def partition_path(self, value: str, root: str) -> str:
        return f"{self.path(root)}/{self.partition}={value}"


def _split_ddl(ddl: str) -> list[str]:
    """Split 'a int, b decimal(10,2), c array<string>' on top-level commas."""
    parts, depth, current = [], 0, []
    for ch in ddl:
        if ch in "(<":
            depth += 1
        elif ch in ")>":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


def _entity_tables() -> list[Table]:
    tables = []
    for entity, (keys, payload, description) in ENTITY_PAYLOADS.items():
        tables.append(Table(entity, "raw", keys, f"{CDC_COLUMNS}, {payload}", "load_date",
                            f"ODS replica change rows of {entity} as landed. {description}",
                            published=False))
        tables.append(Table(entity, "ods", keys, f"{payload}, ods_dt timestamp, ods_seq bigint", "ds",
                            f"Snapshot of {entity} as of the end of ds: one row per live key. {description}"))
        tables.append(Table(entity, "state", keys, f"{CDC_COLUMNS}, {payload}", "ds",
                            f"Last change per key of {entity} up to ds, tombstones included "
                            "(input of the incremental snapshot).", published=False))
    return tables


MART_PIPELINES = {
    "scoring_targets": "scoring_targets", "target_recovery": "scoring_targets",
    "sales_forecast": "sales_forecast", "forecast_backtest": "sales_forecast", "sales_plan": "sales_forecast",
    "forecast_stores": "sales_forecast",
    "recommendations": "recommendations", "premise_leads": "recommendations", "rec_eval": "recommendations",
    "ab_readout": "abtest",
}

MART_TABLES = [
    Table("scoring_targets", "marts", ("contract_id",),
          "contract_id bigint, client_id bigint, phone_hash string, phone_source string, "
          "sign_date date, target int",
          description="Contracts with observable outcome, linked to a hashed phone (client or application)."),
    Table("target_recovery", "marts", (),
          "contracts bigint, phones_from_clients bigint, phones_from_applications bigint, "
          "contracts_without_phone bigint, positives_clients_only bigint, positives_kept bigint, "
          "positives_ratio double",
          description="How many targets the COALESCE of phones recovers against a Clients-only join."),
    Table("sales_forecast", "marts", ("store_id", "month", "model"),
          "store_id int, month date, model string, yhat double, yhat_lower double, yhat_upper double, "
          "chosen boolean",
          description="Monthly sales forecast per store and model for the horizon from the month of ds."),
    Table("forecast_backtest", "marts", ("store_id", "model"),
          "store_id int, model string, origins int, mape double, wape double, chosen boolean",
          description="Rolling-origin backtest error per store and model."),
    Table("sales_plan", "marts", ("store_id", "month"),
          "store_id int, month date, forecast double, ambition double, plan double",
          description="Business plan per store and month: chosen forecast x ambition."),
    Table("forecast_stores", "marts", ("store_id",),
          "store_id int, status string, history_months int, first_month date, last_sales_month date, "
          "chosen_model string, note string",
          description="Every store of the forecast input and what became of it: status forecast, "
                      "short_history (baseline only), closed or no_history (no forecast rows); note says why."),
    Table("recommendations", "marts", ("user_id", "model", "rank"),
          "user_id bigint, item_id bigint, rank int, score double, model string, arm string",
          description="Top-k premises per tenant from both models; arm is the tenant's A/B arm."),
    Table("premise_leads", "marts", ("item_id", "rank"),
          "item_id bigint, rank int, user_id bigint, score double",
          description="Top tenants per vacant premise."),
    Table("rec_eval", "marts", ("model", "metric"),
          "model string, metric string, k int, value double",
          description="Offline evaluation of the recommenders on a time split."),
    Table("ab_readout", "marts", ("experiment", "metric", "arm"),
          "experiment string, metric string, arm string, value double, ci_low double, ci_high double, "
          "p_value double, n_clients bigint, flags string",
          description="Online A/B readout per experiment, metric and arm (treatment, control, diff, lift, "
                      "needed) over the clients exposed up to ds; flags name what makes it untrustworthy."),
]

DQ_TABLES = [
    Table("rejects", "dq", (), "entity string, reason string, row_json string, run_id string",
          description="Malformed change rows refused by the snapshot job, with the reason."),
    Table("conflicts", "dq", (), "entity string, key_json string, ods_dt timestamp, ods_seq bigint, "
          "row_json string, run_id string",
          description="Changes of one key with equal (ods_dt, ods_seq) but different content."),
    Table("job_metrics", "dq", (), "job string, entity string, mode string, rows_read bigint, "
          "live_keys bigint, deletes_applied bigint, duplicates_collapsed bigint, conflicts bigint, "
          "rejects bigint, seconds double, run_id string, finished_at timestamp",
          description="Figures of every job run."),
    Table("validation_results", "dq", (), "table_name string, suite string, expectation string, "
          "column_name string, severity string, success boolean, observed_value string, run_id string",
          description="Great Expectations results of every validation."),
]

TABLES: dict[str, Table] = {t.qualified: t for t in _entity_tables() + MART_TABLES + DQ_TABLES}


def table(name: str) -> Table:
    """Look a table up by 'zone.name' (or a bare name that is unique across zones)."""
    if name in TABLES:
        return TABLES[name]
    matches = [t for t in TABLES.values() if t.name == name and t.published]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(sorted(t for t in TABLES if TABLES[t].published))
    raise OstapError(f"unknown table {name!r}; known tables: {known}")


def entity_keys(entity: str) -> tuple[str, ...]:
    if entity not in ENTITY_PAYLOADS:
        raise OstapError(f"unknown entity {entity!r}; known entities: {', '.join(ENTITIES)} "
                         "(or pass --source and --key for any other replica)")
    return ENTITY_PAYLOADS[entity][0]


def published_tables() -> list[Table]:
    return [t for t in TABLES.values() if t.published]


def ddl(t: Table) -> str:
    """CREATE TABLE statement for a table (Spark SQL; LOCATION relative to the warehouse root)."""
    cols = ",\n".join(f"  {name} {type_}" for name, type_ in t.column_types)
    return (f"-- {t.description}\n"
            f"-- keys: {', '.join(t.keys) or '(none: an append log)'}\n"
            f"CREATE TABLE IF NOT EXISTS {t.zone}.{t.name} (\n{cols},\n  {t.partition} string\n)\n"
            f"USING parquet\nPARTITIONED BY ({t.partition})\n"
            f"LOCATION '${{warehouse}}/{t.zone}/{t.name}';\n")
