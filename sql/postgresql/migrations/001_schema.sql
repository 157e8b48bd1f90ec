-- mi-worker schema for PostgreSQL (also openGauss / KingbaseES in PostgreSQL mode).
-- Times are timestamptz in UTC from the database clock; views add China-time columns.

-- Preflight (review S8): a table of the same name left by an earlier integration (the seed
-- schema of the original design document) is not created again below (IF NOT EXISTS), and
-- what is built on it would fail half-way. Stop first, naming the columns it lacks. The list
-- is every column this file creates (a test keeps the two in step).
DO $preflight$
DECLARE
    missing text;
BEGIN
    SELECT string_agg(n.t || '.' || n.c, ' ' ORDER BY n.t, n.c) INTO missing
    FROM (VALUES
    ('medical_insurance_requests', 'request_id'),
    ('medical_insurance_requests', 'interface_code'),
    ('medical_insurance_requests', 'input_data'),
    ('medical_insurance_requests', 'status'),
    ('medical_insurance_requests', 'priority'),
    ('medical_insurance_requests', 'timeout_seconds'),
    ('medical_insurance_requests', 'max_retry_count'),
    ('medical_insurance_requests', 'attempts'),
    ('medical_insurance_requests', 'psn_no'),
    ('medical_insurance_requests', 'insuplc_admdvs'),
    ('medical_insurance_requests', 'idempotency_key'),
    ('medical_insurance_requests', 'his_fee_id'),
    ('medical_insurance_requests', 'msgid'),
    ('medical_insurance_requests', 'worker_id'),
    ('medical_insurance_requests', 'claim_token'),
    ('medical_insurance_requests', 'limit_slot'),
    ('medical_insurance_requests', 'request_time'),
    ('medical_insurance_requests', 'deadline_at'),
    ('medical_insurance_requests', 'next_attempt_at'),
    ('medical_insurance_requests', 'claimed_at'),
    ('medical_insurance_requests', 'lease_expires_at'),
    ('medical_insurance_requests', 'response_time'),
    ('medical_insurance_requests', 'infcode'),
    ('medical_insurance_requests', 'response_data'),
    ('medical_insurance_requests', 'error_code'),
    ('medical_insurance_requests', 'error_message'),
    ('medical_insurance_requests', 'attempt_log'),
    ('medical_insurance_requests', 'needs_reversal'),
    ('medical_insurance_requests', 'parent_request_id'),
    ('medical_insurance_requests', 'resolved_at'),
    ('medical_insurance_requests', 'resolved_by'),
    ('medical_insurance_requests', 'resolution_note'),
    ('sdk_heartbeat', 'service_name'),
    ('sdk_heartbeat', 'worker_id'),
    ('sdk_heartbeat', 'host'),
    ('sdk_heartbeat', 'pid'),
    ('sdk_heartbeat', 'version'),
    ('sdk_heartbeat', 'started_at'),
    ('sdk_heartbeat', 'last_heartbeat'),
    ('sdk_heartbeat', 'status'),
    ('sdk_heartbeat', 'in_flight'),
    ('sdk_heartbeat', 'processed_total'),
    ('medical_insurance_error_log', 'log_id'),
    ('medical_insurance_error_log', 'request_id'),
    ('medical_insurance_error_log', 'error_code'),
    ('medical_insurance_error_log', 'error_message'),
    ('medical_insurance_error_log', 'detail'),
    ('medical_insurance_error_log', 'create_time'),
    ('medical_insurance_alerts', 'alert_id'),
    ('medical_insurance_alerts', 'alert_type'),
    ('medical_insurance_alerts', 'alert_level'),
    ('medical_insurance_alerts', 'alert_message'),
    ('medical_insurance_alerts', 'detail'),
    ('medical_insurance_alerts', 'raised_at'),
    ('medical_insurance_alerts', 'last_seen_at'),
    ('medical_insurance_alerts', 'resolved_at'),
    ('medical_insurance_alerts', 'notified_at'),
    ('medical_insurance_reconciliation', 'recon_id'),
    ('medical_insurance_reconciliation', 'stmt_date'),
    ('medical_insurance_reconciliation', 'insutype'),
    ('medical_insurance_reconciliation', 'clr_type'),
    ('medical_insurance_reconciliation', 'setl_optins'),
    ('medical_insurance_reconciliation', 'medfee_sumamt'),
    ('medical_insurance_reconciliation', 'fund_pay_sumamt'),
    ('medical_insurance_reconciliation', 'acct_pay'),
    ('medical_insurance_reconciliation', 'setl_cnt'),
    ('medical_insurance_reconciliation', 'stmt_rslt'),
    ('medical_insurance_reconciliation', 'stmt_rslt_dscr'),
    ('medical_insurance_reconciliation', 'request_id'),
    ('medical_insurance_reconciliation', 'created_at'),
    ('medical_insurance_limits', 'interface_code'),
    ('medical_insurance_limits', 'max_in_flight'),
    ('medical_insurance_interfaces', 'interface_code'),
    ('medical_insurance_interfaces', 'interface_name'),
    ('medical_insurance_interfaces', 'kind'),
    ('medical_insurance_interfaces', 'reversible'),
    ('medical_insurance_interfaces', 'cancel_code')
    ) AS n (t, c)
    WHERE EXISTS (SELECT 1 FROM information_schema.tables AS it
                  WHERE it.table_schema = current_schema() AND it.table_name = n.t)
      AND NOT EXISTS (SELECT 1 FROM information_schema.columns AS ic
                      WHERE ic.table_schema = current_schema() AND ic.table_name = n.t
                        AND ic.column_name = n.c);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'mi-worker cannot be installed over existing tables that lack its '
            'columns (an earlier integration''s schema?): %. Rename or migrate those tables, '
            'then run db upgrade again.', missing;
    END IF;
