"""The framework's ceiling for ``sla-monitor bench --live``: a bare Faust agent that only counts.

Who calls what: :mod:`monitor.live.bench` starts :func:`main` as a subprocess (``python -m
monitor.live.ceiling``) with the worker's own ``SLA_*`` settings, on the same backlog, and
reads its ``sla_input_messages_total`` counter from ``/metrics`` exactly as it reads the
worker's. The agent subscribes to the same input topics with the same consumer settings
(:func:`monitor.live.app.faust_settings`, the same fetch wait) and does nothing per event but
count it, so ``worker ÷ ceiling`` is what the SLA work costs beyond Faust's own per-message
cost. With ``--direct`` it takes the worker's own hand-overs
(:mod:`monitor.live.direct_delivery`) instead of Faust's: what Faust costs once the worker has
cut its per-record machinery, so the bench shows how much of the worker's ratio that cut
bought. Nothing of it runs in production.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from monitor.live.app import faust_settings
from monitor.live.config import Settings, load_settings


def build_ceiling_app(settings: Settings, *, direct: bool = False) -> Any:
    """A Faust app with one agent over the input topics that counts raw events. ``direct``:
    with the worker's own hand-overs (:mod:`monitor.live.direct_delivery`) instead of
    Faust's, so that the bench can also say how much of the worker's speed is those."""
    import faust  # noqa: PLC0415 - heavy, and only this subprocess needs it
    from prometheus_client import Counter  # noqa: PLC0415

    from monitor.live import faust_fixes  # noqa: PLC0415
    from monitor.live.direct_delivery import install, take_waiting  # noqa: PLC0415

    conf = {**faust_settings(settings), "store": "memory://"}
    app: Any = faust.App(f"{settings.app_id}-ceiling", **conf)
    counted = Counter("sla_input_messages", "input records counted by the bare agent")
    topic = app.topic(
        *settings.input_topics,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
    )

    async def count(stream: Any) -> None:
        async for _event in stream.events():
            counted.inc()
            if direct:  # and the records waiting behind it, acknowledged as the worker does
                for event in take_waiting(stream, settings.batch_max):
                    counted.inc()
                    await stream.ack(event)

    app.agent(topic, name=f"{settings.app_id}.ceiling", concurrency=1)(count)
    faust_fixes.apply(app, fetch_max_wait=settings.fetch_max_wait)
    if direct:
        install(app)
    return app


def main() -> None:
    from faust.worker import Worker  # noqa: PLC0415
    from prometheus_client import start_http_server  # noqa: PLC0415

    settings = load_settings()
    start_http_server(settings.metrics_port)
    app = build_ceiling_app(settings, direct="--direct" in sys.argv[1:])
    worker = Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    worker.spinner = None
    logging.getLogger("faust").setLevel(logging.WARNING)
    sys.argv = sys.argv[:1]
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
