"""The scheduler workaround keeps one pending wake-up however often a round asks for one."""
import threading

from svf.pipeline import scheduler_fix


class FakeScheduler:
    def __init__(self):
        self._open_jobs = threading.Semaphore(0)


def wake_ups(semaphore):
    count = 0
    while semaphore.acquire(blocking=False):
        count += 1
    return count


def test_many_requests_start_one_daemon_timer_and_wake_once():
    scheduler = FakeScheduler()
    for _ in range(50):  # fifty finished jobs each ending a round
        scheduler_fix.one_pending_reevaluation(scheduler, 0.2)
    timer = scheduler._svf_reevaluation
    assert timer.daemon and timer.is_alive()
    timer.join(2)
    assert wake_ups(scheduler._open_jobs) == 1
    scheduler_fix.one_pending_reevaluation(scheduler, 0.05)  # the next round may ask again once it fired
    scheduler._svf_reevaluation.join(2)
    assert scheduler._svf_reevaluation is not timer and wake_ups(scheduler._open_jobs) == 1


def test_installs_on_this_snakemake_and_only_where_the_method_exists(monkeypatch):
    from snakemake.scheduling.job_scheduler import JobScheduler

    original = JobScheduler.__dict__[scheduler_fix.METHOD]
    monkeypatch.setattr(JobScheduler, scheduler_fix.METHOD, original)  # restored after the test
    assert scheduler_fix.coalesce_scheduler_reevaluations()
    assert getattr(JobScheduler, scheduler_fix.METHOD) is scheduler_fix.one_pending_reevaluation
    monkeypatch.setattr(scheduler_fix, "METHOD", "no_such_method")
    assert not scheduler_fix.coalesce_scheduler_reevaluations()
    assert not hasattr(JobScheduler, "no_such_method")
