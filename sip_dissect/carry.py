"""Signalling state carried from one run to the next: calls survive file boundaries and restarts.

When a run ends (the last file of a replay, a `sniff` stopped), the calls still going and the
transactions still remembered (RFC 3261 section 17: open, or lingering to recognise
retransmissions) are written to the store, one text per Call-ID, plus the proxies learned from
relayed requests. The next run takes them up before its first packet, so a BYE, CANCEL or final
reply of a call it never saw start ends that call exactly as one run over both captures would:
the same CDR (its stored "open" row completed in place) and the same acc rows. A group is
taken up only by a run whose first packet is not older than the group's last (pipeline.py): a
rerun of an earlier capture leaves it for the run that continues it.

A store that carries state implements two methods (store.writer.AccStore does, in its
`open_calls` table, and store/postgres.py's PgStore, there per probe name; any other store only
needs the same two):

    carried() -> list[tuple[str, float, str]]   (callid, last packet time, state) of each
                                                group kept
    keep_carried(taken, groups) -> None      with the rows of this run's end (same transaction
                                             as the last rows): delete the groups whose Call-IDs
                                             are in `taken` (what this run took up), then add
                                             `groups` [(callid, packet_time, state)]

A state is a marshal of plain tuples, lists, str, bytes, int, float and None (exact floats;
about 20 times cheaper to write than the repr text it replaced, 2026-12-06), checked to hold
nothing else when read back (`_plain`): nothing in it is ever evaluated or called. What is not carried: a call's
media description (its voice quality is that of the run that saw its SDP) and the dialog
layer's eviction order.
"""
from __future__ import annotations

import marshal

from probe.records import Datagram

from .dialog import TERMINATED, Call
from .scan import SipHead
from .transaction import Transaction

# of the states (1: repr text; 2: each transaction's SipHead whole, read as 3); a state of
# another format is skipped (counted)
FORMAT = 3
_PLAIN = (tuple, list, str, bytes, int, float, bool, type(None))
PROXIES = ""  # the group of the learned proxies: no Call-ID is empty (transaction.py)
# the fields that name other objects of the group: kept as indexes into its lists
_TXN_REFS = ("upstream", "cancel", "invite")
_TXN_PLAIN = tuple(s for s in Transaction.__slots__  # uris: derived, asked again if need be
                   if s not in _TXN_REFS + ("downstream", "call", "uris"))
_ADDRESSES = ("uri", "from_value", "to_value")  # format 2 kept them in the SipHead
_TXN_PLAIN_2 = tuple(s for s in _TXN_PLAIN if s not in _ADDRESSES)
_NO_HEAD = SipHead._make((None,) * len(SipHead._fields))  # every field is set after
_CALL_PLAIN = tuple(s for s in Call.__slots__ if s not in ("invite", "media"))


def snapshot(sig) -> list[tuple[str, float, str]]:
    """(callid, last packet time, state) of every Call-ID with a call going on or a
    transaction remembered, and the learned proxies' group; taken before sig.close()."""
    by_key = sig.transactions.by_key
    txns: dict[str, list] = {}  # callid -> its transactions
    calls: dict[str, list] = {}  # callid -> its calls: going on, or named by a transaction
    index: dict[int, int] = {}  # id(object) -> its place in its group's list

    def add(obj, groups) -> bool:
        if id(obj) in index:
            return False
        group = groups.setdefault(obj.callid, [])
        index[id(obj)] = len(group)
        group.append(obj)
        return True

    def add_txn(txn: Transaction) -> None:
        if add(txn, txns):
            for other in (txn.upstream, txn.cancel, txn.invite, *txn.downstream):
                if other is not None:
                    add_txn(other)
            if txn.call is not None:
                add_call(txn.call)

    def add_call(call: Call) -> None:
        if add(call, calls):
            add_txn(call.invite)

    for call in sig.dialogs.calls.values():
        add_call(call)
    for txn in by_key.values():
        add_txn(txn)

    def ref(obj):
        return None if obj is None else index[id(obj)]

    out = []
    for callid in txns.keys() | calls.keys():
        group_txns, group_calls = txns.get(callid, []), calls.get(callid, [])
        encoded_txns = [(*[getattr(t, s) for s in _TXN_PLAIN],
                         *[ref(getattr(t, s)) for s in _TXN_REFS],
                         tuple(map(ref, t.downstream)), ref(t.call), by_key.get(t.key) is t)
                        for t in group_txns]
        encoded_calls = [(*[getattr(c, s) for s in _CALL_PLAIN], ref(c.invite))
                         for c in group_calls]
        last = max([t.final_ts or t.created for t in group_txns]
                   + [c.last_activity or 0.0 for c in group_calls])
        out.append((callid, last, marshal.dumps((FORMAT, _TXN_PLAIN, _CALL_PLAIN, encoded_txns,
                                                 encoded_calls))))
    learned = sorted(sig.transactions.forwarders)
    if learned:
        out.append((PROXIES, 0.0, marshal.dumps((FORMAT, learned))))
    return out


