"""Records to rows, for the writer process: time texts and the statements' parameters.

A chunk of records (tuples in ACC_FIELDS / CDR_FIELDS order) becomes its rows through map() and
zip() over the whole chunk, with no Python statement per row: the per-row bytecode was a large
part of the writer process's instructions. What makes two rows the same row is the table's
unique index over the record's own columns (store/schema.py), so nothing is computed for it.
"""
from __future__ import annotations

import math
import time
from itertools import repeat
from operator import add, itemgetter

# AccRecord / CdrRecord fields as the parent sends them (operator.attrgetter order)
ACC_FIELDS = ("table", "method", "from_tag", "to_tag", "callid", "sip_code", "sip_reason", "time",
              "src_user", "src_domain", "src_ip", "dst_ouser", "dst_user", "dst_domain", "cseq")
CDR_FIELDS = ("start_time", "end_time", "duration", "callid", "from_tag", "to_tag", "src_user",
              "src_domain", "src_ip", "dst_ouser", "dst_user", "dst_domain", "sip_code",
              "sip_reason", "created", "ring_time", "answer_time", "setuptime", "pdd", "ended_by",
              "end_reason")
# the columns of acc_rows() / cdr_rows() tuples, in order: a record's fields as they came
# (acc: but the table; acc_cdrs: but the unrounded duration), then what the writer adds
ACC_PARAMS = tuple("time_epoch" if f == "time" else f for f in ACC_FIELDS[1:]) + ("time",)
CDR_PARAMS = (("start_epoch", "end_epoch") + CDR_FIELDS[3:]
              + ("start_time", "end_time", "duration"))

_ACC_TAIL = itemgetter(slice(1, None))
_CDR_KEPT = itemgetter(0, 1, *range(3, len(CDR_FIELDS)))
_ACC_TIME = itemgetter(ACC_FIELDS.index("time"))
_START, _END, _DURATION = itemgetter(0), itemgetter(1), itemgetter(2)


def acc_rows(acc: list, times: TimeTexts) -> list[tuple]:
    """Parameters in ACC_PARAMS order of records of one table. Raises (TypeError, ValueError,
    ...) if one of them cannot become a row."""
    if set(map(len, acc)) - {len(ACC_FIELDS)}:
        raise ValueError(f"an acc record has not the {len(ACC_FIELDS)} fields {ACC_FIELDS}")
    seconds = times.seconds(map(_ACC_TIME, acc))
    return list(map(add, map(_ACC_TAIL, acc), zip(seconds)))


def cdr_rows(cdrs: list, times: TimeTexts) -> list[tuple]:
    """Parameters in CDR_PARAMS order. Raises as acc_rows()."""
    if set(map(len, cdrs)) - {len(CDR_FIELDS)}:
        raise ValueError(f"a CDR record has not the {len(CDR_FIELDS)} fields {CDR_FIELDS}")
    return list(map(add, map(_CDR_KEPT, cdrs), zip(times.seconds(map(_START, cdrs)),
                                                   times.seconds(map(_END, cdrs)),
                                                   map(round, map(_DURATION, cdrs), repeat(3)))))


def time_text(epoch: float, local_time: bool = False) -> str:
    """Kamailio's `time`: whole seconds, truncated (floor) as the proxy's time_t is."""
    second = math.floor(epoch)
    parts = time.localtime(second) if local_time else time.gmtime(second)
    return time.strftime("%Y-%m-%d %H:%M:%S", parts)


class TimeTexts(dict):
    """time_text() remembered per second: records arrive in time order, many per second."""

    def __init__(self, local_time: bool):
        super().__init__()
        self.local_time = local_time

    def __missing__(self, second: int) -> str:
        if len(self) > 100_000:
            self.clear()
        text = self[second] = time_text(second, self.local_time)
        return text

    def seconds(self, epochs) -> map:
        """The time text of each epoch."""
        return map(self.__getitem__, map(math.floor, epochs))
