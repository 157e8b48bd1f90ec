-- Every statement mi-worker runs on PostgreSQL. `-- name:` starts a query, the next comment
-- line says why it exists. Parameters are :named and always bound, never formatted in.
-- The same names exist in sql/sqlite/queries.sql and sql/mssql/queries.sql.
-- Run outside this file, on purpose: SET TIME ZONE 'UTC' on every new connection
-- (mi_worker/db/postgresql.py: psqlODBC returns timestamptz in the session zone), the
-- transaction control of migrations, and the migration files themselves.

-- ===== claim and results =====
-- a worker leases rows, sends them, writes each outcome once (token-guarded)

-- name: claim_batch
-- Lease up to :batch_size runnable rows in one autocommit statement: priority then age,
-- only the head of each patient's queue, within each interface's free slots, msgid assigned.
WITH cand AS (
    SELECT r.request_id, r.interface_code, r.priority, r.psn_no
    FROM medical_insurance_requests r
    WHERE r.status = 'PENDING'
      AND r.next_attempt_at <= now()
      AND r.deadline_at > now()
      AND (r.psn_no IS NULL OR NOT EXISTS (
            SELECT 1 FROM medical_insurance_requests e
            WHERE e.psn_no = r.psn_no
              AND e.request_id <> r.request_id
              AND (e.status IN ('PENDING', 'PROCESSING', 'UNCERTAIN') OR e.needs_reversal = 1)
              AND (e.status = 'PROCESSING'
                   OR (r.parent_request_id IS NULL
                       AND ((e.status = 'PENDING' AND e.request_id < r.request_id
                             AND e.deadline_at > now())
                            OR e.status = 'UNCERTAIN'
                            OR (e.status = 'COMPLETED' AND e.needs_reversal = 1))))))
      AND (NOT EXISTS (SELECT 1 FROM medical_insurance_limits ml
                       WHERE ml.interface_code IN (r.interface_code, '*'))
           OR (SELECT COUNT(*) FROM medical_insurance_requests b
               WHERE b.status = 'PROCESSING' AND b.interface_code = r.interface_code
                 AND b.limit_slot IS NOT NULL)
              < COALESCE((SELECT ml.max_in_flight FROM medical_insurance_limits ml
                          WHERE ml.interface_code = r.interface_code),
                         (SELECT ml.max_in_flight FROM medical_insurance_limits ml
                          WHERE ml.interface_code = '*')))
    ORDER BY r.priority, r.request_id
    LIMIT :scan_size
    FOR UPDATE OF r SKIP LOCKED
), ranked AS (
    SELECT c.request_id, c.interface_code, c.priority,
           COALESCE(l.max_in_flight, d.max_in_flight) AS lim,
           row_number() OVER (PARTITION BY c.interface_code
                              ORDER BY c.priority, c.request_id) AS k,
           row_number() OVER (PARTITION BY COALESCE(c.psn_no, 'rid:' || CAST(c.request_id AS text))
                              ORDER BY c.priority, c.request_id) AS psn_rank
    FROM cand c
    LEFT JOIN medical_insurance_limits l ON l.interface_code = c.interface_code
    LEFT JOIN medical_insurance_limits d ON d.interface_code = '*'
), slots AS (
    SELECT x.interface_code, s.slot,
           row_number() OVER (PARTITION BY x.interface_code
                              ORDER BY (s.slot + :slot_offset) % x.lim) AS k
    FROM (SELECT DISTINCT interface_code, lim FROM ranked WHERE lim IS NOT NULL) x
    CROSS JOIN LATERAL generate_series(0, x.lim - 1) AS s(slot)
    WHERE NOT EXISTS (
        SELECT 1 FROM medical_insurance_requests b
        WHERE b.status = 'PROCESSING' AND b.interface_code = x.interface_code
          AND b.limit_slot = s.slot)
), picked AS (
    SELECT r.request_id, s.slot
    FROM ranked r
    LEFT JOIN slots s ON s.interface_code = r.interface_code AND s.k = r.k
    WHERE (r.lim IS NULL OR s.slot IS NOT NULL) AND r.psn_rank = 1
    ORDER BY r.priority, r.request_id
    LIMIT LEAST(CAST(:batch_size AS integer), 10000)
), numbered AS (
    -- one sequence value per claimed row (a CTE with nextval is materialised, evaluated once)
    SELECT p.request_id, p.slot,
           lpad((nextval('medical_insurance_msgid_seq') % 10000)::text, 4, '0') AS digits,
           clock_timestamp() AT TIME ZONE 'Asia/Shanghai' AS cn
    FROM picked p
), stamped AS (
    -- msgid = code + China-time second + 4 digits (a claim takes at most 10,000 rows, so
    -- its own digits never repeat). Above 10,000 msgids in one second the
    -- 4 digits come round again: such a row takes the next second whose msgid with these
    -- digits is free (the protocol allows a msgid second ahead of the clock), so the claim
    -- never trips ux_mir_msgid. cn is read once per row: probe and value agree. No ORDER BY:
    -- the series streams in order and LIMIT 1 stops at the first free second (any free one
    -- would be unique; a sort would probe all 61 every time).
    SELECT n.request_id, n.slot,
           COALESCE((SELECT c.m
                     FROM generate_series(0, 60) AS j(j)
                     CROSS JOIN LATERAL (SELECT :fixmedins_code
                         || to_char(n.cn + make_interval(secs => j.j), 'YYYYMMDDHH24MISS')
                         || n.digits AS m) c
                     WHERE NOT EXISTS (SELECT 1 FROM medical_insurance_requests x
                                       WHERE x.msgid = c.m)
                     LIMIT 1),
                    :fixmedins_code
                    || to_char(n.cn, 'YYYYMMDDHH24MISS')
                    || n.digits) AS msgid
    FROM numbered n
), claimed AS (
    UPDATE medical_insurance_requests t
       SET status = 'PROCESSING',
           worker_id = :worker_id,
           claim_token = :claim_token,
           claimed_at = now(),
           lease_expires_at = now() + make_interval(secs => CAST(:lease_seconds AS double precision)),
           attempts = t.attempts + 1,
           limit_slot = p.slot,
           msgid = p.msgid
      FROM stamped p
     WHERE t.request_id = p.request_id
    RETURNING t.request_id, t.interface_code, t.input_data, t.msgid, t.attempts,
              t.max_retry_count, t.psn_no, t.insuplc_admdvs, t.priority, t.parent_request_id,
              t.workflow_id, CAST(EXTRACT(EPOCH FROM (t.deadline_at - now())) AS double precision)
                  AS seconds_left,
              CAST(EXTRACT(EPOCH FROM (now() - t.request_time)) AS double precision)
                  AS queued_seconds
)
SELECT * FROM claimed ORDER BY priority, request_id;

-- name: assign_new_msgid
-- A resend must carry a new msgid (the centre rejects a repeated one); stored before sending.
-- The same rule as claim_batch: a second whose msgid with these 4 digits is taken is skipped.
WITH d AS (
    SELECT lpad((nextval('medical_insurance_msgid_seq') % 10000)::text, 4, '0') AS digits,
           clock_timestamp() AT TIME ZONE 'Asia/Shanghai' AS cn
), m AS (
    SELECT COALESCE((SELECT c.m
                     FROM generate_series(0, 60) AS j(j)
                     CROSS JOIN LATERAL (SELECT :fixmedins_code
                         || to_char(d.cn + make_interval(secs => j.j), 'YYYYMMDDHH24MISS')
                         || d.digits AS m) c
                     WHERE NOT EXISTS (SELECT 1 FROM medical_insurance_requests x
                                       WHERE x.msgid = c.m)
                     LIMIT 1),
                    :fixmedins_code
                    || to_char(d.cn, 'YYYYMMDDHH24MISS')
                    || d.digits) AS msgid
    FROM d
), u AS (
    UPDATE medical_insurance_requests
       SET msgid = (SELECT msgid FROM m)
     WHERE request_id = :request_id AND claim_token = :claim_token AND status = 'PROCESSING'
    RETURNING msgid
)
SELECT msgid FROM u;

