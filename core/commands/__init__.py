"""CLI sub-commands: each module has ``add_parser(subparsers)`` that sets ``func(args) -> int``."""
