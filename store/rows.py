"""Records to rows, for the writer process: time texts and the statements' parameters.

A chunk of records (tuples in a table's record field order, store/tables.py) becomes its rows
through map() and zip() over the whole chunk, with no Python statement per row: the per-row
bytecode was a large part of the writer process's instructions. What makes two rows the same
row is the table's unique index over the record's own columns (store/schema.py), so nothing is
computed for it.

Each table's builder is derived from its declaration once, at import: the columns copied from
the record as they are come first, in record field order, taken by one itemgetter (a slice when
the fields are contiguous); then the derived columns (time texts, rounded durations), in table
order.
"""
from __future__ import annotations

import math
import time
from itertools import repeat
from operator import add, itemgetter

from store.tables import ACC, CDR, COPY, GENERIC, MILLISECONDS, TIME_TEXT


def _milliseconds(times, values):
    """MILLISECONDS: seconds rounded to 3 decimals (NULL stays NULL)."""
    return [None if v is None else round(v, 3) for v in values]


class RowBuilder:
    """The rows of one table layout: `params` names the columns of a row tuple, in order (the
    INSERT's), and `build(records, times)` makes the rows of a chunk of records. Raises
    (TypeError, ValueError, ...) if one of them cannot become a row."""

    def __init__(self, table):
        self.table = table
        self.fields = fields = table.field_names
        index = {name: i for i, name in enumerate(fields)}
        filled = [c for c in table.columns if c.source is not None]
        copied = sorted((c for c in filled if c.fill == COPY), key=lambda c: index[c.source])
        derived = [c for c in filled if c.fill != COPY]
        self.params = tuple(c.name for c in copied) + tuple(c.name for c in derived)
        kept = [index[c.source] for c in copied]
        if kept and kept == list(range(kept[0], kept[-1] + 1)):  # one slice: the fastest
            keep = itemgetter(slice(kept[0], kept[-1] + 1))
        else:  # a tuple of each (none: an empty one)
            keep = itemgetter(*kept) if len(kept) > 1 else itemgetter(slice(0, 0))
        # how each derived fill (store/tables.py) turns a chunk's values of its field into the
        # column's: f(times, values) -> iterable
        derivations = {TIME_TEXT: TimeTexts.seconds, MILLISECONDS: _milliseconds}
        derive = tuple((itemgetter(index[c.source]), derivations[c.fill]) for c in derived)
        width = {len(fields)}
        record = table.record

        def build(records: list, times: TimeTexts) -> list[tuple]:
            if set(map(len, records)) - width:
                raise ValueError(f"a {record} has not the {len(fields)} fields {fields}")
            if not derive:
                return list(map(keep, records))
            return list(map(add, map(keep, records),
                            zip(*[fn(times, map(get, records)) for get, fn in derive])))

        self.build = build


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


ACC_ROWS = RowBuilder(ACC)
CDR_ROWS = RowBuilder(CDR)
# record fields as the parent sends them (operator.attrgetter order), and the columns of
# acc_rows() / cdr_rows() tuples, in order
ACC_FIELDS, ACC_PARAMS = ACC_ROWS.fields, ACC_ROWS.params
CDR_FIELDS, CDR_PARAMS = CDR_ROWS.fields, CDR_ROWS.params
acc_rows = ACC_ROWS.build  # records of one of ACC.names
cdr_rows = CDR_ROWS.build
# the layouts of the generic path, by key: the voice quality tables, OpenSIPS' acc and
# missed_calls
MEDIA_ROWS = {key: RowBuilder(t) for key, t in GENERIC.items()}
