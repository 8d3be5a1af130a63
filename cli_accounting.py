"""The accounting options `replay` and `sniff` share, declared once.

A live probe must write what a replay of the same traffic writes, so both commands take the
same options: the proxy, its acc and dialog module parameters, the timers, the time zone, the
MOS formula and the ACC log lines (syslog). Each is one `typer.Option` in ACCOUNTING_OPTIONS;
`with_accounting` adds them all to a command, which receives them gathered as one
`accounting: dict` of pipeline.replay_files' and pipeline.sniff_interface's keyword arguments
(see `pipeline_arguments`).
"""
from __future__ import annotations

import functools
import inspect
from enum import Enum
from typing import List

import typer


class Flavour(str, Enum):  # sip_dissect.flavour.FLAVOURS
    kamailio = "kamailio"
    opensips = "opensips"


class RtpengineFormula(str, Enum):  # rtcp_mos.rtpengine_mos.FORMULAS
    g107 = "g107"
    g107_2 = "g107.2"
    legacy = "legacy"


def _option(annotation, default, *names, **kw) -> inspect.Parameter:
    """A keyword parameter of the command: its name from the first --flag (or `name=`)."""
    name = kw.pop("name", None) or names[0].lstrip("-").split("/")[0].replace("-", "_")
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                             default=typer.Option(default, *names, **kw))


ACCOUNTING_OPTIONS = [
    _option(Flavour, Flavour.kamailio, "--flavour",
            help="Whose acc tables to write: kamailio (acc, missed_calls, acc_cdrs) or opensips "
                 "(OpenSIPS 3.x acc with CDR columns, missed_calls; docs/opensips.md). A file "
                 "keeps the flavour it was created with."),
    _option(List[str], None, "--proxy", metavar="IP[:PORT]",
            help="The proxy whose accounting to reproduce (repeatable). Default: detected from the "
                 "requests it relays; give it when replies the proxy sends itself must be told "
                 "apart."),
    _option(bool, False, "--report-cancels/--no-report-cancels",
            help="acc report_cancels: account CANCELs."),
    _option(bool, False, "--early-media/--no-early-media",
            help="acc early_media: account relayed 183s."),
    _option(bool, False, "--failed-transaction/--no-failed-transaction",
            help="acc failed_transaction_flag on INVITE: failed calls also go to acc."),
    _option(bool, False, "--detect-direction/--no-detect-direction",
            help="acc detect_direction: write a callee's BYE with the caller's tags."),
    _option(bool, False, "--missed-local-replies/--no-missed-local-replies",
            help="The proxy's script sets the missed-call flag before routing: its own stateful "
                 "negative replies to INVITEs (404 of a failed lookup, 408, 5xx) are missed "
                 "calls too; stateless ones and 401/407 challenges never are (docs/configuration.md)."),
    _option(bool, False, "--missed-per-branch/--no-missed-per-branch",
            help="The script sets the missed-call flag again in failure_route before relaying "
                 "to the next destination: every failed serial attempt is a missed call, not "
                 "only the first (docs/configuration.md)."),
    _option(List[str], None, "--acc-method", metavar="METHOD",
            help="Also account this method's 2xx (repeatable)."),
    _option(bool, False, "--local-time/--no-local-time",
            help="Write the time column in local time, not UTC."),
    _option(float, 7200.0, "--dialog-timeout", metavar="SECONDS",
            help="A dialog with no BYE ends (expired) after this."),
    _option(bool, False, "--cdr-start-on-confirmed/--no-cdr-start-on-confirmed",
            help="acc cdr_start_on_confirmed: a CDR starts at the answer, not the INVITE."),
    _option(bool, False, "--cdr-kamailio-exact/--no-cdr-kamailio-exact",
            help="Write no CDR for calls without an end (open or expired), as Kamailio."),
    _option(float, 120.0, "--invite-timeout", metavar="SECONDS",
            help="An INVITE with a 1xx but no final reply fails (408) this long after the 1xx: "
                 "the proxy's fr_inv_timer (Kamailio's default 120)."),
    _option(float, 32.0, "--no-reply-timeout", metavar="SECONDS",
            help="An INVITE with no reply at all ends after this: RFC 3261 Timer B (64*T1); "
                 "Kamailio's fr_timer is 30."),
    _option(bool, False, "--cdr-unanswered/--no-cdr-unanswered",
            help="Also write a CDR (end_reason unanswered) for an INVITE that nothing answered "
                 "and no proxy relayed, such as a scanner's; by default it is only counted "
                 "(state.invite_unanswered)."),
    _option(bool, False, "--syslog/--no-syslog",
            help="Also log each acc and missed_calls row as Kamailio's acc module does with "
                 "log_flag and log_missed_flag: `ACC: transaction answered: timestamp=...;"
                 "method=...` (stock log_extra), to the local syslog (/dev/log)."),
    _option(str, None, "--syslog-socket", metavar="PATH",
            help="The syslog daemon's unix socket (implies --syslog; default /dev/log)."),
    _option(str, None, "--syslog-file", metavar="FILE",
            help="Append the ACC lines to FILE instead of syslog, one a line (implies --syslog)."),
    _option(str, "daemon", "--syslog-facility", metavar="NAME",
            help="acc log_facility: daemon (Kamailio's default), local0 ... local7, LOG_LOCAL0..."),
    _option(str, "notice", "--syslog-level", metavar="LEVEL",
            help="acc log_level: notice (Kamailio's default, its 1), info, warning... or "
                 "Kamailio's number."),
    _option(RtpengineFormula, RtpengineFormula.g107, "--rtpengine-mos",
            help="The rtpengine whose MOS to reproduce in mos_rtpengine: g107 (its formula since "
                 "2024-10), g107.2 (--mos=G.107.2) or legacy (before; Debian 12's 10.5)."),
]
NAMES = frozenset(p.name for p in ACCOUNTING_OPTIONS)
# options with no OpenSIPS counterpart in sipprobe (docs/opensips.md): refused with --flavour
KAMAILIO_ONLY = (("--report-cancels", "report_cancels"), ("--early-media", "early_media"),
                 ("--detect-direction", "detect_direction"), ("--acc-method", "acc_method"),
                 ("--missed-local-replies", "missed_local_replies"),
                 ("--missed-per-branch", "missed_per_branch"),
                 ("--cdr-start-on-confirmed", "cdr_start_on_confirmed"),
                 ("--cdr-kamailio-exact", "cdr_kamailio_exact"),
                 ("--cdr-unanswered", "cdr_unanswered"), ("--syslog", "syslog"),
                 ("--syslog-socket", "syslog_socket"), ("--syslog-file", "syslog_file"))


