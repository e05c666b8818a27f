"""`ostap validate`: placeholder, being written in this session."""

HELP = "validate (not yet available)"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise NotImplementedError