END
$preflight$;

CREATE SEQUENCE IF NOT EXISTS medical_insurance_msgid_seq;

CREATE TABLE IF NOT EXISTS medical_insurance_requests (
    request_id        bigserial PRIMARY KEY,
    interface_code    varchar(10)  NOT NULL,
    input_data        text         NOT NULL,
    status            varchar(20)  NOT NULL DEFAULT 'PENDING',
    priority          integer      NOT NULL DEFAULT 5,
    timeout_seconds   integer      NOT NULL DEFAULT 30,
    max_retry_count   integer      NOT NULL DEFAULT 3,
    attempts          integer      NOT NULL DEFAULT 0,
    psn_no            varchar(30),
    insuplc_admdvs    varchar(6),
    idempotency_key   varchar(100),
    his_fee_id        varchar(64),
    msgid             varchar(30),
    worker_id         varchar(100),
    claim_token       varchar(40),
    limit_slot        integer,
    request_time      timestamptz  NOT NULL DEFAULT now(),
    deadline_at       timestamptz  NOT NULL,
    next_attempt_at   timestamptz  NOT NULL DEFAULT now(),
    claimed_at        timestamptz,
    lease_expires_at  timestamptz,
    response_time     timestamptz,
    infcode           varchar(10),
    response_data     text,
    error_code        integer,
    error_message     text,
    attempt_log       text,
    needs_reversal    smallint     NOT NULL DEFAULT 0,
    parent_request_id bigint,
    resolved_at       timestamptz,
    resolved_by       varchar(100),
    resolution_note   text,
    CONSTRAINT ck_mir_status CHECK (status IN ('PENDING', 'PROCESSING', 'COMPLETED', 'ERROR',
        'TIMEOUT', 'UNCERTAIN', 'REVERSED', 'NEEDS_MANUAL'))
);

-- The claim is an index seek on runnable rows only (the partial index stays small however
-- large the history grows).
CREATE INDEX IF NOT EXISTS ix_mir_claim ON medical_insurance_requests (priority, request_id)
    WHERE status = 'PENDING';
-- In-flight rows: lease recovery, per-interface slot accounting, per-worker lease extension.
CREATE INDEX IF NOT EXISTS ix_mir_processing ON medical_insurance_requests (claim_token)
    WHERE status = 'PROCESSING';
-- Per-patient ordering looks up a patient's open rows.
CREATE INDEX IF NOT EXISTS ix_mir_psn_open ON medical_insurance_requests (psn_no, request_id)
    WHERE status IN ('PENDING', 'PROCESSING', 'UNCERTAIN') OR needs_reversal = 1;
-- Hard guarantees behind the claim's own checks: one in-flight row per patient, and one row
-- per interface slot. A concurrent claim that would break them fails and is retried.
CREATE UNIQUE INDEX IF NOT EXISTS ux_mir_psn_processing ON medical_insurance_requests (psn_no)
    WHERE status = 'PROCESSING' AND psn_no IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS ux_mir_slot_processing
    ON medical_insurance_requests (interface_code, limit_slot)
    WHERE status = 'PROCESSING' AND limit_slot IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS ux_mir_msgid ON medical_insurance_requests (msgid)
    WHERE msgid IS NOT NULL;