def pipeline_arguments(values: dict) -> dict:
    """The options' values as replay_files'/sniff_interface's keyword arguments. Raises
    ValueError for a --proxy that is not IP or IP:PORT."""
    from pipeline import parse_proxy
    from sip_dissect.accounting import AccOptions

    try:
        proxies = [parse_proxy(p) for p in values["proxy"] or ()]
    except ValueError as exc:
        raise ValueError(f"--proxy wants IP or IP:PORT ([IPv6]:PORT): {exc}") from None
    acc = AccOptions(report_cancels=values["report_cancels"], early_media=values["early_media"],
                     failed_transaction=values["failed_transaction"],
                     detect_direction=values["detect_direction"],
                     missed_local_replies=values["missed_local_replies"],
                     missed_per_branch=values["missed_per_branch"],
                     methods=frozenset(m.upper() for m in values["acc_method"] or ()))
    flavour = values["flavour"].value
    if flavour != "kamailio":
        kamailio_only = [flag for flag, name in KAMAILIO_ONLY if values[name]]
        if kamailio_only:
            raise ValueError(f"{', '.join(kamailio_only)}: Kamailio-flavour options, not "
                             f"available with --flavour {flavour}")
    return {
        "syslog": syslog_options(values),
        "flavour": flavour,
        "proxies": proxies, "acc_options": acc, "local_time": values["local_time"],
        "dialog_timeout": values["dialog_timeout"],
        "invite_timeout": values["invite_timeout"],
        "no_reply_timeout": values["no_reply_timeout"],
        "cdr_options": {"start_on_confirmed": values["cdr_start_on_confirmed"],
                        "kamailio_exact": values["cdr_kamailio_exact"],
                        "unanswered": values["cdr_unanswered"]},
        "rtpengine_formula": values["rtpengine_mos"].value,
    }


def syslog_options(values: dict):
    """store.acc_log.SyslogOptions when the ACC lines are asked for, else None. Raises
    ValueError for an unknown facility or level, or both a socket and a file."""
    if not (values["syslog"] or values["syslog_socket"] or values["syslog_file"]):
        return None
    from store.acc_log import DEFAULT_SOCKET, SyslogOptions, facility_number, level_number

    if values["syslog_socket"] and values["syslog_file"]:
        raise ValueError("give --syslog-socket or --syslog-file, not both")
    return SyslogOptions(socket=values["syslog_socket"] or DEFAULT_SOCKET,
                         file=values["syslog_file"],
                         facility=facility_number(values["syslog_facility"]),
                         level=level_number(values["syslog_level"]))


def with_accounting(command):
    """Give `command` (whose parameters include `accounting: dict`) every accounting option;
    it is called with their values gathered into `accounting` by pipeline_arguments. The
    options come after the command's own, in help and on the command line alike."""
    own = inspect.signature(command, eval_str=True)
    kept = [p for p in own.parameters.values() if p.name != "accounting"]

    @functools.wraps(command)
    def run(**kwargs):
        values = {name: kwargs.pop(name) for name in NAMES}
        try:
            accounting = pipeline_arguments(values)
        except ValueError as exc:
            typer.echo(f"sipprobe: {exc}", err=True)
            raise typer.Exit(2) from None
        return command(accounting=accounting, **kwargs)

    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in kept] + ACCOUNTING_OPTIONS
    run.__signature__ = own.replace(parameters=params)
    run.__annotations__ = {p.name: p.annotation for p in params}
    del run.__wrapped__  # typer reads __signature__; nothing should unwrap to the original
    return run
