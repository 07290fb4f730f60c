"""The `popplast` command: a table of commands (main.py) and their flags (flags.py), one handler for
PopplastError."""
