"""acc and missed_calls rows as the lines Kamailio's acc module logs, to syslog or a file.

Kamailio's acc writes a line per accounted transaction when `log_flag` / `log_missed_flag` are
set (src/modules/acc/acc.c acc_log_request, kamailio/kamailio at 38711a3e, 2026-08-21):

    ACC: transaction answered: timestamp=1795431445;method=INVITE;from_tag=...;to_tag=...;
    call_id=...;code=200;reason=OK;src_user=alice;src_domain=...;src_ip=...;dst_ouser=...;
    dst_user=...;dst_domain=...                                   (one line, no spaces added)

- the text is ACC_ANSWERED ("ACC: transaction answered: ") for an `acc` row (acc_onreply, a
  failed BYE or a failed_transaction INVITE included) and ACC_MISSED ("ACC: call missed: ")
  for a `missed_calls` row (on_missed); acc_logic.h;
- `timestamp` is acc_env.ts, the time_t of the moment the final reply was handled: the same
  second as the database row's `time` (time_mode 0, the default);
- then the core attributes in core2strar's order (method, from_tag, to_tag, call_id, code,
  reason) and the log_extra ones in their declared order, each `;name=value`, values as they
  are (an empty value stays `name=`). The extras here are the stock kamailio.cfg's log_extra
  (src_user=$fU;src_domain=$fd;src_ip=$si;dst_ouser=$tU;dst_user=$rU;dst_domain=$rd), which are
  also the acc table's db_extra columns.

Kamailio sends the line with syslog(3): facility log_facility (default LOG_DAEMON), priority
log_level (default 1, L_NOTICE: LOG_NOTICE). AccLog does the same over the local syslog socket
(/dev/log, or another unix socket), framed as glibc's syslog(3) frames it (RFC 3164:
`<PRI>Mmm dd hh:mm:ss sipprobe[PID]: ACC: ...`), or appends the bare lines to a file.
Kamailio's own prefix before "ACC:" (level, module, source file and line, function) is not
imitated: log parsers key on the "ACC:" text.
"""
from __future__ import annotations

import errno
import os
import socket
import time
from dataclasses import dataclass

from store import StoreError

ANSWERED = "ACC: transaction answered: "  # acc_logic.h ACC_ANSWERED
MISSED = "ACC: call missed: "  # acc_logic.h ACC_MISSED
TEXT = {"acc": ANSWERED, "missed_calls": MISSED}
# (log attribute, AccRecord field): core2strar's attributes (acc_api.h A_METHOD ... A_STATUS)
CORE = (("method", "method"), ("from_tag", "from_tag"), ("to_tag", "to_tag"),
        ("call_id", "callid"), ("code", "sip_code"), ("reason", "sip_reason"))
# the stock kamailio.cfg's log_extra (= its db_extra columns), in its order
LOG_EXTRA = (("src_user", "src_user"), ("src_domain", "src_domain"), ("src_ip", "src_ip"),
             ("dst_ouser", "dst_ouser"), ("dst_user", "dst_user"), ("dst_domain", "dst_domain"))
ATTRIBUTES = CORE + LOG_EXTRA

# syslog(3) numbers (RFC 5424 section 6.2.1); the names Kamailio's log_facility takes, LOG_ dropped
FACILITIES = {"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
              "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
              **{f"local{n}": 16 + n for n in range(8)}}
LEVELS = {"emerg": 0, "alert": 1, "crit": 2, "err": 3, "warning": 4, "notice": 5, "info": 6,
          "debug": 7}
# Kamailio's log_level numbers (core/dprint.h L_ALERT ... L_DBG) as its syslog levels
# (core/dprint.c log_level_info)
KAMAILIO_LEVELS = {-5: "alert", -4: "crit", -3: "crit", -2: "crit", -1: "err", 0: "warning",
                   1: "notice", 2: "info", 3: "debug"}
DEFAULT_SOCKET = "/dev/log"
# A stalled daemon must not stall the probe: a line waits at most SEND_TIMEOUT, and after a
# failure the lines of the next RETRY_AFTER seconds are counted as not sent without waiting
SEND_TIMEOUT = 0.25
RETRY_AFTER = 5.0
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def acc_line(rec) -> str:
    """The line Kamailio's acc_log_request logs for this AccRecord, without a newline."""
    values = [TEXT[rec.table], "timestamp=", str(int(rec.time))]  # time_t: floor of epoch
    for name, field in ATTRIBUTES:
        value = getattr(rec, field)
        values += (";", name, "=", "" if value is None else str(value))
    return "".join(values)


