"""spark-submit entry point: `spark-submit jobs/bin/spark_app.py <ostap command and options>`.

Its folder is not a package and holds no module: Python puts the script's folder first on
sys.path, where a module such as jobs/airflow/ would shadow the library of that name. The code it
runs is the same `ostap` CLI.
"""

import sys

from jobs.cli import main

if __name__ == "__main__":
    sys.exit(main())
