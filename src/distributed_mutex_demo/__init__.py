"""The weather demo of DistributedMutex: N identical instances, one leader that fetches the weather
into MySQL or SQLite, workers that read the newest rows. It uses the library exactly as any user
would (``import DistributedMutex``); the library never imports it.

    config.py, backend_settings.py  the settings (environment, .env, constant.py), checked
    cli.py                          the program: ``distributed-mutex-demo`` or
                                    ``python src/DistributedMutex/test.py``
    app.py                          the leader's and the workers' tasks
    weather.py, open_meteo.py       the two weather APIs' clients
    stores/                         MySQL and SQLite, with the fencing check
    weather_metrics.py              the election's metrics and the app's (rows written)
    metrics_server.py               /metrics and /healthz (METRICS_PORT)
    demo.py                         ``make demo``: instances under a live panel, failovers to watch
    errors.py                       the demo's own exceptions
"""
