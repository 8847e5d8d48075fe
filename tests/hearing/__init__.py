"""A small CLAP-like model that hears generated sounds: generators (sounds.py), builder."""
