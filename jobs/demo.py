"""`ostap demo`: the whole pipeline on generated demo data (the README's main command)."""

HELP = "generate medium demo sources and run the whole pipeline on them"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise NotImplementedError
