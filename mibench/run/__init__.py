"""Runs: what to run (`spec`), the run folder (`folder`), executing one run (`execute`), its entry
(`entry`), the printed table (`table`) and many runs at once (`suite`)."""

from mibench.run.entry import Entry, finalize  # noqa: F401
from mibench.run.execute import resolve_device, run_one  # noqa: F401
from mibench.run.folder import RunFolder  # noqa: F401
from mibench.run.spec import ResolvedRun, RunSpec, parse_classes, resolve  # noqa: F401
