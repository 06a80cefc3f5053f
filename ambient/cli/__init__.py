"""The command line: argument parsing only; each subcommand module hands off to the package."""