-- name: next_msgid
-- A msgid for a message that has no request row (9001 sign-in, 9002 sign-out).
-- The same rule as claim_batch (a second whose msgid with these 4 digits is taken is skipped).
WITH d AS (
    SELECT lpad((nextval('medical_insurance_msgid_seq') % 10000)::text, 4, '0') AS digits,
           clock_timestamp() AT TIME ZONE 'Asia/Shanghai' AS cn
)
SELECT COALESCE((SELECT c.m
                 FROM generate_series(0, 60) AS j(j)
                 CROSS JOIN LATERAL (SELECT :fixmedins_code
                     || to_char(d.cn + make_interval(secs => j.j), 'YYYYMMDDHH24MISS')
                     || d.digits AS m) c
                 WHERE NOT EXISTS (SELECT 1 FROM medical_insurance_requests x
                                   WHERE x.msgid = c.m)
                 LIMIT 1),
                :fixmedins_code
                || to_char(d.cn, 'YYYYMMDDHH24MISS')
                || d.digits) AS msgid
FROM d;

-- name: complete_request
-- The one write of a finished call, only while this claim still holds the row; a
-- state-changing call finished after its caller's deadline is flagged for reversal.
WITH u AS (
    UPDATE medical_insurance_requests
       SET status = :status,
           infcode = :infcode,
           response_data = :response_data,
           error_code = :error_code,
           error_message = :error_message,
           msgid = COALESCE(:msgid, msgid),
           attempt_log = :attempt_log,
           response_time = now(),
           lease_expires_at = NULL,
           limit_slot = NULL,
           needs_reversal = CASE WHEN :status = 'COMPLETED' AND :late_reversible = 1
                                      AND now() > deadline_at THEN 1 ELSE 0 END
     WHERE request_id = :request_id AND claim_token = :claim_token AND status = 'PROCESSING'
    RETURNING request_id, needs_reversal
)
SELECT request_id, needs_reversal FROM u;

-- name: complete_batch
-- Group commit: many finished calls written in one statement (the same guard as
-- complete_request, row by row), so the write path is one round trip per batch, not per row.
WITH x AS (
    SELECT * FROM json_to_recordset(CAST(:rows AS json)) AS x(
        request_id bigint, claim_token text, status text, infcode text, response_data text,
        error_code integer, error_message text, msgid text, attempt_log text,
        late_reversible integer)
), u AS (
    UPDATE medical_insurance_requests t
       SET status = x.status,
           infcode = x.infcode,
           response_data = x.response_data,
           error_code = x.error_code,
           error_message = x.error_message,
           msgid = COALESCE(x.msgid, t.msgid),
           attempt_log = x.attempt_log,
           response_time = now(),
           lease_expires_at = NULL,
           limit_slot = NULL,
           needs_reversal = CASE WHEN x.status = 'COMPLETED' AND x.late_reversible = 1
                                      AND now() > t.deadline_at THEN 1 ELSE 0 END
      FROM x
     WHERE t.request_id = x.request_id AND t.claim_token = x.claim_token
       AND t.status = 'PROCESSING'
    RETURNING t.request_id, t.needs_reversal
)
SELECT request_id, needs_reversal FROM u;

-- name: requeue_request
-- A retryable failure goes back to PENDING with its back-off stored in the row (it survives a
-- restart and any worker may take it); out of attempts or time it ends ERROR or TIMEOUT.
WITH u AS (
    UPDATE medical_insurance_requests
       SET status = CASE
                WHEN now() + make_interval(secs => CAST(:delay_seconds AS double precision)) >= deadline_at THEN 'TIMEOUT'
                WHEN attempts > max_retry_count THEN 'ERROR'
                ELSE 'PENDING' END,
           next_attempt_at = now() + make_interval(secs => CAST(:delay_seconds AS double precision)),
           error_code = :error_code,
           error_message = :error_message,
           attempt_log = :attempt_log,
           msgid = COALESCE(:msgid, msgid),
           worker_id = NULL,
           claim_token = NULL,
           lease_expires_at = NULL,
           limit_slot = NULL,
           response_time = CASE
                WHEN now() + make_interval(secs => CAST(:delay_seconds AS double precision)) >= deadline_at
                     OR attempts > max_retry_count THEN now() END
     WHERE request_id = :request_id AND claim_token = :claim_token AND status = 'PROCESSING'
    RETURNING request_id, status
)
SELECT request_id, status FROM u;

-- name: release_request
-- Graceful stop: a claimed row that was never sent goes back to PENDING as if untouched.
WITH u AS (
    UPDATE medical_insurance_requests
       SET status = 'PENDING', attempts = GREATEST(attempts - 1, 0), worker_id = NULL,
           claim_token = NULL, lease_expires_at = NULL, limit_slot = NULL
     WHERE request_id = :request_id AND claim_token = :claim_token AND status = 'PROCESSING'
    RETURNING request_id
)
SELECT request_id FROM u;

-- name: extend_lease
-- The heartbeat keeps the leases of the claims this worker still works on.
UPDATE medical_insurance_requests
   SET lease_expires_at = now() + make_interval(secs => CAST(:lease_seconds AS double precision))
 WHERE claim_token = :claim_token AND status = 'PROCESSING';

-- ===== workers =====
-- one heartbeat row per worker process; the -1002 check and the monitors read it

-- name: heartbeat
-- One row per worker process; the HIS procedure's -1002 check and the monitors read it.
INSERT INTO sdk_heartbeat (service_name, worker_id, host, pid, version, started_at,
                           last_heartbeat, status, in_flight, processed_total, gateway_kind,
                           gateway_tls_verified)
VALUES (:service_name, :worker_id, :host, :pid, :version, now(), now(), :status, :in_flight,
        :processed_total, :gateway_kind, :gateway_tls_verified)
ON CONFLICT (service_name, worker_id) DO UPDATE
   SET last_heartbeat = now(), status = EXCLUDED.status, in_flight = EXCLUDED.in_flight,
       processed_total = EXCLUDED.processed_total, host = EXCLUDED.host, pid = EXCLUDED.pid,
       version = EXCLUDED.version, gateway_kind = EXCLUDED.gateway_kind,
       gateway_tls_verified = EXCLUDED.gateway_tls_verified;

-- name: service_status
-- The same answer as sp_check_sdk_service_status, for `mi-worker call` and health checks.
SELECT sp_check_sdk_service_status(:stale_seconds) AS alive;

-- name: heartbeat_rows
-- Every worker's heartbeat with its age in seconds (database clock): health, status, tests.
SELECT service_name, worker_id, host, pid, version, started_at, last_heartbeat, status,
       in_flight, processed_total, gateway_kind, gateway_tls_verified,
       CAST(EXTRACT(EPOCH FROM (now() - last_heartbeat)) AS double precision) AS age_seconds
FROM sdk_heartbeat
ORDER BY service_name, worker_id;

-- ===== the HIS contract =====
-- sp_medical_insurance_call_v2 (call_procedure) or, on SQLite, its steps run by mi_worker/his_call.py

-- name: call_procedure
-- `mi-worker call` goes through the HIS procedure itself, exactly as the HIS does.
CALL sp_medical_insurance_call_v2(:interface_code, :input_data, :timeout, :retry_count,
                                  NULL, NULL, NULL, NULL, :priority, :idempotency_key,
                                  :his_fee_id, :psn_no, :poll_ms, :insuplc_admdvs);

-- name: enqueue_request
-- What the HIS procedure inserts; used directly where there is no procedure (SQLite) and to
-- seed tests and the benchmark.
INSERT INTO medical_insurance_requests (interface_code, input_data, status, priority,
    timeout_seconds, max_retry_count, psn_no, insuplc_admdvs, idempotency_key, his_fee_id,
    parent_request_id, deadline_at)
