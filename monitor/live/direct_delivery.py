"""Records reach the worker's agent without Faust's per-record task and loop turn, when
nothing could hold them up. Two places of Faust 0.15.3 cost more per record than the SLA work
the agent does with it:

* the fetcher's hand-over to the conductor (:func:`install`);
* the stream's hand-over to the agent (:func:`take_waiting`).

Who calls what: :class:`monitor.live.app.SlaWorker` calls :func:`install` on its app once, when
it builds it; Faust's fetcher (``Consumer._drain_messages``) then calls the replaced
``consumer.wait_first`` for every record it fetched, as before. ``SlaWorker._process`` calls
:func:`take_waiting` after each record its stream yields.

**The fetcher's hand-over.** For each record, Faust 0.15.3's fetcher awaits
``self.wait_first(callback(message), self.suspend_flow.wait())``: mode's
``Service.wait_first`` wraps both coroutines, and the consumer's ``stopped`` and ``crashed``
events, in four tasks, waits for the first to finish with ``asyncio.wait`` and cancels the
other three. It is there so that a rebalance, which sets ``suspend_flow``, can cut short a
hand-over that blocks: the conductor's ``on_message`` waits while flow control is suspended,
while the producer buffer is over its limit, while its subscriptions are being rebuilt, and
while an agent's queue is full. With py-spy on the worker draining a backlog (``sla-monitor
bench --live --kafka``, commit ``e27b5c1``), ``wait_first`` itself was 13 % of all the
worker's CPU, and the task machinery it sets going (``create_task``, ``Handle._run``,
``_wait``, cancellations) several percent more: more than the engine, the table and parsing
together.

What :func:`install` does instead: when the coroutine is the conductor's hand-over and none of
the conditions it could wait on holds, the hand-over cannot block: it is awaited directly (it
runs to its end without giving up the loop) and ``suspend_flow.wait()`` is closed unawaited.
In any other case, and for any other caller, mode's ``wait_first`` runs as before. A rebalance
can only begin when the loop runs something else, so it cannot come between the check and the
hand-over.

**The stream's hand-over.** Faust's stream (``Stream._py_aiter`` and its Cython twin) yields
one record per loop turn: ``await asyncio.sleep(0)`` before each, then sensor calls and a
context variable. In the same py-spy run the stream was 9 % of the worker's CPU, and every loop
turn runs the loop's own bookkeeping. :func:`take_waiting` takes the records already waiting
in the stream's queue in one go, with what the stream does for each that anything relies on:
the message is tracked as unacknowledged (so Faust's revocation waits for it and its commit
stops below it) and the ``on_message_in`` sensor is called (its ``on_message_out`` comes with
the acknowledgement). It stops at the first record the stream must see itself: an error queued
for the stream, a suspended flow, a record of an older consumer generation (Faust skips those).

Measured (``sla-monitor bench --live --kafka``, BENCHMARKS.md): the two together took the worker
from 257 to 176-214 µs of CPU per record. ``bench``'s bare Faust agent (:mod:`monitor.live.ceiling`)
keeps Faust's own hand-overs: it is the framework's per-record cost the worker is measured
against.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from faust.types import EventT
from mode.services import WaitResults


def install(app: Any) -> None:
    """Replaces ``app.consumer.wait_first`` (this app's consumer only; idempotent)."""
    consumer = app.consumer
    if getattr(consumer, "_sla_direct_delivery", False):
        return
    conductor = app.topics
    # The coroutine the fetcher hands over is made by ``consumer.callback``: the conductor's
    # ``on_message`` closure. Its code object tells it apart from any other caller's.
    handover = conductor.on_message.__code__
    wait_first = consumer.wait_first
    flow_control = app.flow_control
    suspend_flow = consumer.suspend_flow
    stopped, crashed = consumer._stopped, consumer._crashed
    lock = conductor._tp_to_callback_lock
    channels = conductor._topics

    def cannot_block() -> bool:
        """True when nothing the conductor's handler awaits can wait (``ConductorHandler.
        __call__`` in Faust's ``_cython/conductor.pyx``, or its Python twin in conductor.py)."""
        if suspend_flow.is_set() or stopped.is_set() or crashed.is_set():
            return False
        if not flow_control.is_active() or lock.locked():
            return False
        buffer = app.producer.buffer
        if buffer.size > buffer.max_messages:  # ``wait_until_ebb`` would flush
            return False
        return not any(channel.queue.full() for channel in channels)

    async def direct_wait_first(*coros: Any, timeout: Any = None) -> WaitResults:
        if len(coros) == 2 and timeout is None:  # the fetcher's call: (hand-over, suspend)
            first, second = coros
            if getattr(first, "cr_code", None) is handover and cannot_block():
                if isinstance(second, Awaitable) and hasattr(second, "close"):
                    second.close()  # never started: nothing to cancel
                result = await first
                return WaitResults([first], [result], False)
        results: WaitResults = await wait_first(*coros, timeout=timeout)
        return results

    consumer.wait_first = direct_wait_first
    consumer._sla_direct_delivery = True


def take_waiting(stream: Any, limit: int) -> list[Any]:
    """Up to ``limit`` events waiting in ``stream``'s queue, taken now, each as the stream
    would have yielded it (see the module doc); stops early at one the stream must see."""
    queue = stream.channel.queue
    app = stream.app
    if limit <= 0 or queue._errors or not app.flow_control.is_active():
        return []
    waiting = queue._queue  # asyncio.Queue's deque: look before taking
    generation = app.consumer_generation_id
    acking = app.topics.acking_topics
    track = app.consumer.unacked.add
    on_message_in = stream._on_message_in
    taken: list[Any] = []
    while waiting and len(taken) < limit:
        event = waiting[0]
        if not isinstance(event, EventT) or event.message.generation_id != generation:
            break
        queue.get_nowait()  # (mode's: also lifts the partition's back-pressure when low)
        message = event.message
        if message.topic in acking and not message.tracked:
            message.tracked = True
            track(message)
            on_message_in(message.tp, message.offset, message)
        taken.append(event)
    return taken
