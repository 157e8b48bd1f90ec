-- Day-two operations: monotonic per-worker counters on the heartbeat row (Prometheus reads
-- them instead of scanning the history) and the archive the retention job moves old terminal
-- rows into.

ALTER TABLE sdk_heartbeat ADD COLUMN IF NOT EXISTS completed_total bigint NOT NULL DEFAULT 0;
ALTER TABLE sdk_heartbeat ADD COLUMN IF NOT EXISTS error_total bigint NOT NULL DEFAULT 0;
ALTER TABLE sdk_heartbeat ADD COLUMN IF NOT EXISTS uncertain_total bigint NOT NULL DEFAULT 0;
ALTER TABLE sdk_heartbeat ADD COLUMN IF NOT EXISTS requeued_total bigint NOT NULL DEFAULT 0;
-- Per interface and outcome counts and latency histogram of this worker process (JSON).
ALTER TABLE sdk_heartbeat ADD COLUMN IF NOT EXISTS counters_json text;

-- Same columns as medical_insurance_requests (no defaults, no checks: rows arrive whole)
-- plus the time they were moved.
CREATE TABLE IF NOT EXISTS medical_insurance_requests_archive (
    request_id        bigint       PRIMARY KEY,
    interface_code    varchar(10)  NOT NULL,
    input_data        text         NOT NULL,
    status            varchar(20)  NOT NULL,
    priority          integer      NOT NULL,
    timeout_seconds   integer      NOT NULL,
    max_retry_count   integer      NOT NULL,
    attempts          integer      NOT NULL,
    psn_no            varchar(30),
    insuplc_admdvs    varchar(6),
    idempotency_key   varchar(100),
    his_fee_id        varchar(64),
    msgid             varchar(30),
    worker_id         varchar(100),
    claim_token       varchar(40),
    limit_slot        integer,
    request_time      timestamptz  NOT NULL,
    deadline_at       timestamptz  NOT NULL,
    next_attempt_at   timestamptz  NOT NULL,
    claimed_at        timestamptz,
    lease_expires_at  timestamptz,
    response_time     timestamptz,
    infcode           varchar(10),
    response_data     text,
    error_code        integer,
    error_message     text,
    attempt_log       text,
    needs_reversal    smallint     NOT NULL,
    parent_request_id bigint,
    resolved_at       timestamptz,
    resolved_by       varchar(100),
    resolution_note   text,
    archived_at       timestamptz  NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ix_mira_request_time ON medical_insurance_requests_archive (request_time);
CREATE INDEX IF NOT EXISTS ix_mira_msgid ON medical_insurance_requests_archive (msgid);
