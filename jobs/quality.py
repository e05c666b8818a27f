"""Data-quality gate before every publish (Great Expectations). Placeholder being written now."""


def gate(df, table, ds, run_id=None, root=None) -> None:
    return None
