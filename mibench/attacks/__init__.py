"""Attacks: the shared pipeline (`base`), access levels, and PPA, IF-GMI and LOKT."""

# Importing these modules registers the attacks.
from mibench.attacks import ifgmi, lokt, ppa  # noqa: F401
