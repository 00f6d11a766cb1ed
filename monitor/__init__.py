"""sla-monitor: an event-streaming SLA monitor for customer service.

The package is split in two halves:

* a pure core with no Kafka and no clock: :mod:`monitor.calendar` (working time),
  :mod:`monitor.policy` (contract rules as data), :mod:`monitor.engine` (SLA state machines);
* thin adapters at the edge: :mod:`monitor.replay`, :mod:`monitor.live` (Faust worker),
  :mod:`monitor.metrics` and :mod:`monitor.cli`.
"""

__version__ = "0.1.0"
