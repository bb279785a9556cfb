"""A workaround for Snakemake's scheduler polling, which grows with every finished job (measured in
docs/measurements.md, "Snakemake's own CPU").

Snakemake 9's local scheduler ends each scheduling round by starting a ``threading.Timer`` that wakes it again
after ``--max-jobs-per-timespan``'s timespan (1 s by default). Every finished job wakes it once more, so every
finished job starts one more timer chain that never ends: after N jobs the scheduler runs about N rounds per
second, each over every ready job. On the study's 681-job DAG that was a third of a core after 50 jobs, and growing
with every job. A round only needs waking once per timespan, so this keeps one pending timer
(a daemon thread: it does not hold up Snakemake's exit either); rounds that jobs trigger are unchanged.
"""
from __future__ import annotations

import threading

#: The scheduler method this replaces (Snakemake's own spelling).
METHOD = "_schedule_reevalutation"


def one_pending_reevaluation(scheduler, delay: float) -> None:
    """Start the scheduler's re-evaluation timer unless one is already pending."""
    pending = getattr(scheduler, "_svf_reevaluation", None)
    if pending is not None and pending.is_alive():
        return
    timer = threading.Timer(delay, scheduler._open_jobs.release)
    timer.daemon = True
    timer.start()
    scheduler._svf_reevaluation = timer


def coalesce_scheduler_reevaluations() -> bool:
    """Install :func:`one_pending_reevaluation` on Snakemake's JobScheduler; False (and nothing changed) where this
    Snakemake has no such method, e.g. a version that reworked its scheduler."""
    try:
        from snakemake.scheduling.job_scheduler import JobScheduler
    except ImportError:
        return False
    if not callable(getattr(JobScheduler, METHOD, None)):
        return False
    setattr(JobScheduler, METHOD, one_pending_reevaluation)
    return True
