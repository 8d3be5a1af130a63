"""store/tables.py: every artefact derived from a table's declaration agrees with it (the
record, the DDL, the writer's rows and statements, the report columns), for the real tables and
for a throwaway one built here, so that a column added to a declaration reaches all of them."""
from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from sip_dissect import records
from store import reports, rows, schema, tables, worker
from store.tables import ACC, CDR, MILLISECONDS, TIME_TEXT, Column, Field, Table
from tests.test_store import BUSY, CDR as CDR_RECORD, INVITE, sqlite_utils_table

ROOT = Path(__file__).resolve().parents[1]


def with_column(layout: Table, column: Column, name: str = "scratch") -> Table:
    """`layout` with one more extra column, under another name."""
    return Table(name, record="Scratch" + layout.record, doc=layout.doc,
                 kamailio=layout.kamailio, extra=layout.extra + (column,), route=layout.route,
                 identity=layout.identity, indexed=layout.indexed, clock=layout.clock,
                 summary=layout.summary + (column.name,))


NOTE = Column("note", str, "a column of the test's own", default="")


def sample(layout: Table) -> tuple:
    """A record of `layout` with a value of each field's type (the voice quality tables)."""
    values = {str: "x", int: 7, float: 1.5}
    return tuple(next(v for t, v in values.items() if t in getattr(f.type, "__args__", (f.type,)))
                 for f in layout.fields)


def ddl_columns(con, table: str) -> list[tuple]:
    """(name, type, notnull, default, pk) of each column, as SQLite read the DDL."""
    return [tuple(r[1:]) for r in con.execute(f'PRAGMA table_info("{table}")')]


def declared_columns(layout: Table) -> list[tuple]:
    return [(c.name, c.sql_type, int(not (c.nullable or c.primary_key)),
             None if c.default is None else schema.sql_literal(c.default), int(c.primary_key))
            for c in layout.columns]


# --- the real declarations ----------------------------------------------------------------

def test_the_records_are_the_declared_fields():
    assert records.AccRecord._fields == ACC.field_names
    assert records.CdrRecord._fields == CDR.field_names
    assert records.AccRecord.__doc__ == ACC.doc and records.CdrRecord.__doc__ == CDR.doc
    assert records.AccRecord.time.__doc__ == ACC.column("time").field.doc
    assert records.CdrRecord.to_tag.__doc__ == CDR.column("to_tag").doc
    from sip_dissect.cdr import CdrRecord

    assert CdrRecord is records.CdrRecord  # still importable from cdr.py


def test_the_record_fields_did_not_move():
    """Records are built positionally (records.new_record): these orders are an interface."""
    assert records.AccRecord._fields == (
        "table", "method", "from_tag", "to_tag", "callid", "sip_code", "sip_reason", "time",
        "src_user", "src_domain", "src_ip", "dst_ouser", "dst_user", "dst_domain", "cseq")
    assert records.CdrRecord._fields == (
        "start_time", "end_time", "duration", "callid", "from_tag", "to_tag", "src_user",
        "src_domain", "src_ip", "dst_ouser", "dst_user", "dst_domain", "sip_code", "sip_reason",
        "created", "ring_time", "answer_time", "setuptime", "pdd", "ended_by", "end_reason",
        "ring_duration", "talk_time")
    assert records.CdrRecord.KAMAILIO_COLUMNS == records.CdrRecord._fields[:14]


@pytest.mark.parametrize("table", schema.ALL_TABLES)
def test_the_ddl_is_the_declaration(table):
    layout = tables.BY_NAME[table]
    con = sqlite3.connect(":memory:")
    for statement in schema.create_statements(table):
        con.execute(statement)
    assert ddl_columns(con, table) == declared_columns(layout)
    assert schema.table_columns(table) == layout.column_names
    indexes = {r[1]: [c[2] for c in con.execute(f'PRAGMA index_info("{r[1]}")')]
               for r in con.execute(f'PRAGMA index_list("{table}")')}
    assert indexes == {**{f"{table}_{c}_idx": [c] for c in layout.indexed},
                       f"{table}_identity_idx": list(layout.identity)}


@pytest.mark.parametrize("layout", tables.LAYOUTS)
def test_every_filled_column_is_one_parameter_of_the_insert(layout):
    builder = rows.RowBuilder(layout)
    filled = [c.name for c in layout.columns if not (c.primary_key or c.by_store)]
    assert sorted(builder.params) == sorted(filled)
    for table in layout.names:
        assert f"INTO [{table}] ({', '.join(builder.params)}) VALUES" in worker.INSERT[table][0]


