"""Lineage from the manifests publishing writes: the upstream tree of a partition, and the stale
partitions after an input is republished (jobs.warehouse.lineage)."""

from __future__ import annotations

import json
import pathlib

import pytest

from jobs.cli import main
from jobs.core import pii

D1, D2 = "2024-01-01", "2024-01-02"


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
        yield _build_chain(warehouse, generate_demo)


def _build_chain(warehouse, generate_demo):
    generate_demo(out=str(warehouse), start=D1, days=2, seed=3, scale="small")
    ostap_run = [("snapshot", "--entity", "clients", "--ds", D1), ("snapshot", "--entity", "clients", "--ds", D2),
                 ("snapshot", "--entity", "contracts", "--ds", D2), ("snapshot", "--entity", "applications", "--ds", D2),
                 ("targets", "--ds", D2, "--outcome-window-days", "0")]
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


def test_republishing_an_input_makes_exactly_what_was_built_from_it_stale(chain, capsys):
    assert ostap(capsys, "lineage", "stale").startswith("nothing is stale")
    ostap(capsys, "snapshot", "--entity", "clients", "--ds", D1, "--full")  # a rerun of one entity and day
    found = json.loads(ostap(capsys, "lineage", "stale", "--json"))
    assert [(f["table"], f["partition"]) for f in found] == [
        ("ods.clients", D2), ("state.clients", D2), ("marts.scoring_targets", D2), ("marts.target_recovery", D2)]
    assert "state.clients 2024-01-01 is run" in found[0]["why"]
    assert found[0]["rebuild"] == f"airflow tasks clear ods_snapshot_daily -t '^snapshot_clients$' -s {D2} -e {D2} -y"
    assert found[2]["rebuild"] == f"airflow tasks clear scoring_targets_daily -s {D2} -e {D2} -y"
    assert json.loads(ostap(capsys, "lineage", "stale", "--json", "--since", "2024-01-03")) == []
    # Rebuilding in the printed order leaves nothing stale.
    ostap(capsys, "snapshot", "--entity", "clients", "--ds", D2)
    ostap(capsys, "targets", "--ds", D2, "--outcome-window-days", "0")
    assert ostap(capsys, "lineage", "stale").startswith("nothing is stale")
