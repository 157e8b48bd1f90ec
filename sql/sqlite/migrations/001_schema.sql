-- mi-worker schema for SQLite (the embedded default). Times are UTC text
-- 'YYYY-MM-DD HH:MM:SS.SSS' from the database clock, so they compare as strings.

CREATE TABLE IF NOT EXISTS medical_insurance_requests (
    request_id        INTEGER PRIMARY KEY AUTOINCREMENT,
    interface_code    TEXT    NOT NULL,
    input_data        TEXT    NOT NULL,
    status            TEXT    NOT NULL DEFAULT 'PENDING'
        CHECK (status IN ('PENDING', 'PROCESSING', 'COMPLETED', 'ERROR', 'TIMEOUT',
                          'UNCERTAIN', 'REVERSED', 'NEEDS_MANUAL')),
    priority          INTEGER NOT NULL DEFAULT 5,
    timeout_seconds   INTEGER NOT NULL DEFAULT 30,
    max_retry_count   INTEGER NOT NULL DEFAULT 3,
    attempts          INTEGER NOT NULL DEFAULT 0,
    psn_no            TEXT,
    insuplc_admdvs    TEXT,
    idempotency_key   TEXT,
    his_fee_id        TEXT,
    msgid             TEXT,
    msgid_seq         INTEGER,
    worker_id         TEXT,
    claim_token       TEXT,
    limit_slot        INTEGER,
    request_time      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    deadline_at       TEXT    NOT NULL,
    next_attempt_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    claimed_at        TEXT,
    lease_expires_at  TEXT,
    response_time     TEXT,
    infcode           TEXT,
    response_data     TEXT,
    error_code        INTEGER,
    error_message     TEXT,
    attempt_log       TEXT,
    needs_reversal    INTEGER NOT NULL DEFAULT 0,
    parent_request_id INTEGER,
    resolved_at       TEXT,
    resolved_by       TEXT,
    resolution_note   TEXT
);

CREATE INDEX IF NOT EXISTS ix_mir_claim ON medical_insurance_requests (priority, request_id)
    WHERE status = 'PENDING';
CREATE INDEX IF NOT EXISTS ix_mir_processing ON medical_insurance_requests (claim_token)
    WHERE status = 'PROCESSING';
CREATE INDEX IF NOT EXISTS ix_mir_psn_open ON medical_insurance_requests (psn_no, request_id)
    WHERE status IN ('PENDING', 'PROCESSING', 'UNCERTAIN') OR needs_reversal = 1;
CREATE UNIQUE INDEX IF NOT EXISTS ux_mir_psn_processing ON medical_insurance_requests (psn_no)
    WHERE status = 'PROCESSING' AND psn_no IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS ux_mir_slot_processing
    ON medical_insurance_requests (interface_code, limit_slot)
    WHERE status = 'PROCESSING' AND limit_slot IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS ux_mir_msgid ON medical_insurance_requests (msgid)
    WHERE msgid IS NOT NULL;
CREATE INDEX IF NOT EXISTS ix_mir_msgid_seq ON medical_insurance_requests (msgid_seq);
CREATE UNIQUE INDEX IF NOT EXISTS ux_mir_idempotency ON medical_insurance_requests (idempotency_key)
    WHERE idempotency_key IS NOT NULL AND status NOT IN ('ERROR', 'TIMEOUT');
CREATE INDEX IF NOT EXISTS ix_mir_request_time ON medical_insurance_requests (request_time);
CREATE INDEX IF NOT EXISTS ix_mir_parent ON medical_insurance_requests (parent_request_id)
    WHERE parent_request_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS ix_mir_doubt ON medical_insurance_requests (request_id)
    WHERE status = 'UNCERTAIN' OR needs_reversal = 1;

