"""spark-submit entry point: `spark-submit bin/spark_app.py <ostap command and options>`.

Kept outside the `jobs` package so the script's folder (which Python puts first on sys.path)
holds no module that could shadow a library. The code it runs is the same `ostap` CLI.
"""

import sys

from jobs.cli import main

if __name__ == "__main__":
    sys.exit(main())