def test_the_row_builders_are_the_writer_s():
    assert (rows.ACC_FIELDS, rows.ACC_PARAMS) == (ACC.field_names, rows.ACC_ROWS.params)
    assert (rows.CDR_FIELDS, rows.CDR_PARAMS) == (CDR.field_names, rows.CDR_ROWS.params)


def test_the_reports_return_every_declared_column():
    assert reports.REPORT_COLUMNS == ACC.column_names
    assert reports.CDR_REPORT_COLUMNS == CDR.column_names
    assert set(ACC.summary) <= set(ACC.column_names)
    assert set(CDR.summary) <= set(CDR.column_names)


def test_records_go_into_their_tables_column_by_column(tmp_path):
    """A record of each table through the row builder into the table the DDL made: each
    column holds its field's value (or the derivation the declaration names)."""
    con = sqlite3.connect(":memory:")
    for table in schema.ALL_TABLES:
        for statement in schema.create_statements(table):
            con.execute(statement)
    times = rows.TimeTexts(False)
    for rec, table in ((INVITE, "acc"), (BUSY, "missed_calls"), (CDR_RECORD, "acc_cdrs")):
        layout = tables.BY_NAME[table]
        builder = rows.RowBuilder(layout)
        con.execute(worker.insert_sql(table, 1), builder.build([tuple(rec)], times)[0])
        stored = dict(zip(layout.column_names,
                          con.execute(f"SELECT * FROM [{table}]").fetchone()))
        for column in layout.columns:
            if column.primary_key or column.by_store:
                continue
            value = getattr(rec, column.source)
            want = {TIME_TEXT: rows.time_text, MILLISECONDS: lambda v: round(v, 3)}.get(
                column.fill, lambda v: v)(value)
            assert stored[column.name] == want, column.name


# --- a throwaway table: one column more reaches every artefact ------------------------------

@pytest.mark.parametrize("base", tables.LAYOUTS, ids=lambda t: t.name)
def test_a_column_added_to_a_declaration_reaches_every_artefact(base, tmp_path, monkeypatch):
    layout = with_column(base, NOTE)
    # the record: one more field, last, with the column's type and doc
    Record = records.record_class(layout)
    assert Record._fields == base.field_names + ("note",)
    assert Record.__annotations__["note"] is str and Record.note.__doc__ == NOTE.doc
    # the DDL: one more column, as sqlite_utils would have created it
    con = sqlite3.connect(str(tmp_path / "ours.db"))
    for statement in schema.table_statements(layout, "scratch"):
        con.execute(statement)
    assert ddl_columns(con, "scratch")[-1] == ("note", "TEXT", 1, "''", 0)
    assert ddl_columns(con, "scratch") == declared_columns(layout)
    import sqlite_utils

    reference = sqlite_utils.Database(str(tmp_path / "reference.db"))
    sqlite_utils_table(reference, layout, "scratch")
    assert [r[0] for r in con.execute("SELECT sql FROM sqlite_master ORDER BY rowid")] == [
        r[0] for r in reference.execute("SELECT sql FROM sqlite_master ORDER BY rowid")]
    # the row: the field's value in the column of that name
    rec = {ACC.name: INVITE, CDR.name: CDR_RECORD}.get(base.name) or sample(base)
    rec = tuple(rec) + ("a note",)
    builder = rows.RowBuilder(layout)
    (row,) = builder.build([rec], rows.TimeTexts(False))
    assert "note" in builder.params and row[builder.params.index("note")] == "a note"
    with pytest.raises(ValueError, match="fields"):
        builder.build([rec[:-1]], rows.TimeTexts(False))
    # the writer's statement inserts it, and the report reads it
    monkeypatch.setitem(worker._PARAMS, "scratch", builder.params)
    con.execute(worker.insert_sql("scratch", 1), row)
    con.commit()
    con.close()
    assert layout.report_columns[-1] == "note" and layout.summary[-1] == "note"
    monkeypatch.setitem(tables.BY_NAME, "scratch", layout)
    (reported,) = reports.rows("scratch", str(tmp_path / "ours.db"))
    assert list(reported) == list(layout.report_columns) and reported["note"] == "a note"


