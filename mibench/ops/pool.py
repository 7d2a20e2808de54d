"""The one worker pool for CPU-parallel work (zoo builds, the default suite, the regression check).

On CPU, work goes to single-threaded worker processes, one per core: on a small CPU that beats one
multi-threaded job at a time, and a fixed thread count keeps CPU results reproducible whatever the
pool size (a job computes the same bytes in a worker and in the calling process). On GPU, and for
a single job, work runs in the calling process.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)


def default_jobs(device: str, n: int) -> int:
    """Workers for `n` jobs: 1 on GPU, else one per core (at most n)."""
    return 1 if str(device).startswith("cuda") else max(1, min(n, os.cpu_count() or 1))


def _worker(fn: Callable[..., Any], args: tuple) -> Any:
    """Process-pool entry: one torch thread, warnings-only logging (progress bars would interleave)."""
    import torch

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    return fn(*args)


def run_jobs(jobs: Sequence[tuple[Callable[..., Any], tuple]], *, device: str = "cpu", workers: int | None = None,
             order: Sequence[int] | None = None, desc: str = "jobs", progress: bool = True,
             on_done: Callable[[int, Any], None] | None = None) -> list[Any]:
    """Run `fn(*args)` for each job and return the results in job order.

    `order` is the order to start them (default: as given); `on_done(index, result)` is called as
    each finishes. On CPU every job runs with one torch thread, in a worker process when more than
    one worker is used; a failed job (or Ctrl-C) stops the pool at once — jobs write their results
    as they go, so finished work is kept."""
    import torch

    workers = default_jobs(device, len(jobs)) if workers is None else max(1, workers)
    order = list(order) if order is not None else list(range(len(jobs)))
    results: list[Any] = [None] * len(jobs)
    if workers <= 1 or len(jobs) <= 1:
        threads = torch.get_num_threads()
        if not str(device).startswith("cuda"):
            torch.set_num_threads(1)
        try:
            for i in order:
                fn, args = jobs[i]
                results[i] = fn(*args)
                if on_done is not None:
                    on_done(i, results[i])
        finally:
            torch.set_num_threads(threads)
        return results
    from tqdm import tqdm

    log.info("%s: %d jobs in %d single-threaded worker processes", desc, len(jobs), workers)
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))
    bar = tqdm(total=len(jobs), desc=desc, unit="job", disable=not progress)
    try:
        futures = {pool.submit(_worker, *jobs[i]): i for i in order}
        for fut in cf.as_completed(futures):
            i = futures[fut]
            results[i] = fut.result()
            if on_done is not None:
                on_done(i, results[i])
            bar.update(1)
    except BaseException:
        # Stop now rather than after the jobs in flight: their finished parts are on disk.
        procs = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            proc.terminate()
        raise
    finally:
        bar.close()
    pool.shutdown()
    return results
