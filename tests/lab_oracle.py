"""Comparing sipprobe's rows with what Kamailio itself wrote in a lab run (kamailio-acc.json)."""
from __future__ import annotations

import json
from pathlib import Path

from pipeline import ProbeOptions, account_files

LAB_PCAPS = Path(__file__).resolve().parents[1] / "pcaps"
PROXY = ("127.0.0.1", 5060)  # lab/kamailio.cfg listens there
COLUMNS = ("method", "from_tag", "to_tag", "callid", "sip_code", "sip_reason", "src_user",
           "src_domain", "src_ip", "dst_ouser", "dst_user", "dst_domain")


def kamailio_rows(scenario_dir: Path, table: str) -> list[tuple[tuple, int]]:
    """(every column but id and time, the proxy's time as epoch seconds), sorted."""
    data = json.loads((scenario_dir / "kamailio-acc.json").read_text())
    rows = data["tables"][table]["rows"]
    return sorted((tuple("" if r[c] is None else str(r[c]) for c in COLUMNS), r["time_epoch"])
                  for r in rows)


def probe_rows(records, table: str) -> list[tuple[tuple, float]]:
    return sorted((tuple(getattr(r, c) for c in COLUMNS), r.time) for r in records
                  if r.table == table)


def replay(scenario_dir: Path, proxies=(PROXY,), **kw):
    records = []
    summary = account_files([str(scenario_dir / "capture.pcap")], records.append,
                            ProbeOptions(strict=True), proxies=list(proxies), **kw)
    return records, summary


def assert_same_rows(scenario_dir: Path, records) -> None:
    """Every Kamailio column but id equal; times within one second of the proxy's (Kamailio
    writes its clock truncated to the second when it relayed the final reply)."""
    for table in ("acc", "missed_calls"):
        want, got = kamailio_rows(scenario_dir, table), probe_rows(records, table)
        assert [w for w, _ in want] == [g for g, _ in got], f"{scenario_dir.name} {table}"
        for (_, t_kam), (_, t_probe) in zip(want, got):
            assert abs(t_probe - t_kam) <= 1.0, f"{scenario_dir.name} {table} time"