-- An idempotency key is unique among calls that did not fail (a failed call may be retried).
CREATE UNIQUE INDEX IF NOT EXISTS ux_mir_idempotency ON medical_insurance_requests (idempotency_key)
    WHERE idempotency_key IS NOT NULL AND status NOT IN ('ERROR', 'TIMEOUT');
CREATE INDEX IF NOT EXISTS ix_mir_request_time ON medical_insurance_requests (request_time);
CREATE INDEX IF NOT EXISTS ix_mir_parent ON medical_insurance_requests (parent_request_id)
    WHERE parent_request_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS ix_mir_doubt ON medical_insurance_requests (request_id)
    WHERE status = 'UNCERTAIN' OR needs_reversal = 1;

CREATE TABLE IF NOT EXISTS sdk_heartbeat (
    service_name    varchar(100) NOT NULL,
    worker_id       varchar(100) NOT NULL,
    host            varchar(255),
    pid             integer,
    version         varchar(40),
    started_at      timestamptz,
    last_heartbeat  timestamptz  NOT NULL DEFAULT now(),
    status          varchar(20)  NOT NULL DEFAULT 'RUNNING',
    in_flight       integer      NOT NULL DEFAULT 0,
    processed_total bigint       NOT NULL DEFAULT 0,
    PRIMARY KEY (service_name, worker_id)
);

CREATE TABLE IF NOT EXISTS medical_insurance_error_log (
    log_id        bigserial PRIMARY KEY,
    request_id    bigint,
    error_code    integer,
    error_message text,
    detail        text,
    create_time   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ix_mie_time ON medical_insurance_error_log (create_time);

CREATE TABLE IF NOT EXISTS medical_insurance_alerts (
    alert_id      bigserial PRIMARY KEY,
    alert_type    varchar(40)  NOT NULL,
    alert_level   varchar(20)  NOT NULL,
    alert_message text         NOT NULL,
    detail        text,
    raised_at     timestamptz  NOT NULL DEFAULT now(),
    last_seen_at  timestamptz  NOT NULL DEFAULT now(),
    resolved_at   timestamptz,
    notified_at   timestamptz
);
CREATE INDEX IF NOT EXISTS ix_mia_open ON medical_insurance_alerts (alert_type) WHERE resolved_at IS NULL;

CREATE TABLE IF NOT EXISTS medical_insurance_reconciliation (
    recon_id         bigserial PRIMARY KEY,
    stmt_date        date         NOT NULL,
    insutype         varchar(6)   NOT NULL,
    clr_type         varchar(6)   NOT NULL,
    setl_optins      varchar(6),
    medfee_sumamt    numeric(16, 2) NOT NULL,
    fund_pay_sumamt  numeric(16, 2) NOT NULL,
    acct_pay         numeric(16, 2) NOT NULL,
    setl_cnt         integer      NOT NULL,
    stmt_rslt        varchar(6),
    stmt_rslt_dscr   text,
    request_id       bigint,
    created_at       timestamptz  NOT NULL DEFAULT now()
);

-- Cluster-wide in-flight caps per interface code ('*' = every code not named); written from
-- the worker's config at start.
CREATE TABLE IF NOT EXISTS medical_insurance_limits (
    interface_code varchar(10) PRIMARY KEY,
    max_in_flight  integer     NOT NULL
);

-- The interface catalogue (code, Chinese name, kind), written from the worker's catalogue by
-- `mi-worker db upgrade` so monitors can name interfaces in SQL.
CREATE TABLE IF NOT EXISTS medical_insurance_interfaces (
    interface_code varchar(10)  PRIMARY KEY,
    interface_name varchar(100) NOT NULL,
    kind           varchar(20)  NOT NULL,
    reversible     smallint     NOT NULL DEFAULT 0,
    cancel_code    varchar(10)
);

CREATE OR REPLACE VIEW v_medical_insurance_result AS
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
       (r.request_time AT TIME ZONE 'Asia/Shanghai') AS request_time_cn,
       (r.response_time AT TIME ZONE 'Asia/Shanghai') AS response_time_cn,
       CAST(EXTRACT(EPOCH FROM (r.response_time - r.request_time)) * 1000 AS bigint) AS latency_ms
FROM medical_insurance_requests r;
