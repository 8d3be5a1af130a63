"""What the signalling layer tells the layers above it: call and transaction events.

The transaction and dialog layers decide what happened on the wire; accounting (acc rows,
CDRs) and media (SDP binding, RTCP) decide what to make of it. They meet here. A subscriber
overrides the methods of `Subscriber` it cares about; `Publisher` keeps, per event, the tuple
of the subscribers' handlers, which the emitting code calls in subscription order:

    for handler in publisher.call_ended:
        handler(call)

Declaring an event is one method of `Subscriber` below (the Publisher derives its tuples from
them); the layer where it happens emits it. The layers read the tuples when they are built,
so every subscriber and handler is given before that.
"""
from __future__ import annotations

from typing import NamedTuple


class SdpSeen(NamedTuple):
    """A message of a call carrying a session description (RFC 3264 offer or answer; the
    media layer tells which from the order they come in, section 4)."""

    ts: float  # packet time
    frame: int
    leg: str  # "A": the caller's side of the proxy, "B": a copy the proxy relayed to the callee
    from_caller: bool  # sent by the caller's side of the dialog (its From tag)
    method: str  # the transaction's: INVITE (re-INVITE), UPDATE, PRACK, ACK
    status: int | None  # the response code; None for a request
    src: tuple  # (ip, port) it was sent from
    dst: tuple  # (ip, port) it was sent to
    # of the message, what a session description is read with: not the SipHead itself, which
    # the media layer would keep alive as long as the call (its ~20 strings, freed cold)
    cseq: int  # its CSeq number (the media layer pairs a 200's answer with its INVITE)
    body: bytes  # the SDP


class Subscriber:
    """The events; each method is a no-op here. `call` is a sip_dissect.dialog.Call and `txn`
    a sip_dissect.transaction.Transaction (read them, do not change them)."""

    def call_started(self, call) -> None:
        """A new call: an initial INVITE the proxy received from a client (RFC 3261 s12.1)."""

    def sdp_seen(self, call, seen: SdpSeen) -> None:
        """A request or response of the call with an SDP body, on either leg."""

    def call_answered(self, call) -> None:
        """The 2xx that confirmed the call's dialog (call.answer_time)."""

    def call_ended(self, call) -> None:
        """The call is over (call.end_reason: completed, cancelled, rejected, expired, open)."""

    def transaction_final(self, txn, call) -> None:
        """The first final reply of a transaction (the acc module's moment); `call`: the call
        of an initial INVITE or a BYE, else None."""

    def provisional(self, txn, call, status: int, reason: str, ts: float, to_tag: str) -> None:
        """A 1xx reply to an initial INVITE of a call, before its final reply."""


EVENTS = tuple(name for name, value in vars(Subscriber).items()
               if callable(value) and not name.startswith("_"))


class Publisher:
    """Per event, the handlers of the subscribers that implement it, as a tuple attribute of
    the event's name (empty when nobody listens, so emitting costs a length test)."""

    def __init__(self, subscribers=()):
        self.subscribers = list(subscribers)
        self._extra: list[tuple[str, object]] = []  # (event, bare function)
        self._refresh()

    def add_handler(self, event: str, handler) -> None:
        """A bare function for one event (tests and small hooks)."""
        if event not in EVENTS:
            raise ValueError(f"no such event: {event!r}; events: {', '.join(EVENTS)}")
        self._extra.append((event, handler))
        self._refresh()

    def _refresh(self) -> None:
        for name in EVENTS:
            base = getattr(Subscriber, name)
            handlers = [getattr(sub, name) for sub in self.subscribers
                        if getattr(type(sub), name, base) is not base]
            handlers += [fn for event, fn in self._extra if event == name]
            setattr(self, name, tuple(handlers))
