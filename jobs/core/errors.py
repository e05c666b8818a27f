"""Errors a user can act on. The CLI prints them as one line (what, where, what to do)."""


class OstapError(Exception):
    """An error with a message fit for the user; the CLI shows it without a traceback."""


class BadInputError(OstapError):
    """Input data or options that the job refuses; nothing was published."""


class DataQualityError(OstapError):
    """A data-quality gate failed; nothing was published."""
