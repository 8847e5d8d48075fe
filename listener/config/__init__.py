"""The configuration file: schema, loader, problem lines with file:line, write-back."""