def restore(sig, groups, counters) -> set[str]:
    """Take up the state `groups` [(callid, state)] (carried() of the store) into a fresh
    Signalling: calls into the dialog layer, transactions into the transaction layer and its
    timer queues (arrival order). Returns the Call-IDs taken; a state that cannot be read is
    counted (`carry.bad_state`) and left in the store."""
    taken: set[str] = set()
    restored: list[Transaction] = []
    for callid, text in groups:
        try:
            state = _plain(marshal.loads(text))
            if callid == PROXIES:
                if state[0] != FORMAT:
                    raise ValueError(f"state format {state[0]}")
                sig.transactions.forwarders.update(tuple(p) for p in state[1])
            else:
                restored += _restore_group(sig, state)
            taken.add(callid)
        except (ValueError, TypeError, EOFError, IndexError, MemoryError, RecursionError):
            counters["carry.bad_state"] += 1
    layer = sig.transactions
    for txn in sorted(restored, key=lambda t: t.created):
        if txn.final_ts is not None:
            layer._finished.append(txn)
        elif txn.method == "INVITE":
            layer._open_invites.append(txn)
        else:
            layer._open_others.append(txn)
    if taken:
        counters["carry.calls_taken_up"] += sum(1 for c in taken if c != PROXIES)
    return taken


def _plain(obj):
    """`obj` if it holds only plain data (_PLAIN types, nested), else ValueError: a state
    read from the store is data, whatever the file holds (marshal can also build code
    objects; they would be refused here, never called)."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if type(item) not in _PLAIN:
            raise ValueError(f"state holds a {type(item).__name__}")
        if type(item) in (tuple, list):
            stack.extend(item)
    return obj


def _from_format_2(enc) -> tuple:
    """A transaction of a format 2 state (its plain fields, then its SipHead) as format 3's."""
    n = len(_TXN_PLAIN_2)
    plain = dict(zip(_TXN_PLAIN_2, enc[:n]))
    head = SipHead._make(enc[n])
    plain.update(uri=head.uri, from_value=head.from_value, to_value=head.to_value)
    return (*[plain[s] for s in _TXN_PLAIN], *enc[n + 1:])


def _restore_group(sig, state) -> list[Transaction]:
    fmt, txn_fields, call_fields, encoded_txns, encoded_calls = state
    if fmt == 2 and tuple(txn_fields) == _TXN_PLAIN_2 and tuple(call_fields) == _CALL_PLAIN:
        encoded_txns = [_from_format_2(enc) for enc in encoded_txns]
    elif fmt != FORMAT or tuple(txn_fields) != _TXN_PLAIN or tuple(call_fields) != _CALL_PLAIN:
        raise ValueError("state of another sipprobe version")
    n = len(_TXN_PLAIN)
    txns = []
    d = Datagram(0.0, 0, "", "", 0, 0, "udp", b"")
    for enc in encoded_txns:
        txn = Transaction(enc[0], _NO_HEAD, d, enc[_TXN_PLAIN.index("method")])
        for name, value in zip(_TXN_PLAIN, enc[:n]):
            setattr(txn, name, value)
        txns.append(txn)
    calls = []
    for enc in encoded_calls:
        invite = txns[enc[-1]]  # a call's INVITE is always in its group
        call = Call(invite)
        for name, value in zip(_CALL_PLAIN, enc[:-1]):
            setattr(call, name, tuple(value) if name == "callee_tags" else value)
        calls.append(call)
    remembered = []
    for txn, enc in zip(txns, encoded_txns):
        refs = enc[n:]
        for name, i in zip(_TXN_REFS, refs[:3]):
            setattr(txn, name, None if i is None else txns[i])
        txn.downstream = tuple(txns[i] for i in refs[3])
        txn.call = None if refs[4] is None else calls[refs[4]]
        if refs[5]:  # in the transaction layer when the run ended (else only a call's)
            remembered.append(txn)
    by_key = sig.transactions.by_key
    for txn in remembered:
        by_key.setdefault(txn.key, txn)
    for call in calls:
        if call.state != TERMINATED:
            sig.dialogs.calls.setdefault((call.callid, call.caller_tag), call)
    return remembered
