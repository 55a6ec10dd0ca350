"""Schedulers whose jobs run on the leader only, one module per scheduler, each needing its extra:

    DistributedMutex.integrations.apscheduler   LeaderScheduler: an APScheduler 3 scheduler paused on
                                                every replica and resumed on the leader (extra: apscheduler)
    DistributedMutex.integrations.celery        LeaderScheduler: a Celery beat scheduler that sends due
                                                tasks only while its process leads, with the term in
                                                each message's headers; TermCheckedTask (extra: celery)

Nothing here is imported by ``import DistributedMutex``: each module is imported only when asked for,
so that neither scheduler is loaded by those who do not use it.
"""
