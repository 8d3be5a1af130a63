-- Kamailio's accounting tables in MySQL/MariaDB, for tests/test_diff_mysql.py and for a lab
-- proxy on db_mysql. Base tables: the columns, types and indexes of kamctl's MySQL DDL
-- (kamailio/kamailio utils/kamctl/mysql/standard-create.sql and acc-create.sql, commit
-- 6211744d557f70d50377f4c6c795c2a4f485d6d0: times DATETIME, duration FLOAT(10,3)).
-- Extras: the same columns lab/schema.sql adds for SQLite, added with ALTER TABLE.

CREATE TABLE `version` (
    `id` INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
    `table_name` VARCHAR(32) NOT NULL,
    `table_version` INT UNSIGNED DEFAULT 0 NOT NULL,
    CONSTRAINT table_name_idx UNIQUE (`table_name`)
);
INSERT INTO version (table_name, table_version) VALUES ('version', 1);

CREATE TABLE `acc` (
    `id` INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
    `method` VARCHAR(16) DEFAULT '' NOT NULL,
    `from_tag` VARCHAR(64) DEFAULT '' NOT NULL,
    `to_tag` VARCHAR(64) DEFAULT '' NOT NULL,
    `callid` VARCHAR(255) DEFAULT '' NOT NULL,
    `sip_code` VARCHAR(3) DEFAULT '' NOT NULL,
    `sip_reason` VARCHAR(128) DEFAULT '' NOT NULL,
    `time` DATETIME NOT NULL
);
CREATE INDEX callid_idx ON acc (`callid`);
INSERT INTO version (table_name, table_version) VALUES ('acc', 5);

CREATE TABLE `acc_cdrs` (
    `id` INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
    `start_time` DATETIME DEFAULT '2000-01-01 00:00:00' NOT NULL,
    `end_time` DATETIME DEFAULT '2000-01-01 00:00:00' NOT NULL,
    `duration` FLOAT(10,3) DEFAULT 0 NOT NULL
);
CREATE INDEX start_time_idx ON acc_cdrs (`start_time`);
INSERT INTO version (table_name, table_version) VALUES ('acc_cdrs', 2);

CREATE TABLE `missed_calls` (
    `id` INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
    `method` VARCHAR(16) DEFAULT '' NOT NULL,
    `from_tag` VARCHAR(64) DEFAULT '' NOT NULL,
    `to_tag` VARCHAR(64) DEFAULT '' NOT NULL,
    `callid` VARCHAR(255) DEFAULT '' NOT NULL,
    `sip_code` VARCHAR(3) DEFAULT '' NOT NULL,
    `sip_reason` VARCHAR(128) DEFAULT '' NOT NULL,
    `time` DATETIME NOT NULL
);
CREATE INDEX callid_idx ON missed_calls (`callid`);
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