VALUES (:interface_code, :input_data, 'PENDING', :priority, :timeout_seconds, :max_retry_count,
    :psn_no, :insuplc_admdvs, :idempotency_key, :his_fee_id, :parent_request_id,
    clock_timestamp() + make_interval(secs => CAST(:timeout_seconds AS double precision)))
RETURNING request_id;

-- name: poll_result
-- What the HIS procedure polls: the caller-facing state of one request.
SELECT v.request_id, v.status, v.result_status, v.response_data, v.error_code,
       v.error_message, CASE WHEN clock_timestamp() >= v.deadline_at THEN 1 ELSE 0 END
       AS past_deadline
FROM v_medical_insurance_result v
WHERE v.request_id = :request_id;

-- name: timeout_if_pending
-- At the caller's deadline a row nobody claimed ends TIMEOUT; a claimed one stays with its
-- worker (the caller is told the outcome is in doubt).
WITH u AS (
    UPDATE medical_insurance_requests
       SET status = 'TIMEOUT', response_time = clock_timestamp(), error_code = -1005,
           error_message = :error_message
     WHERE request_id = :request_id AND status = 'PENDING'
    RETURNING request_id
)
SELECT request_id FROM u;

-- name: find_idempotent
-- The latest call with this idempotency key that did not fail.
SELECT request_id, status, needs_reversal, response_data, error_message
FROM medical_insurance_requests
WHERE idempotency_key = :idempotency_key AND status NOT IN ('ERROR', 'TIMEOUT')
ORDER BY request_id DESC
LIMIT 1;

-- ===== sweeps =====
-- rows whose caller or worker is gone (expire, lease recovery), once per cluster

-- name: expire_pending
-- PENDING rows whose caller's deadline passed can never be useful: TIMEOUT (never sent).
WITH u AS (
    UPDATE medical_insurance_requests
       SET status = 'TIMEOUT', response_time = now(), error_code = -1005,
           error_message = '请求超时: deadline passed before any worker sent the request'
     WHERE status = 'PENDING' AND deadline_at <= now()
    RETURNING request_id
)
SELECT request_id FROM u;

-- name: find_lost_leases
-- Rows whose lease ran out and whose worker is not beating (or ran out long ago): the worker
-- died or lost them; the job decides per interface kind what becomes of each.
SELECT r.request_id, r.interface_code, r.claim_token, r.worker_id,
       CASE WHEN r.deadline_at <= now() THEN 1 ELSE 0 END AS past_deadline
FROM medical_insurance_requests r
WHERE r.status = 'PROCESSING'
  AND r.lease_expires_at < now()
  AND (r.lease_expires_at < now() - make_interval(secs => CAST(:lease_seconds AS double precision))
       OR NOT EXISTS (
           SELECT 1 FROM sdk_heartbeat h
           WHERE h.worker_id = r.worker_id AND h.status = 'RUNNING'
             AND h.last_heartbeat > now() - make_interval(secs => CAST(:stale_seconds AS double precision))))
ORDER BY r.request_id
LIMIT 500;

-- name: recover_lease
-- Move one lost row to the state the job chose (PENDING for a query, UNCERTAIN for a
-- state-changing call that may have reached the centre, TIMEOUT when nobody waits any more).
WITH u AS (
    UPDATE medical_insurance_requests
       SET status = :status, worker_id = NULL, claim_token = NULL, lease_expires_at = NULL,
           limit_slot = NULL, error_code = :error_code, error_message = :error_message,
           response_time = CASE WHEN :status = 'PENDING' THEN NULL ELSE now() END
     WHERE request_id = :request_id AND claim_token = :claim_token AND status = 'PROCESSING'
    RETURNING request_id
)
SELECT request_id FROM u;

-- ===== reversal (冲正) =====
-- rows in doubt and their 2601 rows

-- name: find_doubtful
-- Rows whose outcome is in doubt (UNCERTAIN, or COMPLETED after the caller gave up), with
-- their latest 2601 reversal row if any: the reversal job's work list.
SELECT r.request_id, r.interface_code, r.status, r.psn_no, r.insuplc_admdvs, r.msgid,
       r.needs_reversal, r.error_message,
       (SELECT MAX(c.request_id) FROM medical_insurance_requests c
         WHERE c.parent_request_id = r.request_id) AS rev_id,
       (SELECT COUNT(*) FROM medical_insurance_requests c
         WHERE c.parent_request_id = r.request_id) AS rev_count
FROM medical_insurance_requests r
WHERE (r.status = 'UNCERTAIN' OR r.needs_reversal = 1)
  AND r.parent_request_id IS NULL
ORDER BY r.request_id
LIMIT 200;

-- name: settle_row
-- Move a row from the state the job saw to its settled state (REVERSED, NEEDS_MANUAL, ERROR);
-- the status guard makes a concurrent change win instead of being overwritten.
UPDATE medical_insurance_requests
   SET status = :status, needs_reversal = 0, error_code = :error_code,
       error_message = :error_message
 WHERE request_id = :request_id AND status = :expected_status
   -- only the arrows states.TRANSITIONS allows for "reverse"
   AND ((status = 'UNCERTAIN' AND :status IN ('REVERSED', 'NEEDS_MANUAL', 'ERROR'))
        OR (status = 'COMPLETED' AND :status IN ('REVERSED', 'NEEDS_MANUAL')));

-- name: enqueue_reversal
-- A 2601 冲正 row linked to the original, at top priority, not runnable before :delay_seconds.
INSERT INTO medical_insurance_requests (interface_code, input_data, status, priority,
    timeout_seconds, max_retry_count, psn_no, insuplc_admdvs, parent_request_id,
    next_attempt_at, deadline_at)
VALUES ('2601', :input_data, 'PENDING', 0, :timeout_seconds, 3, :psn_no, :insuplc_admdvs,
    :parent_request_id,
    clock_timestamp() + make_interval(secs => CAST(:delay_seconds AS double precision)),
    clock_timestamp() + make_interval(secs => CAST(:delay_seconds AS double precision))
                      + make_interval(secs => CAST(:timeout_seconds AS double precision)))
RETURNING request_id;

-- name: find_children
-- The 2601 reversal rows queued for one original request (audit trail, `requests show`).
SELECT request_id, interface_code, status, input_data, error_message, request_time
FROM medical_insurance_requests
WHERE parent_request_id = :parent_request_id
ORDER BY request_id;

-- ===== alerts =====
-- raised, refreshed, resolved and notified by the alert scan

-- name: check_alerts
-- Conditions that are alert-worthy right now (the alert scan stores and de-duplicates them).
SELECT * FROM sp_check_medical_insurance_alerts(:error_rate_percent, :min_calls, :slow_avg_ms,
                                                :backlog_pending, :backlog_age_seconds,
                                                :down_seconds);

-- name: open_alert
-- The open alert of a type, if any: alerts are de-duplicated per type while open.
SELECT alert_id, alert_type, alert_level, alert_message, raised_at, last_seen_at
FROM medical_insurance_alerts
WHERE alert_type = :alert_type AND resolved_at IS NULL
ORDER BY alert_id DESC
LIMIT 1;

-- name: insert_alert
-- A new alert (the scan found a condition with no open alert of its type).
INSERT INTO medical_insurance_alerts (alert_type, alert_level, alert_message, detail)
VALUES (:alert_type, :alert_level, :alert_message, :detail);

-- name: touch_alert
-- The condition still holds: keep the open alert, refresh its message and last_seen_at.
UPDATE medical_insurance_alerts
   SET last_seen_at = CURRENT_TIMESTAMP, alert_message = :alert_message, detail = :detail
 WHERE alert_id = :alert_id;

