-- Kamailio 5.6 accounting schema for the sipprobe lab (SQLite, db_sqlite).
-- Base columns follow /usr/share/kamailio/db_sqlite/{standard,acc}-create.sql
-- (kamailio-sqlite-modules 5.6.3); extras follow the columns that stock
-- kamailio.cfg documents for WITH_ACCDB, plus the CDR extras of lab/kamailio.cfg.

CREATE TABLE version (
    id INTEGER PRIMARY KEY NOT NULL,
    table_name VARCHAR(32) NOT NULL,
    table_version INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT version_table_name_idx UNIQUE (table_name)
);
INSERT INTO version (table_name, table_version) VALUES ('version', 1);

-- Transaction accounting: one row per INVITE/BYE/re-INVITE answered 2xx
-- (or failed BYE, via failed_transaction_flag).
CREATE TABLE acc (
    id INTEGER PRIMARY KEY NOT NULL,
    method VARCHAR(16) DEFAULT '' NOT NULL,
    from_tag VARCHAR(128) DEFAULT '' NOT NULL,
    to_tag VARCHAR(128) DEFAULT '' NOT NULL,
    callid VARCHAR(255) DEFAULT '' NOT NULL,
    sip_code VARCHAR(3) DEFAULT '' NOT NULL,
    sip_reason VARCHAR(128) DEFAULT '' NOT NULL,
    time TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    src_user VARCHAR(64) DEFAULT '' NOT NULL,
    src_domain VARCHAR(128) DEFAULT '' NOT NULL,
    src_ip VARCHAR(64) DEFAULT '' NOT NULL,
    dst_ouser VARCHAR(64) DEFAULT '' NOT NULL,
    dst_user VARCHAR(64) DEFAULT '' NOT NULL,
    dst_domain VARCHAR(128) DEFAULT '' NOT NULL
);
CREATE INDEX acc_callid_idx ON acc (callid);
INSERT INTO version (table_name, table_version) VALUES ('acc', 5);

CREATE TABLE missed_calls (
    id INTEGER PRIMARY KEY NOT NULL,
    method VARCHAR(16) DEFAULT '' NOT NULL,
    from_tag VARCHAR(128) DEFAULT '' NOT NULL,
    to_tag VARCHAR(128) DEFAULT '' NOT NULL,
    callid VARCHAR(255) DEFAULT '' NOT NULL,
    sip_code VARCHAR(3) DEFAULT '' NOT NULL,
    sip_reason VARCHAR(128) DEFAULT '' NOT NULL,
    time TIMESTAMP WITHOUT TIME ZONE NOT NULL,
    src_user VARCHAR(64) DEFAULT '' NOT NULL,
    src_domain VARCHAR(128) DEFAULT '' NOT NULL,
    src_ip VARCHAR(64) DEFAULT '' NOT NULL,
    dst_ouser VARCHAR(64) DEFAULT '' NOT NULL,
    dst_user VARCHAR(64) DEFAULT '' NOT NULL,
    dst_domain VARCHAR(128) DEFAULT '' NOT NULL
);
CREATE INDEX missed_calls_callid_idx ON missed_calls (callid);
INSERT INTO version (table_name, table_version) VALUES ('missed_calls', 4);

-- Dialog CDRs. Extras are nullable: acc writes NULL for an unset dlg_var
-- and a NOT NULL column would make the whole insert fail (LAB-NOTES).
CREATE TABLE acc_cdrs (
    id INTEGER PRIMARY KEY NOT NULL,
    start_time TIMESTAMP WITHOUT TIME ZONE DEFAULT '2000-01-01 00:00:00' NOT NULL,
    end_time TIMESTAMP WITHOUT TIME ZONE DEFAULT '2000-01-01 00:00:00' NOT NULL,
    duration REAL DEFAULT 0 NOT NULL,
    callid VARCHAR(255),
    from_tag VARCHAR(128),
    to_tag VARCHAR(128),
    src_user VARCHAR(64),
    src_domain VARCHAR(128),
    src_ip VARCHAR(64),
    dst_ouser VARCHAR(64),
    dst_user VARCHAR(64),
    dst_domain VARCHAR(128),
    sip_code VARCHAR(3),
    sip_reason VARCHAR(128)
);
CREATE INDEX acc_cdrs_start_time_idx ON acc_cdrs (start_time);
INSERT INTO version (table_name, table_version) VALUES ('acc_cdrs', 2);
