"""Lineage from the manifests publishing writes: the upstream tree of a partition, and the stale
partitions after an input is republished (jobs.warehouse.lineage)."""

from __future__ import annotations

import json
import logging
import os
import pathlib

import pytest

from jobs.cli import main
from jobs.core import pii

D1, D2 = "2024-01-01", "2024-01-02"
# What the OpenLineage provider's lineage_parent_id macro renders for an Airflow task.
AIRFLOW_TASK_RUN = "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
AIRFLOW_PARENT = f"airflow/scoring_targets_daily.targets/{AIRFLOW_TASK_RUN}"


def ostap(capsys, *argv) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 0, capsys.readouterr().err
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def chain(spark, tmp_path_factory):
    """clients snapshotted on D1 and (incrementally) D2, contracts and applications on D2, targets on
    D2; one warehouse for the module (the stale test, which republishes, runs last)."""
    from jobs.generator.generate import generate_demo

    warehouse = tmp_path_factory.mktemp("lineage_warehouse")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(pii.KEY_ENV, "lineage-test-key-0123456789")
        patch.setenv("OSTAP_WAREHOUSE", str(warehouse))
        for name in [n for n in os.environ if n.startswith("OPENLINEAGE")]:
            patch.delenv(name)  # the default: events appended to a file under the warehouse
        yield _build_chain(warehouse, generate_demo)


def _build_chain(warehouse, generate_demo):
    generate_demo(out=str(warehouse), start=D1, days=2, seed=3, scale="small")
    ostap_run = [("snapshot", "--entity", "clients", "--ds", D1), ("snapshot", "--entity", "clients", "--ds", D2),
                 ("snapshot", "--entity", "contracts", "--ds", D2), ("snapshot", "--entity", "applications", "--ds", D2),
                 ("targets", "--ds", D2, "--outcome-window-days", "0", "--lineage-parent", AIRFLOW_PARENT)]
    for argv in ostap_run:
        assert main(list(argv)) == 0, argv
    return warehouse


def test_the_tree_of_a_partition_goes_down_to_the_raw_folders(chain, capsys):
    node = json.loads(ostap(capsys, "lineage", "scoring_targets", "--ds", D2, "--json"))
    assert node["table"] == "marts.scoring_targets" and node["job"] == "targets" and node["run_id"]
    inputs = {child["table"]: child for child in node["inputs"]}
    assert set(inputs) == {"ods.contracts", "ods.clients", "ods.applications"}
    clients = inputs["ods.clients"]
    assert clients["read_run_id"] == clients["run_id"] and not clients["stale"]
    assert {(c["table"], c["partition"]) for c in clients["inputs"]} == {("raw.clients", f"load_date={D2}"),
                                                                         ("state.clients", D1)}
    [state] = [c for c in clients["inputs"] if c["table"] == "state.clients"]
    assert [(c["table"], c["partition"]) for c in state["inputs"]] == [("raw.clients", f"load_date<={D1}")]
    text = ostap(capsys, "lineage", "marts.scoring_targets", "--ds", D2)
    assert text.splitlines()[0].startswith(f"marts.scoring_targets {D2} run {node['run_id']} built ")
    assert f"    raw.clients load_date<={D1}" in text


def test_every_manifest_names_its_job_code_options_inputs_and_verdict(chain):
    manifest = json.loads((chain / "marts" / "scoring_targets" / f"ds={D2}" / "_RUN.json").read_text())
    assert manifest["job"] == "targets" and manifest["args"]["outcome_window_days"] == 0
    assert manifest["versions"]["pyspark"] and "git_commit" in manifest["code"]
    assert manifest["quality"]["passed"] is True and manifest["rows"] == manifest["quality"]["rows"] > 0
    assert {i["table"] for i in manifest["inputs"]} == {"ods.contracts", "ods.clients", "ods.applications"}
    assert all(i["run_id"] for i in manifest["inputs"])
    from jobs.warehouse import report

    page = pathlib.Path(report.write_run_report(str(chain), D2)).read_text()
    clients_run = json.loads((chain / "ods" / "clients" / f"ds={D2}" / "_RUN.json").read_text())["run_id"]
    assert f"<td>marts.scoring_targets</td><td>{manifest['run_id']}</td>" in page
    assert f"ods.clients {D2} (run {clients_run})" in page


def lineage_events(warehouse) -> list[dict]:
    return [json.loads(line) for line in (warehouse / "_lineage" / "openlineage.jsonl").read_text().splitlines()]


