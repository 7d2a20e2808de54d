"""Attacks: the shared pipeline (`base`), access levels and one module per attack. Every module
here is imported by `mibench.registry.load_builtins`, which registers the attacks."""
