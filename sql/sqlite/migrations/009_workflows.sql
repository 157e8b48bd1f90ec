-- Issue 14: settlement workflows (saga on the database, DESIGN.md §11): one row per workflow
-- and one request row per step or undo (workflow_step n = step n, -n = the undo of step n;
-- the unique index makes enqueueing a step idempotent).
CREATE TABLE IF NOT EXISTS medical_insurance_workflows (
    workflow_id     INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT    NOT NULL,
    input_data      TEXT    NOT NULL,
    wf_definition   TEXT,
    status          TEXT    NOT NULL DEFAULT 'RUNNING'
        CHECK (status IN ('RUNNING', 'COMPLETED', 'COMPENSATING', 'COMPENSATED',
                          'FAILED_NEEDS_MANUAL')),
    current_step    INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT,
    his_fee_id      TEXT,
    psn_no          TEXT,
    timeout_seconds INTEGER NOT NULL DEFAULT 60,
    deadline_at     TEXT    NOT NULL,
    wf_result       TEXT,
    error_code      INTEGER,
    error_message   TEXT,
    reason_code     INTEGER,
    reason          TEXT,
    his_token       TEXT,
    created_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    updated_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')),
    finished_at     TEXT
);
CREATE INDEX IF NOT EXISTS ix_miw_open ON medical_insurance_workflows (workflow_id)
    WHERE status IN ('RUNNING', 'COMPENSATING');
CREATE UNIQUE INDEX IF NOT EXISTS ux_miw_key ON medical_insurance_workflows (idempotency_key)
    WHERE idempotency_key IS NOT NULL AND status <> 'COMPENSATED';

ALTER TABLE medical_insurance_requests ADD COLUMN workflow_id INTEGER;
ALTER TABLE medical_insurance_requests ADD COLUMN workflow_step INTEGER;
CREATE UNIQUE INDEX IF NOT EXISTS ux_mir_workflow_step
    ON medical_insurance_requests (workflow_id, workflow_step) WHERE workflow_id IS NOT NULL;
