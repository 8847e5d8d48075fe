"""The configuration file: schema, loader with line numbers, write-back."""
