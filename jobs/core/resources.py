"""Where the project's SQL and Great Expectations suites are: inside the installed package
(jobs/sql, jobs/expectations: a wheel or a non-editable install, as in the Docker image) or,
in a checkout, the repository's top-level sql/ and expectations/ folders."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]  # jobs/


def resource_dir(name: str) -> Path:
    """The folder `name` ("sql" or "expectations") as installed, else the checkout's."""
    installed = _PACKAGE / name
    if installed.is_dir():
        return installed
    return _PACKAGE.parent / name
