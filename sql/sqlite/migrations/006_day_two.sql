-- Day-two operations: monotonic per-worker counters on the heartbeat row (Prometheus reads
-- them instead of scanning the history) and the archive the retention job moves old terminal
-- rows into.

ALTER TABLE sdk_heartbeat ADD COLUMN completed_total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sdk_heartbeat ADD COLUMN error_total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sdk_heartbeat ADD COLUMN uncertain_total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sdk_heartbeat ADD COLUMN requeued_total INTEGER NOT NULL DEFAULT 0;
-- Per interface and outcome counts and latency histogram of this worker process (JSON).
ALTER TABLE sdk_heartbeat ADD COLUMN counters_json TEXT;

-- Same columns as medical_insurance_requests plus the time they were moved.
CREATE TABLE IF NOT EXISTS medical_insurance_requests_archive (
    request_id        INTEGER PRIMARY KEY,
    interface_code    TEXT    NOT NULL,
    input_data        TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    priority          INTEGER NOT NULL,
    timeout_seconds   INTEGER NOT NULL,
    max_retry_count   INTEGER NOT NULL,
    attempts          INTEGER NOT NULL,
    psn_no            TEXT,
    insuplc_admdvs    TEXT,
    idempotency_key   TEXT,
    his_fee_id        TEXT,
    msgid             TEXT,
    msgid_seq         INTEGER,
    worker_id         TEXT,
    claim_token       TEXT,
    limit_slot        INTEGER,
    request_time      TEXT    NOT NULL,
    deadline_at       TEXT    NOT NULL,
    next_attempt_at   TEXT    NOT NULL,
    claimed_at        TEXT,
    lease_expires_at  TEXT,
    response_time     TEXT,
    infcode           TEXT,
    response_data     TEXT,
    error_code        INTEGER,
    error_message     TEXT,
    attempt_log       TEXT,
    needs_reversal    INTEGER NOT NULL,
    parent_request_id INTEGER,
    resolved_at       TEXT,
    resolved_by       TEXT,
    resolution_note   TEXT,
    archived_at       TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);
CREATE INDEX IF NOT EXISTS ix_mira_request_time ON medical_insurance_requests_archive (request_time);
CREATE INDEX IF NOT EXISTS ix_mira_msgid ON medical_insurance_requests_archive (msgid);
