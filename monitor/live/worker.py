"""Running the Faust app as a process: engine, metrics endpoint, Faust worker.

Who calls what: ``sla-monitor worker`` (:func:`monitor.live.cli.cmd_worker`) and the demo call
:func:`run_worker`, which blocks until SIGTERM or SIGINT (Faust's worker installs the signal
handlers, stops the agents, flushes the producer and commits before exiting). A RocksDB
worker that did not get that far rebuilds its escalation tables from the changelog on its next
start (:func:`monitor.live.faust_fixes.rebuild_store_after_crash`; the SLA table is never
ahead of its changelog and is kept).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from typing import Any

from monitor.engine import SlaEngine
from monitor.kpi.metrics import KpiMetrics
from monitor.live import faust_fixes
from monitor.live.app import FactCallback, create_app
from monitor.live.clock import wall_clock
from monitor.live.config import Settings
from monitor.live.preflight import check_broker
from monitor.metrics import SlaMetrics
from monitor.policy import load_policy_set
from monitor.timeutil import Micros


def build_engine(settings: Settings) -> SlaEngine:
    """Loads the policies (raises PolicyError on a bad file: the worker must not start)."""
    return SlaEngine(load_policy_set(settings.policies))


def run_worker(
    settings: Settings,
    *,
    wall: Callable[[], Micros] = wall_clock,
    on_fact: FactCallback | None = None,
    setup: Callable[[Any], None] | None = None,
    quiet: bool = False,
) -> None:
    """Builds the app and runs it until a signal. ``setup(app)`` may add tasks (the demo)."""
    from faust.worker import Worker  # noqa: PLC0415 - Faust is heavy to import
    from prometheus_client import start_http_server  # noqa: PLC0415

    engine = build_engine(settings)
    # A wrong password or an unreachable broker stops start-up here, with one line.
    asyncio.run(check_broker(settings, settings.connect_timeout))
    metrics = SlaMetrics(topics=settings.input_topics)
    if settings.metrics_port:
        start_http_server(settings.metrics_port)
    app = create_app(
        settings, engine, metrics, wall=wall, on_fact=on_fact, kpi_metrics=KpiMetrics()
    )
    if setup is not None:
        setup(app)
    level = "warning" if quiet else settings.log_level
    worker = Worker(app, loglevel=level, quiet=True, redirect_stdouts=False)
    if quiet or not sys.stdout.isatty():
        # Faust's start-up spinner writes cursor escapes into logs and the demo's output.
        worker.spinner = None
    if quiet:
        # Faust's own INFO chatter (rebalances, recovery tables) drowns the demo's output.
        logging.getLogger("faust").setLevel(logging.WARNING)
    stopped_cleanly = faust_fixes.rebuild_store_after_crash(app, keep=settings.table_name)
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        # Faust exits 0 after it stopped the agents, flushed the producer and committed.
        if exit_.code in (0, None):
            stopped_cleanly()
        raise
