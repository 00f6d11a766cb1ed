"""Service-quality KPIs of contracts 004 3.3-3.5 and 001 3.2-3.3, measured per channel and month.

* :mod:`monitor.kpi.availability`: channel availability over the contracted service time
  (004 3.3), from ``channel.status`` events;
* :mod:`monitor.kpi.quality`: first-contact resolution (004 3.4, 001 3.2) and satisfaction
  (004 3.5, 001 3.3), from ticket, session and rating events;
* :mod:`monitor.kpi.tracker`: both, fed one event at a time; :func:`monthly_kpis` is the pure
  computation over a list of events that the monthly report calls;
* :mod:`monitor.kpi.metrics`: the same measurements as Prometheus counters.

Who calls what: replay (``sla-monitor replay --kpis``) and, for metrics, the live worker feed a
:class:`KpiTracker` every event the engine accepted (and every ``channel.status``), and move
its clock with :meth:`KpiTracker.advance`. Nothing here reads the clock.
"""

from monitor.kpi.tracker import KpiRow, KpiTracker, by_quarter, monthly_kpis

__all__ = ["KpiRow", "KpiTracker", "by_quarter", "monthly_kpis"]