def test_derived_columns_of_a_throwaway_table():
    """Fills other than a copy: a time text and a rounded duration from one field each, and a
    column copying a field another column declared."""
    layout = Table("spans", record="Span", doc="a span", kamailio=(
        Column("id", int, "row number", primary_key=True),
        Column("begin", str, "its text", fill=TIME_TEXT, field=Field("begin", float, "epoch")),
        Column("length", float, "rounded", fill=MILLISECONDS, field=Field("length", float)),
        Column("who", str, "a copied field", nullable=True),
    ), extra=(Column("begin_epoch", float, "epoch seconds", field="begin"),))
    assert records.record_class(layout)._fields == ("begin", "length", "who")
    assert records.record_class(layout).__annotations__["who"] == (str | None)
    builder = rows.RowBuilder(layout)
    assert builder.params == ("begin_epoch", "who", "begin", "length")
    assert builder.build([(1795431445.9, 2.0114999, None)], rows.TimeTexts(False)) == [
        (1795431445.9, None, "2026-11-23 10:57:25", 2.011)]
    assert schema.table_statements(layout, "spans")[0] == (
        'CREATE TABLE "spans" (\n   "id" INTEGER PRIMARY KEY,\n   "begin" TEXT NOT NULL,\n'
        '   "length" REAL NOT NULL,\n   "who" TEXT,\n   "begin_epoch" REAL NOT NULL\n);')


@pytest.mark.parametrize("change, message", [
    (dict(extra=(Column("x", float, "", field="nowhere"),)), "filled from 'nowhere'"),
    (dict(identity=("callid", "nothing")), "identity names no column: nothing"),
    (dict(indexed=("nothing",)), "indexed names no column"),
    (dict(summary=("nothing",)), "summary names no column"),
    (dict(clock="nothing"), "clock names no column"),
    (dict(extra=(Column("callid", str, ""),)), "column declared twice: callid"),
    (dict(extra=ACC.extra + (Column("seq", int, "", field=Field("cseq", int)),)),
     "record field declared twice: cseq"),
    (dict(extra=(Column("table", str, ""),)), "declared twice: table"),
])
def test_a_declaration_that_contradicts_itself_is_refused(change, message):
    declared = dict(record="X", doc="", kamailio=ACC.kamailio, extra=ACC.extra, route=ACC.route,
                    identity=ACC.identity, indexed=ACC.indexed, clock=ACC.clock,
                    summary=ACC.summary)
    with pytest.raises(ValueError, match=message):
        Table("x", **{**declared, **change})


def test_a_column_of_another_type_or_fill_is_refused():
    with pytest.raises(ValueError, match="type"):
        Column("x", bytes, "")
    with pytest.raises(ValueError, match="fill"):
        Column("x", str, "", fill="upper", field="y")
    with pytest.raises(ValueError, match="names its field"):
        Column("x", str, "", fill=TIME_TEXT)


# --- the end reasons, spelled once ----------------------------------------------------------

def test_end_reasons_are_the_end_reason_column_s_values():
    assert tables.END_REASONS == CDR.column("end_reason").values == (
        tables.COMPLETED, tables.CANCELLED, tables.REJECTED, tables.EXPIRED, tables.OPEN,
        tables.UNANSWERED)
    assert set(tables.UNENDED) < set(tables.END_REASONS)
    assert f"end_reason = '{tables.OPEN}' AND excluded.end_reason != '{tables.OPEN}'" \
        in worker.COMPLETE_CDR


def test_the_cli_help_lists_the_end_reasons():
    """cli_reports.py spells them out (the CLI starts without importing store/): the same
    words."""
    import cli_reports

    (option,) = cli_reports.EndReasonOpt.__metadata__
    reasons = tables.END_REASONS
    assert option.help == (f"CDRs that ended so: {', '.join(reasons[:-1])} or {reasons[-1]}.")


def test_a_bad_end_reason_names_the_vocabulary(tmp_path):
    from store import FilterError

    with pytest.raises(FilterError, match=", ".join(tables.END_REASONS[:-1])):
        reports.cdr_rows(str(tmp_path / "x.db"), end_reason="hung up")


def test_the_declaration_imports_nothing():
    """The writer process and the replay's start-up import it: plain data, no module loaded."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); before = set(sys.modules); "
            "import store.tables; print(sorted(set(sys.modules) - before - {'__future__'}))")
    done = subprocess.run([sys.executable, "-S", "-c", code, str(ROOT)], capture_output=True,
                          text=True, check=True)
    assert done.stdout == "['store', 'store.tables']\n"
