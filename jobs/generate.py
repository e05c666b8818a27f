"""`ostap generate`: placeholder until the generator lands (being written now)."""

HELP = "generate demo ODS replicas for every source entity"


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    raise NotImplementedError
