"""CDRs through `replay`: written with the acc rows, completed (not duplicated) by a later
replay that sees the end of a call an earlier one left open."""
from __future__ import annotations

from pathlib import Path

import dpkt

from pipeline import replay_files
from store.reports import cdr_rows

LAB = Path(__file__).resolve().parents[1] / "pcaps"
PROXY = [("127.0.0.1", 5060)]


def _cut_before_bye(src: Path, dst: Path) -> int:
    """The capture up to (not including) the first BYE: the call is still up at its end."""
    kept = 0
    with open(src, "rb") as f, open(dst, "wb") as out:
        reader = dpkt.pcap.Reader(f)
        writer = dpkt.pcap.Writer(out, linktype=reader.datalink())
        for ts, buf in reader:
            if b"BYE sip:" in buf:
                break
            writer.writepkt(buf, ts)
            kept += 1
    return kept


def test_open_call_completed_by_a_later_replay(tmp_path):
    db = str(tmp_path / "acc.db")
    early = tmp_path / "until-bye.pcap"
    assert _cut_before_bye(LAB / "lab-basic-call" / "capture.pcap", early) > 0
    first = replay_files([str(early)], db, proxies=PROXY)
    assert (first["cdrs_inserted"], first["cdrs_completed"]) == (1, 0)
    (row,) = cdr_rows(db)
    assert row["end_reason"] == "open" and row["sip_code"] == "200"
    second = replay_files([str(LAB / "lab-basic-call" / "capture.pcap")], db, proxies=PROXY)
    assert (second["cdrs_inserted"], second["cdrs_completed"]) == (0, 1)
    (done,) = cdr_rows(db)
    assert done["id"] == row["id"]
    assert (done["end_reason"], done["ended_by"]) == ("completed", "caller")
    assert abs(done["duration"] - 2.011) < 0.05  # Kamailio's own duration for this call
    again = replay_files([str(early)], db, proxies=PROXY)  # an earlier capture again
    assert (again["cdrs_inserted"], again["cdrs_completed"]) == (0, 0)
    assert cdr_rows(db)[0]["end_reason"] == "completed"


def test_start_on_confirmed_starts_at_the_answer(tmp_path):
    capture = str(LAB / "lab-ringing-then-answer" / "capture.pcap")
    plain = str(tmp_path / "plain.db")
    confirmed = str(tmp_path / "confirmed.db")
    replay_files([capture], plain, proxies=PROXY)
    replay_files([capture], confirmed, proxies=PROXY, cdr_options={"start_on_confirmed": True})
    (a,), (b,) = cdr_rows(plain), cdr_rows(confirmed)
    assert abs(a["duration"] - 5.015) < 0.05  # from the INVITE, three seconds of ringing in it
    assert abs(b["duration"] - 2.0) < 0.05  # from the answer
    assert a["created"] == b["created"] and b["start_epoch"] == b["answer_time"]
