"""Program sweeps: the user's own script run as W&B's agent runs it (command macros, environment
protocol, process tree, the record a program trial leaves)."""