-- name: reopen_alert
-- A condition that cleared and came back within the de-duplication window reopens its alert
-- instead of raising (and notifying) a new one.
WITH u AS (
    UPDATE medical_insurance_alerts
       SET resolved_at = NULL, last_seen_at = now(), alert_message = :alert_message
     WHERE alert_id = (SELECT max(alert_id) FROM medical_insurance_alerts
                       WHERE alert_type = :alert_type AND resolved_at IS NOT NULL
                         AND resolved_at > now()
                             - make_interval(mins => CAST(:dedup_minutes AS integer)))
    RETURNING alert_id
)
SELECT alert_id FROM u;

-- name: resolve_alert
-- The condition cleared: close the open alert.
UPDATE medical_insurance_alerts SET resolved_at = now()
 WHERE alert_id = :alert_id AND resolved_at IS NULL;

-- name: list_open_alerts
-- Alerts not yet resolved (or all recent ones with :include_resolved = 1).
SELECT alert_id, alert_type, alert_level, alert_message, raised_at, last_seen_at, resolved_at,
       notified_at
FROM medical_insurance_alerts
WHERE resolved_at IS NULL OR :include_resolved = 1
ORDER BY alert_id DESC
LIMIT 200;

-- name: mark_alert_notified
-- The webhook accepted the notification.
UPDATE medical_insurance_alerts SET notified_at = now() WHERE alert_id = :alert_id;

-- ===== monitoring and the CLI =====
-- the figures of `mi-worker status`, `monitor`, `metrics`, `requests`

