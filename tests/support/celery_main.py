"""`celery` as a script for harness.processes.Instance (which runs a file): ``celery_main.py ARGS``."""

from celery.__main__ import main

main()