def test_a_targets_run_sends_openlineage_events_with_its_inputs_outputs_rows_and_parent(chain):
    manifest = json.loads((chain / "marts" / "scoring_targets" / f"ds={D2}" / "_RUN.json").read_text())
    events = [e for e in lineage_events(chain) if e["run"]["facets"]["ostap"]["runId"] == manifest["run_id"]]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    start, complete = events
    assert (start["job"]["namespace"], start["job"]["name"]) == ("ostap", "ostap.targets")
    assert complete["job"]["facets"]["jobType"]["processingType"] == "BATCH"
    assert start["run"]["runId"] == complete["run"]["runId"]
    parent = complete["run"]["facets"]["parent"]
    assert parent["run"]["runId"] == AIRFLOW_TASK_RUN
    assert (parent["job"]["namespace"], parent["job"]["name"]) == ("airflow", "scoring_targets_daily.targets")
    assert complete["run"]["facets"]["nominalTime"]["nominalStartTime"].startswith(D2)

    warehouse_uri = chain.resolve().as_uri()
    inputs = {d["name"]: d for d in complete["inputs"]}
    assert set(inputs) == {"ods.contracts", "ods.clients", "ods.applications"}
    assert {d["namespace"] for d in complete["inputs"] + complete["outputs"]} == {warehouse_uri}
    clients_run = json.loads((chain / "ods" / "clients" / f"ds={D2}" / "_RUN.json").read_text())["run_id"]
    assert inputs["ods.clients"]["facets"]["version"]["datasetVersion"] == clients_run
    [partition] = inputs["ods.clients"]["inputFacets"]["subset"]["inputCondition"]["partitions"]
    assert partition["dimensions"] == {"ds": D2}

    outputs = {d["name"]: d for d in complete["outputs"]}
    assert set(outputs) == {"marts.scoring_targets", "marts.target_recovery"}
    targets = outputs["marts.scoring_targets"]
    assert targets["outputFacets"]["outputStatistics"]["rowCount"] == manifest["rows"] > 0
    columns = {f["name"]: f["type"] for f in targets["facets"]["schema"]["fields"]}
    assert "ds" not in columns and columns["contract_id"] and "phone_hash" in columns
    assertions = targets["facets"]["dataQualityAssertions"]["assertions"]
    assert len(assertions) == manifest["quality"]["expectations"] and all(a["success"] for a in assertions)
    assert {"assertion": "expect_column_values_to_not_be_null", "column": "contract_id"} in [
        {k: a.get(k) for k in ("assertion", "column")} for a in assertions]
    assert not start["outputs"] and not start["inputs"]


def test_a_failed_run_sends_fail_with_its_error(chain, capsys):
    assert main(["targets", "--ds", "2024-03-01", "--outcome-window-days", "0"]) != 0
    [fail] = [e for e in lineage_events(chain) if e["eventType"] == "FAIL"]
    assert fail["job"]["name"] == "ostap.targets"
    assert "2024-03-01" in fail["run"]["facets"]["errorMessage"]["message"]
    assert fail["run"]["facets"]["errorMessage"]["programmingLanguage"] == "python"


def test_an_unreachable_lineage_backend_costs_one_warning_not_the_job(chain, monkeypatch, caplog, capsys):
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "http")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__RETRY", '{"total": 0, "connect": 0, "read": 0}')
    before = len(lineage_events(chain))
    with caplog.at_level(logging.WARNING, logger="jobs.core.lineage_events"):
        ostap(capsys, "targets", "--ds", D2, "--outcome-window-days", "0")
    warnings = [r for r in caplog.records if r.name == "jobs.core.lineage_events"]
    assert len(warnings) == 1 and "could not send the START event" in warnings[0].getMessage()
    assert len(lineage_events(chain)) == before  # the configured backend, not the default file
    assert (chain / "marts" / "scoring_targets" / f"ds={D2}" / "_SUCCESS").exists()


def test_republishing_an_input_makes_exactly_what_was_built_from_it_stale(chain, capsys):
    assert ostap(capsys, "lineage", "stale").startswith("nothing is stale")
    ostap(capsys, "snapshot", "--entity", "clients", "--ds", D1, "--full")  # a rerun of one entity and day
    found = json.loads(ostap(capsys, "lineage", "stale", "--json"))
    assert [(f["table"], f["partition"]) for f in found] == [
        ("ods.clients", D2), ("state.clients", D2), ("marts.scoring_targets", D2), ("marts.target_recovery", D2)]
    assert "state.clients 2024-01-01 is run" in found[0]["why"]
    assert found[0]["rebuild"] == f"airflow tasks clear ods_snapshot_daily -t snapshot_clients -s {D2} -e {D2} -y"
    assert found[2]["rebuild"] == f"airflow tasks clear scoring_targets_daily -s {D2} -e {D2} -y"
    assert json.loads(ostap(capsys, "lineage", "stale", "--json", "--since", "2024-01-03")) == []
    # Rebuilding in the printed order leaves nothing stale.
    ostap(capsys, "snapshot", "--entity", "clients", "--ds", D2)
    ostap(capsys, "targets", "--ds", D2, "--outcome-window-days", "0")
    assert ostap(capsys, "lineage", "stale").startswith("nothing is stale")