-- name: monitor_health
-- Per-worker and overall UP / WARNING / DOWN by heartbeat age (the DBA function's rows).
SELECT * FROM mi_monitor_health(:warn_seconds, :down_seconds);

-- name: monitor_performance
-- Last hour: totals by outcome, success rate, average / p95 / max latency.
SELECT * FROM mi_monitor_performance(:hours);

-- name: monitor_interfaces
-- Last day per interface code, with its Chinese name.
SELECT * FROM mi_monitor_interfaces(:hours);

-- name: monitor_queue
-- Open rows by status and priority with the oldest one's age.
SELECT * FROM mi_monitor_queue();

-- name: monitor_workers
-- Every worker process with uptime and counters.
SELECT * FROM mi_monitor_workers();

-- name: metrics_by_interface
-- Prometheus counters and latency histogram per interface and outcome (whole table, so the
-- counters only grow as long as rows are kept).
SELECT v.interface_code, v.result_status, count(*) AS n,
       COALESCE(sum(v.latency_ms), 0) AS latency_sum_ms,
       count(v.latency_ms) AS latency_count,
       count(*) FILTER (WHERE v.latency_ms <= 50) AS le_50,
       count(*) FILTER (WHERE v.latency_ms <= 100) AS le_100,
       count(*) FILTER (WHERE v.latency_ms <= 250) AS le_250,
       count(*) FILTER (WHERE v.latency_ms <= 500) AS le_500,
       count(*) FILTER (WHERE v.latency_ms <= 1000) AS le_1000,
       count(*) FILTER (WHERE v.latency_ms <= 2500) AS le_2500,
       count(*) FILTER (WHERE v.latency_ms <= 5000) AS le_5000,
       count(*) FILTER (WHERE v.latency_ms <= 10000) AS le_10000,
       count(*) FILTER (WHERE v.latency_ms <= 30000) AS le_30000
FROM v_medical_insurance_result v
GROUP BY v.interface_code, v.result_status
ORDER BY v.interface_code, v.result_status;

-- name: list_requests
-- `mi-worker requests list`: newest first, optionally one status / interface.
SELECT r.request_id, r.interface_code, r.status, r.psn_no, r.msgid, r.attempts,
       r.request_time, r.response_time, r.error_code, r.error_message, r.parent_request_id,
       r.resolved_at, r.resolution_note
FROM medical_insurance_requests r
WHERE (CAST(:status AS varchar) IS NULL OR r.status = :status)
  AND (CAST(:interface_code AS varchar) IS NULL OR r.interface_code = :interface_code)
ORDER BY r.request_id DESC
LIMIT :limit_rows;

-- name: get_request
-- One row with everything, for `mi-worker call`, `requests show` and tests.
SELECT r.*, v.result_status, v.latency_ms
FROM medical_insurance_requests r
JOIN v_medical_insurance_result v ON v.request_id = r.request_id
WHERE r.request_id = :request_id;

-- name: resolve_request
-- An operator settled a NEEDS_MANUAL (or UNCERTAIN) row by hand: record who, when and how.
WITH u AS (
    UPDATE medical_insurance_requests
       SET resolved_at = now(), resolved_by = :resolved_by, resolution_note = :note,
           needs_reversal = 0
     WHERE request_id = :request_id AND status IN ('NEEDS_MANUAL', 'UNCERTAIN')
       AND resolved_at IS NULL
    RETURNING request_id
)
SELECT request_id FROM u;

-- ===== reconciliation (对账) =====
-- the day's settlements against the centre's 3201 totals

-- name: settlements_between
-- The reconciliation's local side: settlements that COMPLETED in a (China) day, not flagged
-- for reversal.
SELECT request_id, interface_code, input_data, response_data, response_time
FROM medical_insurance_requests
WHERE status = 'COMPLETED' AND needs_reversal = 0
  AND interface_code IN ('2102', '2207', '2207A', '2304')
  AND response_time >= CAST(:start_utc AS timestamp) AT TIME ZONE 'UTC'
  AND response_time < CAST(:end_utc AS timestamp) AT TIME ZONE 'UTC'
ORDER BY request_id;

-- name: cancellations_since
-- Settlement cancellations (2103/2208/2305) that COMPLETED from the day on: their setl_id
-- leaves a settlement out of the day's totals.
SELECT request_id, interface_code, input_data
FROM medical_insurance_requests
WHERE status = 'COMPLETED' AND interface_code IN ('2103', '2208', '2305')
  AND response_time >= CAST(:start_utc AS timestamp) AT TIME ZONE 'UTC'
ORDER BY request_id;

-- name: insert_reconciliation
-- The centre's answer to one 3201, next to the local totals that were sent.
INSERT INTO medical_insurance_reconciliation (stmt_date, insutype, clr_type, setl_optins,
    medfee_sumamt, fund_pay_sumamt, acct_pay, setl_cnt, stmt_rslt, stmt_rslt_dscr, request_id)
VALUES (CAST(:stmt_date AS date), :insutype, :clr_type, :setl_optins,
    CAST(:medfee_sumamt AS numeric), CAST(:fund_pay_sumamt AS numeric), CAST(:acct_pay AS numeric),
    :setl_cnt, :stmt_rslt, :stmt_rslt_dscr, :request_id);

-- name: list_reconciliation
-- Reconciliation results of one day (`mi-worker reconcile --show`).
SELECT recon_id, stmt_date, insutype, clr_type, setl_optins, medfee_sumamt, fund_pay_sumamt,
       acct_pay, setl_cnt, stmt_rslt, stmt_rslt_dscr, request_id, created_at
FROM medical_insurance_reconciliation
WHERE stmt_date = CAST(:stmt_date AS date)
ORDER BY recon_id;

-- ===== schema, catalogue and locks =====
-- migrations, the tables that mirror the code, cluster-wide locks

-- name: server_features
-- What the server is, so the worker decides once what it can use (logged at start).
SELECT current_setting('server_version') AS server_version, NULL AS compatibility_level;

-- name: create_migrations_table
-- The version table `mi-worker db upgrade` records applied files in.
CREATE TABLE IF NOT EXISTS mi_schema_version (
    version    integer PRIMARY KEY,
    name       varchar(200) NOT NULL,
    checksum   varchar(64)  NOT NULL,
    applied_at timestamptz  NOT NULL DEFAULT now()
);

-- name: migration_lock
-- Two hosts upgrading at once: the second waits here, then sees the first one's versions.
SELECT pg_advisory_xact_lock(:lock_key);

-- name: applied_migrations
-- Versions already applied, with the checksum of the file as it was.
SELECT version, checksum FROM mi_schema_version ORDER BY version;

-- name: record_migration
-- Written in the same transaction as the migration itself.
INSERT INTO mi_schema_version (version, name, checksum) VALUES (:version, :name, :checksum);

-- name: upsert_interface
-- The catalogue mirrored into SQL so DBA monitors can name interfaces in Chinese.
-- his_refused: why the HIS may not call the code (issue 12), NULL when it may.
INSERT INTO medical_insurance_interfaces (interface_code, interface_name, kind, reversible,
                                          cancel_code, his_refused)
VALUES (:interface_code, :interface_name, :kind, :reversible, :cancel_code, :his_refused)
ON CONFLICT (interface_code) DO UPDATE
   SET interface_name = EXCLUDED.interface_name, kind = EXCLUDED.kind,
       reversible = EXCLUDED.reversible, cancel_code = EXCLUDED.cancel_code,
       his_refused = EXCLUDED.his_refused;

-- name: list_limits
-- The cluster-wide caps in force (the worker reconciles them with its config at start).
SELECT interface_code, max_in_flight FROM medical_insurance_limits ORDER BY interface_code;

-- name: upsert_limit
-- Set one cap in place: a cap is never absent while it is being rewritten, so a concurrent
-- claim can never run unlimited.
INSERT INTO medical_insurance_limits (interface_code, max_in_flight)
VALUES (:interface_code, :max_in_flight)
ON CONFLICT (interface_code) DO UPDATE SET max_in_flight = EXCLUDED.max_in_flight;

-- name: delete_limit
-- Drop a cap the config no longer names.
DELETE FROM medical_insurance_limits WHERE interface_code = :interface_code;

-- name: try_cluster_lock
-- Once-per-cluster jobs: a session-level advisory lock, not waited for.
SELECT CASE WHEN pg_try_advisory_lock(:lock_key) THEN 1 ELSE 0 END AS granted;

-- name: release_cluster_lock
-- Released by the same session right after the job.
SELECT CASE WHEN pg_advisory_unlock(:lock_key) THEN 1 ELSE 0 END AS released;

-- name: log_error
-- Errors worth a DBA's eye, next to the request they belong to.
INSERT INTO medical_insurance_error_log (request_id, error_code, error_message, detail)
VALUES (:request_id, :error_code, :error_message, :detail);

-- ===== for tests and the benchmark only =====
-- not run by the worker

-- name: count_by_status
-- Queue depth by status: `mi-worker status`, the monitors and the tests read it.
SELECT status, COUNT(*) AS n FROM medical_insurance_requests GROUP BY status;

-- == dashboard ==
-- The read-only web dashboard (mi_worker/dashboard, issue 16). SELECTs only; run under a
-- role with SELECT rights (README, "Dashboard"). Times are UTC text 'yyyy-mm-dd hh:mi:ss'.

-- name: dash_session_read_only
-- Every dashboard session is read-only at the server too: a write would fail even with a
-- role that could write.
SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY;

-- name: dash_session_plans
-- The request list's optional filters are "(:x IS NULL OR col = :x)": plan each call for the
-- filters actually given, so a filter uses its index (PostgreSQL 12+; best effort).
SET plan_cache_mode = force_custom_plan;

-- name: dash_requests_page
-- One page of the request list, newest first, keyset-paged on the primary key (request_id <
-- :before_id, never OFFSET); every filter is an indexed column (migration 008).
SELECT r.request_id, r.interface_code, r.status, r.psn_no, r.msgid, r.his_fee_id, r.attempts,
       r.request_time, r.response_time, r.error_code, r.error_message, r.parent_request_id,
       r.needs_reversal, r.resolved_at
FROM medical_insurance_requests r
WHERE (CAST(:status AS varchar) IS NULL OR r.status = :status)
  AND (CAST(:interface_code AS varchar) IS NULL OR r.interface_code = :interface_code)
  AND (CAST(:psn_no AS varchar) IS NULL OR r.psn_no = :psn_no)
  AND (CAST(:msgid AS varchar) IS NULL OR r.msgid = :msgid)
  AND (CAST(:his_fee_id AS varchar) IS NULL OR r.his_fee_id = :his_fee_id)
  AND (CAST(:from_utc AS varchar) IS NULL
       OR r.request_time >= CAST(:from_utc AS timestamp) AT TIME ZONE 'UTC')
  AND (CAST(:to_utc AS varchar) IS NULL
       OR r.request_time < CAST(:to_utc AS timestamp) AT TIME ZONE 'UTC')
  AND (CAST(:before_id AS bigint) IS NULL OR r.request_id < :before_id)
ORDER BY r.request_id DESC
LIMIT :limit_rows;

-- name: dash_throughput
-- Calls per time bucket and outcome over the last :hours (bucket 0 = the newest), for the
-- overview's throughput chart; the same view and window as monitor_performance.
SELECT CAST(floor(EXTRACT(EPOCH FROM (now() - v.request_time))
                  / CAST(:bucket_seconds AS integer)) AS integer) AS bucket,
       v.result_status, count(*) AS n
FROM v_medical_insurance_result v
WHERE v.request_time >= now() - make_interval(hours => CAST(:hours AS integer))
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: dash_latency
-- p50 and p95 latency (nearest rank, as monitor_interfaces) per interface over the last
-- :hours, for the overview's latency chart.
SELECT v.interface_code, count(*) AS total_calls,
       percentile_disc(0.5) WITHIN GROUP (ORDER BY v.latency_ms) AS p50_ms,
       percentile_disc(0.95) WITHIN GROUP (ORDER BY v.latency_ms) AS p95_ms
FROM v_medical_insurance_result v
WHERE v.request_time >= now() - make_interval(hours => CAST(:hours AS integer))
GROUP BY v.interface_code
ORDER BY count(*) DESC, v.interface_code;

-- name: dash_doubtful
-- Rows a person must look at: UNCERTAIN or NEEDS_MANUAL and not resolved, or COMPLETED but
-- to be reversed, oldest first, with their 2601 reversal rows counted (partial indexes
-- ix_mir_open_rows and ix_mir_doubt).
SELECT r.request_id, r.interface_code, r.status, r.psn_no, r.msgid, r.his_fee_id, r.attempts,
       r.needs_reversal, r.request_time, r.response_time, r.error_code, r.error_message,
       (SELECT count(*) FROM medical_insurance_requests c
         WHERE c.parent_request_id = r.request_id) AS rev_count,
       (SELECT max(c.request_id) FROM medical_insurance_requests c
         WHERE c.parent_request_id = r.request_id) AS rev_id
FROM medical_insurance_requests r
WHERE (r.status IN ('UNCERTAIN', 'NEEDS_MANUAL') AND r.resolved_at IS NULL)
   OR r.needs_reversal = 1
ORDER BY r.request_id
LIMIT 500;

-- name: dash_reconciliation
-- The latest reconciliation (3201) results, newest day first, for the reconciliation page.
SELECT recon_id, stmt_date, insutype, clr_type, setl_optins, medfee_sumamt, fund_pay_sumamt,
       acct_pay, setl_cnt, stmt_rslt, stmt_rslt_dscr, request_id, created_at
FROM medical_insurance_reconciliation
ORDER BY stmt_date DESC, recon_id DESC
LIMIT 200;

-- == worker-managed codes (issue 12) ==

-- name: his_refusal
-- Why the HIS may not call this code (the worker manages it itself), or no row / NULL.
SELECT his_refused FROM medical_insurance_interfaces WHERE interface_code = :interface_code;

-- == gateway kind (issue 11: never settle against a fake centre by accident) ==

-- name: live_gateway_kinds
-- Live workers with their gateway.kind and TLS verification: FAKE_GATEWAY, MIXED_GATEWAY_KINDS
-- and TLS_VERIFY_OFF alerts, `status` and `doctor` read it.
SELECT worker_id, host, gateway_kind, gateway_tls_verified
FROM sdk_heartbeat
WHERE status = 'RUNNING'
  AND last_heartbeat > now() - make_interval(secs => CAST(:down_seconds AS double precision))
ORDER BY worker_id;

-- == doctor (issue 11: the go-live preflight) ==

-- name: doctor_db_time
-- The database clock as Unix seconds: `mi-worker doctor` compares it with the host's.
SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS double precision) AS epoch;

