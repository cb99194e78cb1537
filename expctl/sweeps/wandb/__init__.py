"""W&B: the adapter to W&B's sweep server, a trial under W&B's agent, and reading a program's
metric back from its W&B run files."""
