"""`python -m mibench` (used by `torchrun … -m mibench run …`)."""

from mibench.cli import main

main()
