-- OpenSIPS 3.x accounting schema (SQLite, db_sqlite), for `sipprobe diff` against an OpenSIPS
-- proxy database (tests/test_diff_opensips.py). Debian 12 ships no OpenSIPS package, so this is
-- OpenSIPS' own DDL, unchanged: scripts/sqlite/standard-create.sql (the version table; OpenSIPS/
-- opensips commit 9ea5822a) then scripts/sqlite/acc-create.sql (acc version 7 with ms_duration,
-- missed_calls version 5; commit c0baa545). The acc_extra columns (src_user ... dst_domain) are
-- the operator's: the test adds them with ALTER TABLE, as an operator's db_extra would need.

CREATE TABLE version (
    table_name CHAR(32) NOT NULL,
    table_version INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT version_t_name_idx  UNIQUE (table_name)
);

INSERT INTO version (table_name, table_version) values ('acc','7');
CREATE TABLE acc (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    method CHAR(16) DEFAULT '' NOT NULL,
    from_tag CHAR(64) DEFAULT '' NOT NULL,
    to_tag CHAR(64) DEFAULT '' NOT NULL,
    callid CHAR(64) DEFAULT '' NOT NULL,
    sip_code CHAR(3) DEFAULT '' NOT NULL,
    sip_reason CHAR(32) DEFAULT '' NOT NULL,
    time DATETIME NOT NULL,
    duration INTEGER DEFAULT 0 NOT NULL,
    ms_duration INTEGER DEFAULT 0 NOT NULL,
    setuptime INTEGER DEFAULT 0 NOT NULL,
    created DATETIME DEFAULT NULL
);

CREATE INDEX acc_callid_idx  ON acc (callid);

INSERT INTO version (table_name, table_version) values ('missed_calls','5');
CREATE TABLE missed_calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    method CHAR(16) DEFAULT '' NOT NULL,
    from_tag CHAR(64) DEFAULT '' NOT NULL,
    to_tag CHAR(64) DEFAULT '' NOT NULL,
    callid CHAR(64) DEFAULT '' NOT NULL,
    sip_code CHAR(3) DEFAULT '' NOT NULL,
    sip_reason CHAR(32) DEFAULT '' NOT NULL,
    time DATETIME NOT NULL,
    setuptime INTEGER DEFAULT 0 NOT NULL,
    created DATETIME DEFAULT NULL
);

CREATE INDEX missed_calls_callid_idx  ON missed_calls (callid);
