"""The record-by-record pipeline the fuzz tests drive (``tests/test_fuzz.py``) and that the
live fuzz test (``tests/live/test_worker.py``) uses to predict the worker's dead letters.

:class:`Pipeline` is replay (:class:`monitor.replay.Replay`, the oracle) fed one raw record at
a time the way the worker's agent handles one (:meth:`monitor.live.app.SlaWorker._on_input`:
an empty value is a tombstone, then :func:`monitor.validation.parse_event`, then the engine),
keeping the reason and the :class:`~monitor.errors.Reason` code of every refusal. Anything
else that escapes is a crash and fails the calling test.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from monitor.engine import SlaEngine, state_key
from monitor.errors import CalendarError, InvalidEvent, Reason, RejectedEvent
from monitor.replay import Replay
from monitor.sla_event import SlaEvent
from monitor.validation import parse_event


@dataclass(frozen=True)
class DeadLetter:
    """What the worker publishes for a refused record: its reason header and metric code."""

    reason: str
    code: Reason


class Pipeline:
    """Records in, facts or dead letters out: replay (:class:`monitor.replay.Replay`, the
    oracle) driven record by record the way the worker drives the engine (an empty value is
    a tombstone; :func:`parse_event`; then the engine), keeping the reason and the code of
    every refusal. Anything else that escapes is a crash and fails the test."""

    def __init__(self, engine: SlaEngine, *, serialise: bool = True) -> None:
        self.engine = engine
        self.serialise = serialise
        self.replay = Replay(engine)
        self.facts: list[SlaEvent] = []
        self.dead: list[DeadLetter] = []

    def feed(self, record: bytes | None) -> DeadLetter | None:
        if record is None:
            return self._dead("empty message value (a tombstone?)", Reason.TOMBSTONE)
        try:
            event = parse_event(record)
        except InvalidEvent as exc:
            return self._dead(str(exc), exc.code)
        replay = self.replay
        # Fire what the event's time passes first (as Replay.feed does), so the record
        # compared below is the one the engine is handed.
        self._emit(replay.advance_to(event.occurred_at))
        key = state_key(event.subject_type, event.subject_id)
        before = replay.states.get(key)
        snapshot = before.to_bytes() if before is not None else None
        refused = len(replay.rejections)
        self._emit(replay.feed(event))
        if len(replay.rejections) == refused:
            return None
        after = replay.states.get(key)
        # A refused event changes nothing: the worker keeps the record it had.
        assert (after.to_bytes() if after is not None else None) == snapshot, event
        try:  # the same call again, for the code the worker would label the dead letter with
            self.engine.apply(after, event, replay.clock or event.occurred_at)
        except (RejectedEvent, CalendarError) as exc:
            return self._dead(str(exc), exc.code)
        raise AssertionError(f"refused by replay, accepted on a second try: {event}")

    def decode(self, record: bytes | None) -> DeadLetter | None:
        """The decoding half alone (no engine): the tombstone check and parse_event."""
        if record is None:
            return self._dead("empty message value (a tombstone?)", Reason.TOMBSTONE)
        try:
            parse_event(record)
        except InvalidEvent as exc:
            return self._dead(str(exc), exc.code)
        return None

    def finish(self, until: int) -> None:
        self._emit(self.replay.advance_to(until))

    def _emit(self, facts: list[SlaEvent]) -> None:
        if self.serialise:
            for fact in facts:
                # What the worker's _send does with each fact, outside any handler: must not
                # raise (it would stop the worker's agent, not dead-letter one record).
                orjson.dumps(fact.to_dict(self.engine.timezone_of(fact.policy)))
        self.facts += facts

    def _dead(self, reason: str, code: Reason) -> DeadLetter:
        assert isinstance(code, Reason), code
        assert code is not Reason.INTERNAL, reason  # "a bug" is not a reason
        assert reason.strip(), code
        letter = DeadLetter(reason, code)
        self.dead.append(letter)
        return letter