-- name: doctor_procedure
-- Is the HIS procedure there and may the HIS role (:his_role, empty = this login) run it?
-- The procedure runs with the caller's rights and reaches the tables only through the
-- SECURITY DEFINER functions of migration 005 (sql/postgresql/security.sql grants them), so
-- table_rights counts EXECUTE on the three it always calls (3 = all), not table rights.
WITH r AS (
    SELECT COALESCE(NULLIF(CAST(:his_role AS text), ''), CAST(current_user AS text)) AS role_name
), p AS (
    SELECT oid FROM pg_proc
    WHERE proname = 'sp_medical_insurance_call_v2' AND pg_function_is_visible(oid)
), f AS (
    SELECT oid FROM pg_proc
    WHERE proname IN ('mi_his_enqueue', 'mi_his_poll', 'mi_his_timeout')
      AND pg_function_is_visible(oid)
)
SELECT (SELECT COUNT(*) FROM p) AS present,
       (SELECT COUNT(*) FROM pg_roles WHERE rolname = r.role_name) AS role_exists,
       CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r.role_name)
            THEN (SELECT COUNT(*) FROM p WHERE has_function_privilege(r.role_name, p.oid,
                                                                      'EXECUTE'))
            ELSE 0 END AS executable,
       CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r.role_name)
            THEN (SELECT COUNT(*) FROM f WHERE has_function_privilege(r.role_name, f.oid,
                                                                      'EXECUTE'))
            ELSE 0 END AS table_rights,
       r.role_name
FROM r;

-- == day-two operations: metrics counters, retention ==
-- (retention: a row is moved only when it is terminal (COMPLETED, ERROR, TIMEOUT, REVERSED),
-- not flagged for reversal, older than jobs.retention_days, has no open child (a reversal in
-- progress) and is not evidence of a reconciliation day still unbalanced. UNCERTAIN and
-- NEEDS_MANUAL rows stay, resolved or not.)
-- name: heartbeat_counters
-- This worker's monotonic totals by outcome (metrics read them here, never from the history).
UPDATE sdk_heartbeat
   SET completed_total = :completed_total, error_total = :error_total,
       uncertain_total = :uncertain_total, requeued_total = :requeued_total,
       counters_json = :counters_json
 WHERE service_name = :service_name AND worker_id = :worker_id;

-- name: metrics_workers
-- Every worker's heartbeat row with its counters: the scrape reads one row per process.
SELECT service_name, worker_id, host, status, in_flight, processed_total, completed_total,
       error_total, uncertain_total, requeued_total, counters_json,
       CAST(EXTRACT(EPOCH FROM (now() - last_heartbeat)) AS double precision) AS age_seconds
FROM sdk_heartbeat
ORDER BY service_name, worker_id;

-- name: retention_batch
-- The next batch of rows past the retention window, oldest first (ix_mir_request_time keeps
-- this a range read of old rows, however long the history): its request_id bounds.
SELECT MIN(t.request_id) AS lo, MAX(t.request_id) AS hi, COUNT(*) AS n
FROM (SELECT r.request_id FROM medical_insurance_requests r
      WHERE r.status IN ('COMPLETED', 'ERROR', 'TIMEOUT', 'REVERSED')
  AND r.needs_reversal = 0
  AND r.request_time < now() - make_interval(days => CAST(:retention_days AS integer))
  AND (r.response_time IS NULL OR r.response_time < now() - make_interval(days => CAST(:retention_days AS integer)))
  AND NOT EXISTS (SELECT 1 FROM medical_insurance_requests c
                  WHERE c.parent_request_id = r.request_id AND c.status IN ('PENDING', 'PROCESSING', 'UNCERTAIN', 'NEEDS_MANUAL'))
  AND NOT EXISTS (
      SELECT 1 FROM medical_insurance_reconciliation m
      WHERE (m.stmt_rslt IS NULL OR m.stmt_rslt <> '0')
        AND NOT EXISTS (SELECT 1 FROM medical_insurance_reconciliation ok
                        WHERE ok.stmt_date = m.stmt_date AND ok.insutype = m.insutype
                          AND ok.clr_type = m.clr_type AND ok.stmt_rslt = '0'
                          AND ok.recon_id > m.recon_id)
        AND (m.request_id = r.request_id
             OR (r.interface_code IN ('2102', '2207', '2207A', '2304', '2103', '2208', '2305')
                 AND r.response_time >= (CAST(m.stmt_date AS timestamp) - interval '8 hours') AT TIME ZONE 'UTC'
                 AND r.response_time < (CAST(m.stmt_date AS timestamp) + interval '16 hours') AT TIME ZONE 'UTC')))
      ORDER BY r.request_time, r.request_id
      LIMIT :batch_rows) t;

-- name: retention_archive
-- Copy a batch into the archive (rows already there are skipped, so a batch interrupted
-- between copy and delete is simply finished by the next run).
INSERT INTO medical_insurance_requests_archive (request_id, interface_code, input_data, status, priority, timeout_seconds, max_retry_count, attempts, psn_no, insuplc_admdvs, idempotency_key, his_fee_id, msgid, worker_id, claim_token, limit_slot, request_time, deadline_at, next_attempt_at, claimed_at, lease_expires_at, response_time, infcode, response_data, error_code, error_message, attempt_log, needs_reversal, parent_request_id, resolved_at, resolved_by, resolution_note, archived_at)
SELECT r.request_id, r.interface_code, r.input_data, r.status, r.priority, r.timeout_seconds, r.max_retry_count, r.attempts, r.psn_no, r.insuplc_admdvs, r.idempotency_key, r.his_fee_id, r.msgid, r.worker_id, r.claim_token, r.limit_slot, r.request_time, r.deadline_at, r.next_attempt_at, r.claimed_at, r.lease_expires_at, r.response_time, r.infcode, r.response_data, r.error_code, r.error_message, r.attempt_log, r.needs_reversal, r.parent_request_id, r.resolved_at, r.resolved_by, r.resolution_note, now()
FROM medical_insurance_requests r
WHERE r.request_id BETWEEN :lo AND :hi
  AND r.status IN ('COMPLETED', 'ERROR', 'TIMEOUT', 'REVERSED')
  AND r.needs_reversal = 0
  AND r.request_time < now() - make_interval(days => CAST(:retention_days AS integer))
  AND (r.response_time IS NULL OR r.response_time < now() - make_interval(days => CAST(:retention_days AS integer)))
  AND NOT EXISTS (SELECT 1 FROM medical_insurance_requests c
                  WHERE c.parent_request_id = r.request_id AND c.status IN ('PENDING', 'PROCESSING', 'UNCERTAIN', 'NEEDS_MANUAL'))
  AND NOT EXISTS (
      SELECT 1 FROM medical_insurance_reconciliation m
      WHERE (m.stmt_rslt IS NULL OR m.stmt_rslt <> '0')
        AND NOT EXISTS (SELECT 1 FROM medical_insurance_reconciliation ok
                        WHERE ok.stmt_date = m.stmt_date AND ok.insutype = m.insutype
                          AND ok.clr_type = m.clr_type AND ok.stmt_rslt = '0'
                          AND ok.recon_id > m.recon_id)
        AND (m.request_id = r.request_id
             OR (r.interface_code IN ('2102', '2207', '2207A', '2304', '2103', '2208', '2305')
                 AND r.response_time >= (CAST(m.stmt_date AS timestamp) - interval '8 hours') AT TIME ZONE 'UTC'
                 AND r.response_time < (CAST(m.stmt_date AS timestamp) + interval '16 hours') AT TIME ZONE 'UTC')))
  AND NOT EXISTS (SELECT 1 FROM medical_insurance_requests_archive a
                  WHERE a.request_id = r.request_id);

