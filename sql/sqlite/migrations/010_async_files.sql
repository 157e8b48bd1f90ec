-- Issue 15: calls that do not wait. An async row (`mi-worker submit`) is an ordinary request
-- row with async_call = 1: the same claim, retry, lease and reversal rules, but it carries its
-- own deadline (default 24 h) since nobody waits on it, and `mi-worker result` reads only
-- such rows.
ALTER TABLE medical_insurance_requests ADD COLUMN async_call INTEGER NOT NULL DEFAULT 0;

-- Files with the centre, catalogue sync (目录下载): see the PostgreSQL migration 010.
CREATE TABLE IF NOT EXISTS medical_insurance_files (
    file_id       INTEGER PRIMARY KEY AUTOINCREMENT,
    direction     TEXT    NOT NULL CHECK (direction IN ('UP', 'DOWN')),
    purpose       TEXT    NOT NULL,
    file_qury_no  TEXT,
    filename      TEXT    NOT NULL,
    local_path    TEXT    NOT NULL,
    size_bytes    INTEGER NOT NULL,
    sha256        TEXT    NOT NULL,
    dld_endtime   TEXT,
    created_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

CREATE TABLE IF NOT EXISTS medical_insurance_catalog (
    catalog_code  TEXT NOT NULL,
    item_code     TEXT NOT NULL,
    item_name     TEXT,
    ver           TEXT,
    updt_time     TEXT,
    row_hash      TEXT NOT NULL,
    row_data      TEXT NOT NULL,
    loaded_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    PRIMARY KEY (catalog_code, item_code)
);

CREATE TABLE IF NOT EXISTS medical_insurance_catalog_sync (
    sync_id         INTEGER PRIMARY KEY AUTOINCREMENT,
    catalog_code    TEXT    NOT NULL,
    started_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    finished_at     TEXT,
    outcome         TEXT    NOT NULL DEFAULT 'RUNNING'
                    CHECK (outcome IN ('RUNNING', 'OK', 'FAILED')),
    ver_from        TEXT,
    ver_to          TEXT,
    file_qury_no    TEXT,
    file_sha256     TEXT,
    bytes           INTEGER NOT NULL DEFAULT 0,
    rows_read       INTEGER NOT NULL DEFAULT 0,
    rows_inserted   INTEGER NOT NULL DEFAULT 0,
    rows_updated    INTEGER NOT NULL DEFAULT 0,
    rows_unchanged  INTEGER NOT NULL DEFAULT 0,
    duration_ms     INTEGER,
    error_message   TEXT
);
CREATE INDEX IF NOT EXISTS ix_mics_code ON medical_insurance_catalog_sync (catalog_code, sync_id);

CREATE VIEW IF NOT EXISTS v_mi_catalog_1301 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1301';

CREATE VIEW IF NOT EXISTS v_mi_catalog_1302 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1302';

CREATE VIEW IF NOT EXISTS v_mi_catalog_1303 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1303';

CREATE VIEW IF NOT EXISTS v_mi_catalog_1304 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1304';

CREATE VIEW IF NOT EXISTS v_mi_catalog_1305 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1305';

CREATE VIEW IF NOT EXISTS v_mi_catalog_1306 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1306';

CREATE VIEW IF NOT EXISTS v_mi_catalog_1307 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1307';

CREATE VIEW IF NOT EXISTS v_mi_catalog_1308 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1308';

CREATE VIEW IF NOT EXISTS v_mi_catalog_1309 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1309';

CREATE VIEW IF NOT EXISTS v_mi_catalog_1310 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1310';

CREATE VIEW IF NOT EXISTS v_mi_catalog_1311 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1311';

CREATE VIEW IF NOT EXISTS v_mi_catalog_1312 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1312';

CREATE VIEW IF NOT EXISTS v_mi_catalog_1313 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1313';

CREATE VIEW IF NOT EXISTS v_mi_catalog_1314 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1314';

CREATE VIEW IF NOT EXISTS v_mi_catalog_1315 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1315';

CREATE VIEW IF NOT EXISTS v_mi_catalog_1316 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1316';

CREATE VIEW IF NOT EXISTS v_mi_catalog_1317 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1317';

CREATE VIEW IF NOT EXISTS v_mi_catalog_1318 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1318';

CREATE VIEW IF NOT EXISTS v_mi_catalog_1319 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1319';

-- 3202 对明细账 results: see the PostgreSQL migration 010.
CREATE TABLE IF NOT EXISTS medical_insurance_recon_detail (
    detail_id       INTEGER PRIMARY KEY AUTOINCREMENT,
    stmt_date       TEXT NOT NULL,
    insutype        TEXT,
    clr_type        TEXT,
    setl_id         TEXT,
    mdtrt_id        TEXT,
    psn_no          TEXT,
    msgid           TEXT,
    stmt_rslt       TEXT NOT NULL,
    memo            TEXT,
    medfee_sumamt   TEXT,
    fund_pay_sumamt TEXT,
    acct_pay        TEXT,
    request_id      INTEGER,
    fix_request_id  INTEGER,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);
CREATE INDEX IF NOT EXISTS ix_mird_date ON medical_insurance_recon_detail (stmt_date, detail_id);
