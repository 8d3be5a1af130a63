"""Comparing sipprobe's rows with what Kamailio itself wrote in a lab run (kamailio-acc.json)."""
from __future__ import annotations

import json
from pathlib import Path

from pipeline import ProbeOptions, account_files
from sip_dissect.accounting import AccOptions

LAB_PCAPS = Path(__file__).resolve().parents[1] / "pcaps"
PROXY = ("127.0.0.1", 5060)  # lab/kamailio.cfg listens there
# The sipprobe options that match each lab/kamailio.cfg variant (`-A NAME`, recorded per
# scenario in kamailio-acc.json "kamailio_defines"); lab/README.md describes the variants
VARIANT_OPTIONS = {"WITH_MISSED_EARLY": {"missed_local_replies": True},
                   "WITH_MISSED_PER_BRANCH": {"missed_per_branch": True}}
# scenarios where the proxy relays nothing: only --proxy tells its own replies apart
NOTHING_RELAYED = {"lab-notfound-proxy-404", "lab-missed-early-notfound-proxy-404",
                   "lab-missed-early-blocked-403"}
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


def kamailio_defines(scenario_dir: Path) -> list[str]:
    """The #!defines the scenario's Kamailio ran with (none: the stock-style script)."""
    data = json.loads((scenario_dir / "kamailio-acc.json").read_text())
    return data.get("kamailio_defines", [])


def scenario_acc_options(scenario_dir: Path) -> AccOptions:
    """The AccOptions that describe the script the scenario's Kamailio ran."""
    kw = {}
    for name in kamailio_defines(scenario_dir):
        kw.update(VARIANT_OPTIONS[name])
    return AccOptions(**kw)


def scenario_flags(scenario_dir: Path) -> list[str]:
    """The same as `sipprobe replay` switches (--missed-local-replies...)."""
    return ["--" + name.replace("_", "-") for define in kamailio_defines(scenario_dir)
            for name, on in VARIANT_OPTIONS[define].items() if on]


def replay(scenario_dir: Path, proxies=(PROXY,), **kw):
    """sipprobe's rows for the scenario's capture, with the options of its Kamailio script
    unless `acc_options` is given."""
    kw.setdefault("acc_options", scenario_acc_options(scenario_dir))
    records = []
    summary = account_files([str(scenario_dir / "capture.pcap")], records.append,
                            ProbeOptions(strict=True), proxies=list(proxies), **kw)
    return records, summary


# Kamailio writes an acc row before it relays the final reply the probe takes the row's time
# from: 11 ms later in a fresh lab run (a 486 received at .9895 s, relayed at 1.0009 s)
RELAY_LATENCY = 0.050


def assert_same_rows(scenario_dir: Path, records) -> None:
    """Every Kamailio column but id equal; times in the second Kamailio stored (its clock
    truncated to the second when it handled the final reply), or up to RELAY_LATENCY past it:
    the probe's is the relayed reply's, which leaves the proxy after the row is written."""
    for table in ("acc", "missed_calls"):
        want, got = kamailio_rows(scenario_dir, table), probe_rows(records, table)
        assert [w for w, _ in want] == [g for g, _ in got], f"{scenario_dir.name} {table}"
        for (_, t_kam), (_, t_probe) in zip(want, got):
            assert 0 <= t_probe - t_kam < 1 + RELAY_LATENCY, \
                (f"{scenario_dir.name} {table} time", t_kam, t_probe)