-- name: retention_delete
-- Remove a batch from the live table: with :archived = 1 only rows whose archive copy exists.
DELETE FROM medical_insurance_requests
WHERE request_id IN (
    SELECT r.request_id FROM medical_insurance_requests r
    WHERE r.request_id BETWEEN :lo AND :hi
      AND r.status IN ('COMPLETED', 'ERROR', 'TIMEOUT', 'REVERSED')
  AND r.needs_reversal = 0
  AND r.request_time < now() - make_interval(days => CAST(:retention_days AS integer))
  AND (r.response_time IS NULL OR r.response_time < now() - make_interval(days => CAST(:retention_days AS integer)))
  AND NOT EXISTS (SELECT 1 FROM medical_insurance_requests c
                  WHERE c.parent_request_id = r.request_id AND c.status IN ('PENDING', 'PROCESSING', 'UNCERTAIN', 'NEEDS_MANUAL'))
  AND NOT EXISTS (
      SELECT 1 FROM medical_insurance_reconciliation m
      WHERE (m.stmt_rslt IS NULL OR m.stmt_rslt <> '0')
        AND NOT EXISTS (SELECT 1 FROM medical_insurance_reconciliation ok
                        WHERE ok.stmt_date = m.stmt_date AND ok.insutype = m.insutype
                          AND ok.clr_type = m.clr_type AND ok.stmt_rslt = '0'
                          AND ok.recon_id > m.recon_id)
        AND (m.request_id = r.request_id
             OR (r.interface_code IN ('2102', '2207', '2207A', '2304', '2103', '2208', '2305')
                 AND r.response_time >= (CAST(m.stmt_date AS timestamp) - interval '8 hours') AT TIME ZONE 'UTC'
                 AND r.response_time < (CAST(m.stmt_date AS timestamp) + interval '16 hours') AT TIME ZONE 'UTC')))
      AND (:archived = 0 OR EXISTS (SELECT 1 FROM medical_insurance_requests_archive a
                                    WHERE a.request_id = r.request_id)))
RETURNING request_id;

-- name: reconciliation_days
-- China days from :since_date on with at least one 3201 the centre answered ('ERROR' rows are
-- calls that failed): the catch-up of a missed daily reconciliation runs the other days.
SELECT DISTINCT stmt_date FROM medical_insurance_reconciliation
WHERE stmt_date >= CAST(:since_date AS date) AND stmt_rslt <> 'ERROR'
ORDER BY stmt_date;

-- ===== async calls =====
-- sp_medical_insurance_submit_v2 / _result_v2 (submit_procedure, result_procedure) or, on
-- SQLite, their steps run by mi_worker/his_async.py

-- name: submit_procedure
-- `mi-worker submit` goes through the HIS procedure itself, exactly as the HIS does.
CALL sp_medical_insurance_submit_v2(:interface_code, :input_data, :timeout, :retry_count,
                                    NULL, NULL, NULL, NULL, :priority, :idempotency_key,
                                    :his_fee_id, :psn_no, :insuplc_admdvs);

-- name: result_procedure
-- `mi-worker result` goes through the HIS procedure itself, exactly as the HIS does.
CALL sp_medical_insurance_result_v2(:request_id, :wait_ms, NULL, NULL, NULL, NULL, :poll_ms);

-- name: enqueue_async
-- What the submit procedure inserts: a PENDING row nobody waits on, with its own deadline.
INSERT INTO medical_insurance_requests (interface_code, input_data, status, priority,
    timeout_seconds, max_retry_count, psn_no, insuplc_admdvs, idempotency_key, his_fee_id,
    deadline_at, async_call)
VALUES (:interface_code, :input_data, 'PENDING', :priority, :timeout_seconds, :max_retry_count,
    :psn_no, :insuplc_admdvs, :idempotency_key, :his_fee_id,
    clock_timestamp() + make_interval(secs => CAST(:timeout_seconds AS double precision)), 1)
RETURNING request_id;

-- name: poll_async
-- What the result procedure polls: the caller-facing state of a submitted request only.
SELECT v.request_id, v.status, v.result_status, v.response_data, v.error_code,
       v.error_message, CASE WHEN clock_timestamp() >= v.deadline_at THEN 1 ELSE 0 END
       AS past_deadline
FROM v_medical_insurance_result v
JOIN medical_insurance_requests r ON r.request_id = v.request_id
WHERE v.request_id = :request_id AND r.async_call = 1;

-- ===== files and catalogue sync =====
-- 9101 / 9102 files (mi_worker/files/transfer.py) and the 1301-1319 loads (catalog_sync.py)

-- name: record_file
-- One file exchanged with the centre: where it is and its sha256.
INSERT INTO medical_insurance_files (direction, purpose, file_qury_no, filename, local_path,
    size_bytes, sha256, dld_endtime)
VALUES (:direction, :purpose, :file_qury_no, :filename, :local_path, :size_bytes, :sha256,
    :dld_endtime)
RETURNING file_id;

-- name: catalog_hashes
-- Every loaded row's hash of one catalogue: a rerun writes only new or changed rows.
SELECT item_code, row_hash FROM medical_insurance_catalog WHERE catalog_code = :catalog_code;

-- name: catalog_upsert_row
-- One catalogue row inserted or, when its hash changed, rewritten.
INSERT INTO medical_insurance_catalog AS t (catalog_code, item_code, item_name, ver, updt_time,
    row_hash, row_data, loaded_at)
VALUES (:catalog_code, :item_code, :item_name, :ver, :updt_time, :row_hash, :row_data, now())
ON CONFLICT (catalog_code, item_code) DO UPDATE
   SET item_name = EXCLUDED.item_name, ver = EXCLUDED.ver, updt_time = EXCLUDED.updt_time,
       row_hash = EXCLUDED.row_hash, row_data = EXCLUDED.row_data, loaded_at = now()
 WHERE t.row_hash <> EXCLUDED.row_hash;

