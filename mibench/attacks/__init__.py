"""Attacks: the shared pipeline (`base`), access levels, PPA, IF-GMI, LOKT and the no-prior control."""

# Importing these modules registers the attacks.
from mibench.attacks import ifgmi, lokt, noprior, ppa  # noqa: F401
