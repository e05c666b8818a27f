"""`ostap targets`: placeholder, being written in this session."""

HELP = "targets (not yet available)"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise NotImplementedError