-- name: catalog_upsert_batch
-- Many catalogue rows in one statement (:rows: a JSON array of catalog_upsert_row's fields).
INSERT INTO medical_insurance_catalog AS t (catalog_code, item_code, item_name, ver, updt_time,
    row_hash, row_data, loaded_at)
SELECT x.catalog_code, x.item_code, x.item_name, x.ver, x.updt_time, x.row_hash, x.row_data,
       now()
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS x (catalog_code text, item_code text,
    item_name text, ver text, updt_time text, row_hash text, row_data text)
ON CONFLICT (catalog_code, item_code) DO UPDATE
   SET item_name = EXCLUDED.item_name, ver = EXCLUDED.ver, updt_time = EXCLUDED.updt_time,
       row_hash = EXCLUDED.row_hash, row_data = EXCLUDED.row_data, loaded_at = now()
 WHERE t.row_hash <> EXCLUDED.row_hash;

-- name: catalog_last_version
-- The version the last successful sync of a catalogue reached (the next asks from there).
SELECT ver_to FROM medical_insurance_catalog_sync
WHERE catalog_code = :catalog_code AND outcome = 'OK'
ORDER BY sync_id DESC
LIMIT 1;

-- name: catalog_sync_start
-- A sync run begins (RUNNING until finished; a crashed run stays RUNNING, the next asks again).
INSERT INTO medical_insurance_catalog_sync (catalog_code, ver_from)
VALUES (:catalog_code, :ver_from)
RETURNING sync_id;

-- name: catalog_sync_finish
-- A sync run ends OK or FAILED with its counts.
UPDATE medical_insurance_catalog_sync
   SET finished_at = now(), outcome = :outcome, ver_to = :ver_to, file_qury_no = :file_qury_no,
       file_sha256 = :file_sha256, bytes = :bytes, rows_read = :rows_read,
       rows_inserted = :rows_inserted, rows_updated = :rows_updated,
       rows_unchanged = :rows_unchanged, duration_ms = :duration_ms,
       error_message = :error_message
 WHERE sync_id = :sync_id;

-- name: catalog_sync_history
-- The latest sync runs, newest first (monitoring data type 'catalog', `mi-worker catalog status`).
SELECT sync_id, catalog_code, started_at, finished_at, outcome, ver_from, ver_to, bytes,
       rows_read, rows_inserted, rows_updated, rows_unchanged, duration_ms, error_message
FROM medical_insurance_catalog_sync
ORDER BY sync_id DESC
LIMIT :limit;

-- ===== detail reconciliation (对明细账) =====
-- 3202 after a 3201 mismatch (mi_worker/reconcile_detail.py), `mi-worker reconcile --fix`

-- name: insert_recon_detail
-- One settlement the 3202 result says the centre and the hospital disagree on.
INSERT INTO medical_insurance_recon_detail (stmt_date, insutype, clr_type, setl_id, mdtrt_id,
    psn_no, msgid, stmt_rslt, memo, medfee_sumamt, fund_pay_sumamt, acct_pay, request_id)
VALUES (:stmt_date, :insutype, :clr_type, :setl_id, :mdtrt_id, :psn_no, :msgid, :stmt_rslt,
    :memo, :medfee_sumamt, :fund_pay_sumamt, :acct_pay, :request_id)
RETURNING detail_id;

-- name: recon_detail_for_day
-- A day's mismatched settlements (reconcile --date, --fix).
SELECT detail_id, stmt_date, insutype, clr_type, setl_id, mdtrt_id, psn_no, msgid, stmt_rslt,
       memo, medfee_sumamt, fund_pay_sumamt, acct_pay, request_id, fix_request_id
FROM medical_insurance_recon_detail
WHERE stmt_date = :stmt_date
ORDER BY detail_id;

-- name: set_recon_fix
-- The 2601 an operator queued for a 中心多 row (asked once: a row with one is not offered again).
UPDATE medical_insurance_recon_detail SET fix_request_id = :fix_request_id
WHERE detail_id = :detail_id AND fix_request_id IS NULL;

-- name: request_by_msgid
-- The request row that sent a msgid (is a centre-only settlement ours, and did the HIS get it?).
SELECT request_id, interface_code, status, psn_no, insuplc_admdvs, msgid
FROM medical_insurance_requests
WHERE msgid = :msgid;

-- == workflows (issue 14: a settlement saga on the database) ==

-- name: call_workflow_procedure
-- `mi-worker call --workflow` goes through the HIS procedure itself, exactly as the HIS does.
CALL sp_medical_insurance_workflow_v2(:workflow, :input_data, :timeout, NULL, NULL, NULL, NULL,
                                      :idempotency_key, :his_fee_id, :psn_no, :poll_ms);

-- name: wf_start
-- What sp_medical_insurance_workflow_v2 inserts (through mi_wf_start); tests seed with it.
INSERT INTO medical_insurance_workflows (name, input_data, idempotency_key, his_fee_id, psn_no,
    timeout_seconds, deadline_at, error_code, error_message)
VALUES (:workflow, :input_data, :idempotency_key, :his_fee_id, :psn_no, :timeout_seconds,
    now() + make_interval(secs => CAST(:timeout_seconds AS integer)),
    -1005, '请求超时: workflow not started yet')
RETURNING workflow_id;

-- name: wf_find_key
-- Idempotency: the latest workflow of a key that still stands (COMPENSATED frees the key).
SELECT workflow_id, status, wf_result, error_code, error_message
FROM medical_insurance_workflows
WHERE idempotency_key = :idempotency_key AND status <> 'COMPENSATED'
ORDER BY workflow_id DESC LIMIT 1;

-- name: wf_get
-- One workflow with whether its HIS deadline has passed (database clock).
SELECT w.*, CASE WHEN clock_timestamp() >= w.deadline_at THEN 1 ELSE 0 END AS past_deadline
FROM medical_insurance_workflows w
WHERE w.workflow_id = :workflow_id;

-- name: wf_open
-- The advance job's work list: workflows still running or compensating, oldest first.
SELECT w.*, CASE WHEN clock_timestamp() >= w.deadline_at THEN 1 ELSE 0 END AS past_deadline
FROM medical_insurance_workflows w
WHERE w.status IN ('RUNNING', 'COMPENSATING')
ORDER BY w.workflow_id
LIMIT :limit;

-- name: wf_steps
-- Every request row of one workflow (steps n > 0, undos -n), what the engine decides from.
SELECT request_id, workflow_step, interface_code, status, input_data, response_data,
       error_code, error_message, needs_reversal, msgid
FROM medical_insurance_requests
WHERE workflow_id = :workflow_id
ORDER BY workflow_step;

-- name: wf_enqueue_step
-- One step (or undo) as an ordinary request row; the unique (workflow_id, workflow_step)
-- index makes a second enqueue by a concurrent advancer fail instead of sending twice.
INSERT INTO medical_insurance_requests (interface_code, input_data, status, priority,
    timeout_seconds, max_retry_count, psn_no, insuplc_admdvs, his_fee_id, workflow_id,
    workflow_step, deadline_at)
VALUES (:interface_code, :input_data, 'PENDING', :priority, :timeout_seconds, :max_retry_count,
    :psn_no, :insuplc_admdvs, :his_fee_id, :workflow_id, :workflow_step,
    now() + make_interval(secs => CAST(:timeout_seconds AS integer)))
RETURNING request_id;

-- name: wf_update
-- Move a workflow, only from the state the engine saw (a concurrent advancer wins) and never
-- out of a final state; a compensation never goes back to RUNNING or to COMPLETED.
UPDATE medical_insurance_workflows
SET status = :status, current_step = :current_step,
    wf_definition = COALESCE(CAST(:wf_definition AS text), wf_definition),
    wf_result = COALESCE(CAST(:wf_result AS text), wf_result),
    error_code = :error_code, error_message = :error_message,
    reason_code = COALESCE(CAST(:reason_code AS integer), reason_code),
    reason = COALESCE(CAST(:reason AS text), reason), updated_at = now(),
    finished_at = CASE WHEN CAST(:status AS text) IN ('COMPLETED', 'COMPENSATED',
                                                      'FAILED_NEEDS_MANUAL')
                       THEN now() END
WHERE workflow_id = :workflow_id AND status = :expected_status
  AND status IN ('RUNNING', 'COMPENSATING')
  AND (status = 'RUNNING' OR CAST(:status AS text) IN ('COMPENSATING', 'COMPENSATED', 'FAILED_NEEDS_MANUAL'))
RETURNING workflow_id;

-- == wait plan (issue 17: the HIS procedure's first poll timed from the interface's latency) ==
-- name: record_interface_latency
-- A worker's INSERT-to-result median for one interface (mi_worker/wait_plan.py), read by
-- sp_medical_insurance_call_v2 through mi_his_wait_ms. An interface missing from the
-- catalogue table gets no estimate (its callers keep the fixed schedule).
UPDATE medical_insurance_interfaces
   SET expected_ms = CAST(:expected_ms AS integer), expected_at = now()
 WHERE interface_code = :interface_code;

-- name: interface_wait_ms
-- The estimate the embedded path (mi-worker call on SQLite) times its first poll by; NULL
-- when unknown or older than wait_plan.STALE_SECONDS. The same rule as mi_his_wait_ms.
SELECT mi_his_wait_ms(CAST(:interface_code AS varchar)) AS expected_ms;
