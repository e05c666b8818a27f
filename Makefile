# The two set-up commands of the README:
#   make demo   install into .venv and run the whole pipeline on generated demo data
#   make test   install into .venv and run the fast test tier (a few minutes)
# and the rest of the suite: make test-e2e (end to end), make check (both; what .ci/run calls).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The Spark driver JVM's class-data-sharing archive (`ostap jvm-archive`, jobs/local/jvm_archive.py).
JVM_ARCHIVE := $(VENV)/share/ostap/spark-driver.jsa
export GX_ANALYTICS_ENABLED := false
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test test-e2e check install lint constraints clean airflow services redis-server

install: $(STAMP) $(JVM_ARCHIVE)

$(STAMP): constraints.txt setup.cfg pyproject.toml
	@command -v java >/dev/null || { echo "Java 17 is needed by Spark: apt-get install -y openjdk-17-jre-headless"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip>=24" "setuptools>=68" wheel
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Made by a real training run after each (re)install, as it is tied to the JVM and the jars. Jobs
# run without it (only slower to start), so a failure here warns instead of stopping the install.
$(JVM_ARCHIVE): $(STAMP)
	$(BIN)/ostap jvm-archive --out $(JVM_ARCHIVE) \
	  || echo "warning: no JVM class archive; Spark drivers start without it (rerun: $(BIN)/ostap jvm-archive)"

# Debian's Redis server for the serving layer (ostap serve, its tests and benchmark); the
# tests and the demo start their own instance on a free loopback port.
services:
	@command -v redis-server >/dev/null || $(MAKE) --no-print-directory redis-server

redis-server:
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null \
	  || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server; } \
	  || { echo "could not install redis-server: run apt-get install redis-server as root"; exit 1; }

demo: install services
	$(BIN)/ostap demo

PYTEST := $(BIN)/python -m pytest -q --durations=15

# Every job's semantics on small data in one shared SparkSession, the quality gates, serving
# against a real Redis, DAG integrity and the rendered spark-submit commands.
test: install services
	$(PYTEST) -m "not slow"

# spark-submit, the Airflow scheduler and backfills, kill -9 during a publish, racing publishers,
# the standalone cluster, and the property tests with more examples.
test-e2e: install services
	$(PYTEST) -m "slow or property" --hypothesis-profile=thorough

check: test test-e2e

# The Airflow UI with the project's DAGs (standalone, SQLite, LocalExecutor).
airflow: install
	$(BIN)/python -m jobs.local.airflow_local

lint: $(STAMP)
	$(BIN)/ruff check jobs dags tests bench

# Re-resolve the pinned set (needs the registries; review the diff before committing).
constraints:
	rm -rf /tmp/ostap-resolve && $(PYTHON) -m venv /tmp/ostap-resolve
	/tmp/ostap-resolve/bin/pip install -q -e '.[dev]'
	/tmp/ostap-resolve/bin/pip freeze --exclude-editable | grep -v '^ostap' > constraints.txt.new
	@echo "review constraints.txt.new and move it over constraints.txt"

clean:
	rm -rf $(VENV) warehouse *.egg-info
