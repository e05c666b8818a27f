"""`ostap snapshot`: placeholder, being written in this session."""

HELP = "snapshot (not yet available)"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise NotImplementedError
