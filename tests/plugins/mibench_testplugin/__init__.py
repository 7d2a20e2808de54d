"""A third-party plug-in as a user would write one — one attack file and one metric file — found
through the `mibench.plugins` entry point (see the .dist-info beside this package). Nothing under
`mibench/` knows these names."""

from __future__ import annotations


def register() -> None:
    """Entry point: importing the two modules registers their kinds."""
    from mibench_testplugin import brightness, prior_sampling  # noqa: F401
