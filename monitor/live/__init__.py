"""The live half of sla-monitor: a Faust worker over Kafka (or the embedded Tansu broker).

Modules, and who uses them:

* :mod:`~monitor.live.config`  settings from ``SLA_*`` environment variables and a TOML file;
* :mod:`~monitor.live.app`     ``create_app(settings, engine, metrics)``: agent, table, timers;
* :mod:`~monitor.live.clock`   the per-partition hybrid (wall / event-time) clock;
* :mod:`~monitor.live.topics`  ``sla-monitor topics``: create and check co-partitioned topics;
* :mod:`~monitor.live.broker`  the embedded Tansu broker, and what Faust needs on it;
* :mod:`~monitor.live.worker`  running the app as a process (metrics endpoint, signals);
* :mod:`~monitor.live.demo`    ``sla-monitor demo``: broker + topics + worker + live traffic;
* :mod:`~monitor.live.cli`     ``add_<cmd>_args`` / ``cmd_<cmd>`` for :mod:`monitor.cli`.
"""