def facility_number(name: str) -> int:
    """A facility as Kamailio's log_facility names it (LOG_DAEMON, LOG_LOCAL0) or bare (daemon,
    local0); ValueError otherwise."""
    key = name.strip().lower().removeprefix("log_")
    if key not in FACILITIES:
        raise ValueError(f"unknown syslog facility {name!r}: give daemon (Kamailio's default), "
                         f"local0 ... local7, or {', '.join(sorted(FACILITIES))}")
    return FACILITIES[key]


def level_number(name: str) -> int:
    """A level by its syslog name (notice, LOG_INFO) or Kamailio's log_level number (1 =
    L_NOTICE); ValueError otherwise."""
    key = name.strip().lower().removeprefix("log_")
    if key.lstrip("-").isdigit() and int(key) in KAMAILIO_LEVELS:
        key = KAMAILIO_LEVELS[int(key)]
    if key not in LEVELS:
        raise ValueError(f"unknown syslog level {name!r}: give notice (Kamailio's default), "
                         f"{', '.join(LEVELS)}, or Kamailio's log_level number (-5 to 3)")
    return LEVELS[key]


@dataclass(frozen=True)
class SyslogOptions:
    """Where the lines go: `file` (appended, one line each) or the unix `socket` (syslog)."""

    socket: str = DEFAULT_SOCKET
    file: str | None = None
    facility: int = FACILITIES["daemon"]  # Kamailio's log_facility default, LOG_DAEMON
    level: int = LEVELS["notice"]  # Kamailio's log_level default, 1 (L_NOTICE)
    ident: str = "sipprobe"


class AccLog:
    """A sink of AccRecords (pipeline's): each row's ACC line, to syslog or a file. A line
    that cannot be sent (the syslog daemon gone or stalled) is counted in `failed`, the socket
    reopened RETRY_AFTER seconds later; the accounting goes on. Use as a context manager."""

    def __init__(self, options: SyslogOptions, retry_after: float = RETRY_AFTER):
        self.options = options
        self.lines = 0
        self.failed = 0
        self.retry_after = retry_after
        self._retry_at = 0.0  # time.monotonic() before which a failed socket is not retried
        self._file = self._sock = None
        self._pri = f"<{options.facility * 8 + options.level}>"
        self._tag = f"{options.ident}[{os.getpid()}]: "
        if options.file is not None:
            try:
                self._file = open(options.file, "a", encoding="utf-8", buffering=1)
            except OSError as exc:
                raise StoreError(f"cannot write the ACC lines to {options.file}: "
                                 f"{exc.strerror or exc}") from None
        else:
            try:
                self._connect()
            except OSError as exc:
                raise StoreError(f"cannot reach syslog at {options.socket}: "
                                 f"{exc.strerror or exc}; is a syslog daemon running? "
                                 "(--syslog-file FILE writes the lines to a file)") from None

    def _connect(self) -> None:
        """The socket as glibc's openlog: datagram, or stream where the daemon wants one."""
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            sock = socket.socket(socket.AF_UNIX, kind)
            try:
                sock.connect(self.options.socket)
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EPROTOTYPE and kind == socket.SOCK_DGRAM:
                    continue
                raise
            sock.settimeout(SEND_TIMEOUT)
            self._sock, self._stream = sock, kind == socket.SOCK_STREAM
            return

    def __call__(self, rec) -> None:
        line = acc_line(rec)
        if self._file is not None:
            try:
                self._file.write(line + "\n")
                self.lines += 1
            except OSError:  # a full disk: the accounting goes on, the line is counted
                self.failed += 1
            return
        self._send(line)

    def _send(self, line: str) -> None:
        now = time.localtime()
        stamp = f"{_MONTHS[now.tm_mon - 1]} {now.tm_mday:2d} {time.strftime('%H:%M:%S', now)} "
        data = (self._pri + stamp + self._tag + line).encode("utf-8", "replace")
        try:
            if self._sock is None:
                if time.monotonic() < self._retry_at:
                    self.failed += 1
                    return
                self._connect()
            if self._stream:
                self._sock.sendall(data + b"\0")  # glibc's framing on a stream socket
            else:
                self._sock.send(data)
            self.lines += 1
        except OSError:  # the daemon gone (ECONNREFUSED, ENOENT), or stalled (timeout)
            self.failed += 1
            self._retry_at = time.monotonic() + self.retry_after
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:  # what a full disk kept in the buffer: counted already
                pass
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> "AccLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