-- The msgid sequence (SQLite has no sequences): a one-row counter that every msgid assignment
-- advances, through the trigger below for claims and directly for sign-in messages.
CREATE TABLE IF NOT EXISTS medical_insurance_msgid_counter (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO medical_insurance_msgid_counter (id, value) VALUES (1, 0);

CREATE TRIGGER IF NOT EXISTS tr_mir_msgid_seq
AFTER UPDATE OF msgid_seq ON medical_insurance_requests
WHEN NEW.msgid_seq IS NOT NULL
BEGIN
    UPDATE medical_insurance_msgid_counter SET value = MAX(value, NEW.msgid_seq) WHERE id = 1;
END;

CREATE TABLE IF NOT EXISTS sdk_heartbeat (
    service_name    TEXT    NOT NULL,
    worker_id       TEXT    NOT NULL,
    host            TEXT,
    pid             INTEGER,
    version         TEXT,
    started_at      TEXT,
    last_heartbeat  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    status          TEXT    NOT NULL DEFAULT 'RUNNING',
    in_flight       INTEGER NOT NULL DEFAULT 0,
    processed_total INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (service_name, worker_id)
);

CREATE TABLE IF NOT EXISTS medical_insurance_error_log (
    log_id        INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id    INTEGER,
    error_code    INTEGER,
    error_message TEXT,
    detail        TEXT,
    create_time   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);
CREATE INDEX IF NOT EXISTS ix_mie_time ON medical_insurance_error_log (create_time);

CREATE TABLE IF NOT EXISTS medical_insurance_alerts (
    alert_id      INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_type    TEXT NOT NULL,
    alert_level   TEXT NOT NULL,
    alert_message TEXT NOT NULL,
    detail        TEXT,
    raised_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    last_seen_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    resolved_at   TEXT,
    notified_at   TEXT
);
CREATE INDEX IF NOT EXISTS ix_mia_open ON medical_insurance_alerts (alert_type)
    WHERE resolved_at IS NULL;

CREATE TABLE IF NOT EXISTS medical_insurance_reconciliation (
    recon_id        INTEGER PRIMARY KEY AUTOINCREMENT,
    stmt_date       TEXT NOT NULL,
    insutype        TEXT NOT NULL,
    clr_type        TEXT NOT NULL,
    setl_optins     TEXT,
    medfee_sumamt   NUMERIC NOT NULL,
    fund_pay_sumamt NUMERIC NOT NULL,
    acct_pay        NUMERIC NOT NULL,
    setl_cnt        INTEGER NOT NULL,
    stmt_rslt       TEXT,
    stmt_rslt_dscr  TEXT,
    request_id      INTEGER,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

CREATE TABLE IF NOT EXISTS medical_insurance_limits (
    interface_code TEXT PRIMARY KEY,
    max_in_flight  INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS medical_insurance_interfaces (
    interface_code TEXT PRIMARY KEY,
    interface_name TEXT NOT NULL,
    kind           TEXT NOT NULL,
    reversible     INTEGER NOT NULL DEFAULT 0,
    cancel_code    TEXT
);

CREATE VIEW IF NOT EXISTS v_medical_insurance_result AS
SELECT r.request_id,
       r.interface_code,
       r.status,
       CASE
           WHEN r.status = 'COMPLETED' AND r.needs_reversal = 0 THEN 'SUCCESS'
           WHEN r.status = 'COMPLETED' THEN 'UNCERTAIN'
           WHEN r.status IN ('PENDING', 'PROCESSING') THEN 'IN_PROGRESS'
           WHEN r.status IN ('ERROR', 'TIMEOUT') THEN r.status
           ELSE 'UNCERTAIN'
       END AS result_status,
       r.response_data,
       r.infcode,
       r.error_code,
       r.error_message,
       r.msgid,
       r.needs_reversal,
       r.request_time,
       r.response_time,
       r.deadline_at,
       strftime('%Y-%m-%d %H:%M:%f', r.request_time, '+8 hours') AS request_time_cn,
       strftime('%Y-%m-%d %H:%M:%f', r.response_time, '+8 hours') AS response_time_cn,
       CAST(round((julianday(r.response_time) - julianday(r.request_time)) * 86400000) AS INTEGER)
           AS latency_ms
FROM medical_insurance_requests r;
