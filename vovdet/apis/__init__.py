"""Library side of the command-line tools (the tools only call these)."""
