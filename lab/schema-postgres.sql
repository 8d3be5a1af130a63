-- Kamailio's accounting tables in PostgreSQL, for tests/test_diff_postgres.py and for a lab
-- proxy on db_postgres. Base tables: the columns, types and indexes of kamctl's PostgreSQL DDL
-- (kamailio/kamailio utils/kamctl/postgres/standard-create.sql and acc-create.sql, commit
-- b847ff224ac8e738e07f9631cb7ba27091d9b22b: times TIMESTAMP WITHOUT TIME ZONE, id SERIAL).
-- Extras: the same columns lab/schema.sql adds for SQLite (stock kamailio.cfg's WITH_ACCDB
-- list and lab/kamailio.cfg's CDR extras), added as an operator would, with ALTER TABLE.

CREATE TABLE version (
    id SERIAL PRIMARY KEY NOT NULL,
    table_name VARCHAR(32) NOT NULL,
    table_version INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT version_table_name_idx UNIQUE (table_name)
);
INSERT INTO version (table_name, table_version) VALUES ('version', 1);

CREATE TABLE acc (
    id SERIAL PRIMARY KEY NOT NULL,
    method VARCHAR(16) DEFAULT '' NOT NULL,
    from_tag VARCHAR(64) DEFAULT '' NOT NULL,
    to_tag VARCHAR(64) DEFAULT '' NOT NULL,
    callid VARCHAR(255) DEFAULT '' NOT NULL,
    sip_code VARCHAR(3) DEFAULT '' NOT NULL,
    sip_reason VARCHAR(128) DEFAULT '' NOT NULL,
    time TIMESTAMP WITHOUT TIME ZONE NOT NULL
);
CREATE INDEX acc_callid_idx ON acc (callid);
INSERT INTO version (table_name, table_version) VALUES ('acc', 5);

CREATE TABLE acc_cdrs (
    id SERIAL PRIMARY KEY NOT NULL,
    start_time TIMESTAMP WITHOUT TIME ZONE DEFAULT '2000-01-01 00:00:00' NOT NULL,
    end_time TIMESTAMP WITHOUT TIME ZONE DEFAULT '2000-01-01 00:00:00' NOT NULL,
    duration REAL DEFAULT 0 NOT NULL
);
CREATE INDEX acc_cdrs_start_time_idx ON acc_cdrs (start_time);
INSERT INTO version (table_name, table_version) VALUES ('acc_cdrs', 2);

CREATE TABLE missed_calls (
    id SERIAL PRIMARY KEY NOT NULL,
    method VARCHAR(16) DEFAULT '' NOT NULL,
    from_tag VARCHAR(64) DEFAULT '' NOT NULL,
    to_tag VARCHAR(64) DEFAULT '' NOT NULL,
    callid VARCHAR(255) DEFAULT '' NOT NULL,
    sip_code VARCHAR(3) DEFAULT '' NOT NULL,
    sip_reason VARCHAR(128) DEFAULT '' NOT NULL,
    time TIMESTAMP WITHOUT TIME ZONE NOT NULL
);
CREATE INDEX missed_calls_callid_idx ON missed_calls (callid);
INSERT INTO version (table_name, table_version) VALUES ('missed_calls', 4);

ALTER TABLE acc
    ADD COLUMN src_user VARCHAR(64) DEFAULT '' NOT NULL,
    ADD COLUMN src_domain VARCHAR(128) DEFAULT '' NOT NULL,
    ADD COLUMN src_ip VARCHAR(64) DEFAULT '' NOT NULL,
    ADD COLUMN dst_ouser VARCHAR(64) DEFAULT '' NOT NULL,
    ADD COLUMN dst_user VARCHAR(64) DEFAULT '' NOT NULL,
    ADD COLUMN dst_domain VARCHAR(128) DEFAULT '' NOT NULL;

ALTER TABLE missed_calls
    ADD COLUMN src_user VARCHAR(64) DEFAULT '' NOT NULL,
    ADD COLUMN src_domain VARCHAR(128) DEFAULT '' NOT NULL,
    ADD COLUMN src_ip VARCHAR(64) DEFAULT '' NOT NULL,
    ADD COLUMN dst_ouser VARCHAR(64) DEFAULT '' NOT NULL,
    ADD COLUMN dst_user VARCHAR(64) DEFAULT '' NOT NULL,
    ADD COLUMN dst_domain VARCHAR(128) DEFAULT '' NOT NULL;

-- CDR extras nullable: acc writes NULL for an unset dlg_var (lab/schema.sql)
ALTER TABLE acc_cdrs
    ADD COLUMN callid VARCHAR(255),
    ADD COLUMN from_tag VARCHAR(64),
    ADD COLUMN to_tag VARCHAR(64),
    ADD COLUMN src_user VARCHAR(64),
    ADD COLUMN src_domain VARCHAR(128),
    ADD COLUMN src_ip VARCHAR(64),
    ADD COLUMN dst_ouser VARCHAR(64),
    ADD COLUMN dst_user VARCHAR(64),
    ADD COLUMN dst_domain VARCHAR(128),
    ADD COLUMN sip_code VARCHAR(3),
    ADD COLUMN sip_reason VARCHAR(128);
