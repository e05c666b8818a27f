"""`ostap recommend`: placeholder, being written in this session."""

HELP = "recommend (not yet available)"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise NotImplementedError
