-- Every statement mi-worker runs on SQLite. `-- name:` starts a query, the next comment line
-- says why. Parameters are :named and bound by sqlite3. Writes run inside BEGIN IMMEDIATE
-- (mi_worker/db/sqlite.py), so each statement below is atomic across processes.
-- The same names exist for PostgreSQL and SQL Server.
-- Run outside this file, on purpose: the PRAGMAs of every new connection (journal_mode=WAL,
-- synchronous=NORMAL, busy_timeout, foreign_keys; mi_worker/db/sqlite.py), BEGIN IMMEDIATE /
-- COMMIT around writes and migrations, and the migration files themselves.

-- ===== claim and results =====
-- a worker leases rows, sends them, writes each outcome once (token-guarded)

-- name: claim_batch
-- Lease up to :batch_size runnable rows in one statement: priority then age, only the head of
-- each patient's queue, within each interface's free slots, msgid assigned (a second whose
-- msgid with these 4 digits is taken, above 10,000 in one second, is skipped: the next one).
WITH cand AS (
    SELECT r.request_id, r.interface_code, r.priority, r.psn_no
    FROM medical_insurance_requests r
    WHERE r.status = 'PENDING'
      AND r.next_attempt_at <= strftime('%Y-%m-%d %H:%M:%f', 'now')
      AND r.deadline_at > strftime('%Y-%m-%d %H:%M:%f', 'now')
      AND (r.psn_no IS NULL OR NOT EXISTS (
            SELECT 1 FROM medical_insurance_requests e
            WHERE e.psn_no = r.psn_no
              AND e.request_id <> r.request_id
              AND (e.status IN ('PENDING', 'PROCESSING', 'UNCERTAIN') OR e.needs_reversal = 1)
              AND (e.status = 'PROCESSING'
                   OR (r.parent_request_id IS NULL
                       AND ((e.status = 'PENDING' AND e.request_id < r.request_id
                             AND e.deadline_at > strftime('%Y-%m-%d %H:%M:%f', 'now'))
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
), ranked AS (
    SELECT c.request_id, c.interface_code, c.priority,
           COALESCE(l.max_in_flight, d.max_in_flight) AS lim,
           row_number() OVER (PARTITION BY c.interface_code
                              ORDER BY c.priority, c.request_id) AS k,
           row_number() OVER (PARTITION BY COALESCE(c.psn_no, 'rid:' || CAST(c.request_id AS TEXT))
                              ORDER BY c.priority, c.request_id) AS psn_rank
    FROM cand c
    LEFT JOIN medical_insurance_limits l ON l.interface_code = c.interface_code
    LEFT JOIN medical_insurance_limits d ON d.interface_code = '*'
), all_slots (interface_code, lim, slot) AS (
    SELECT DISTINCT interface_code, lim, 0 FROM ranked WHERE lim IS NOT NULL
    UNION ALL
    SELECT interface_code, lim, slot + 1 FROM all_slots WHERE slot + 1 < lim
), slots AS (
    SELECT a.interface_code, a.slot,
           row_number() OVER (PARTITION BY a.interface_code
                              ORDER BY (a.slot + :slot_offset) % a.lim) AS k
    FROM all_slots a
    WHERE NOT EXISTS (
        SELECT 1 FROM medical_insurance_requests b
        WHERE b.status = 'PROCESSING' AND b.interface_code = a.interface_code
          AND b.limit_slot = a.slot)
), picked AS (
    SELECT r.request_id, s.slot,
           row_number() OVER (ORDER BY r.priority, r.request_id) AS rn
    FROM ranked r
    LEFT JOIN slots s ON s.interface_code = r.interface_code AND s.k = r.k
    WHERE (r.lim IS NULL OR s.slot IS NOT NULL) AND r.psn_rank = 1
    ORDER BY r.priority, r.request_id
    LIMIT MIN(:batch_size, 10000)
), seq AS (
    SELECT value AS base FROM medical_insurance_msgid_counter WHERE id = 1
), secs (j) AS (
    SELECT 0 UNION ALL SELECT j + 1 FROM secs WHERE j < 60
)
UPDATE medical_insurance_requests
   SET status = 'PROCESSING',
       worker_id = :worker_id,
       claim_token = :claim_token,
       claimed_at = strftime('%Y-%m-%d %H:%M:%f', 'now'),
       lease_expires_at = strftime('%Y-%m-%d %H:%M:%f', 'now',
                                   printf('%+.3f seconds', :lease_seconds)),
       attempts = attempts + 1,
       limit_slot = p.slot,
       msgid_seq = seq.base + p.rn,
       msgid = COALESCE(
           (SELECT :fixmedins_code || strftime('%Y%m%d%H%M%S', 'now', '+8 hours',
                                                printf('+%d seconds', secs.j))
                   || printf('%04d', (seq.base + p.rn) % 10000)
            FROM secs
            WHERE NOT EXISTS (
                SELECT 1 FROM medical_insurance_requests x
                WHERE x.msgid = :fixmedins_code
                                || strftime('%Y%m%d%H%M%S', 'now', '+8 hours',
                                            printf('+%d seconds', secs.j))
                                || printf('%04d', (seq.base + p.rn) % 10000))
            LIMIT 1),
           :fixmedins_code || strftime('%Y%m%d%H%M%S', 'now', '+8 hours')
           || printf('%04d', (seq.base + p.rn) % 10000))
  FROM picked p, seq
 WHERE medical_insurance_requests.request_id = p.request_id
RETURNING request_id, interface_code, input_data, msgid, attempts, max_retry_count, psn_no,
          insuplc_admdvs, priority, parent_request_id, workflow_id,
          (julianday(deadline_at) - julianday('now')) * 86400.0 AS seconds_left,
          (julianday('now') - julianday(request_time)) * 86400.0 AS queued_seconds;

-- name: assign_new_msgid
-- A resend must carry a new msgid (the centre rejects a repeated one); stored before sending.
-- The same rule as claim_batch: a second whose msgid with these 4 digits is taken is skipped.
WITH secs (j) AS (
    SELECT 0 UNION ALL SELECT j + 1 FROM secs WHERE j < 60
), d AS (
    SELECT value + 1 AS v, printf('%04d', (value + 1) % 10000) AS digits
    FROM medical_insurance_msgid_counter WHERE id = 1
)
UPDATE medical_insurance_requests
   SET msgid_seq = (SELECT v FROM d),
       msgid = COALESCE(
           (SELECT :fixmedins_code || strftime('%Y%m%d%H%M%S', 'now', '+8 hours',
                                                printf('+%d seconds', secs.j)) || d.digits
            FROM secs, d
            WHERE NOT EXISTS (
                SELECT 1 FROM medical_insurance_requests x
                WHERE x.msgid = :fixmedins_code
                                || strftime('%Y%m%d%H%M%S', 'now', '+8 hours',
                                            printf('+%d seconds', secs.j)) || d.digits)
            LIMIT 1),
           :fixmedins_code || strftime('%Y%m%d%H%M%S', 'now', '+8 hours')
           || (SELECT digits FROM d))
 WHERE request_id = :request_id AND claim_token = :claim_token AND status = 'PROCESSING'
RETURNING msgid;

-- name: next_msgid
-- A msgid for a message that has no request row (9001 sign-in, 9002 sign-out).
-- The same rule as claim_batch (a second whose msgid with these 4 digits is taken is skipped).
UPDATE medical_insurance_msgid_counter
   SET value = value + 1
 WHERE id = 1
RETURNING COALESCE(
    (SELECT :fixmedins_code || strftime('%Y%m%d%H%M%S', 'now', '+8 hours', printf('+%d seconds', s.j))
            || printf('%04d', value % 10000)
     FROM (WITH RECURSIVE secs (j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM secs WHERE j < 60)
           SELECT j FROM secs) s
     WHERE NOT EXISTS (
         SELECT 1 FROM medical_insurance_requests x
         WHERE x.msgid = :fixmedins_code
                         || strftime('%Y%m%d%H%M%S', 'now', '+8 hours', printf('+%d seconds', s.j))
                         || printf('%04d', value % 10000))
     LIMIT 1),
    :fixmedins_code || strftime('%Y%m%d%H%M%S', 'now', '+8 hours')
    || printf('%04d', value % 10000)) AS msgid;

-- name: complete_request
-- The one write of a finished call, only while this claim still holds the row; a
-- state-changing call finished after its caller's deadline is flagged for reversal.
UPDATE medical_insurance_requests
   SET status = :status,
       infcode = :infcode,
       response_data = :response_data,
       error_code = :error_code,
       error_message = :error_message,
       msgid = COALESCE(:msgid, msgid),
       attempt_log = :attempt_log,
       response_time = strftime('%Y-%m-%d %H:%M:%f', 'now'),
       lease_expires_at = NULL,
       limit_slot = NULL,
       needs_reversal = CASE WHEN :status = 'COMPLETED' AND :late_reversible = 1
                                  AND strftime('%Y-%m-%d %H:%M:%f', 'now') > deadline_at
                             THEN 1 ELSE 0 END
 WHERE request_id = :request_id AND claim_token = :claim_token AND status = 'PROCESSING'
RETURNING request_id, needs_reversal;

-- name: complete_batch
-- Group commit: many finished calls written in one statement (the same guard as
-- complete_request, row by row).
UPDATE medical_insurance_requests
   SET status = json_extract(x.value, '$.status'),
       infcode = json_extract(x.value, '$.infcode'),
       response_data = json_extract(x.value, '$.response_data'),
       error_code = json_extract(x.value, '$.error_code'),
       error_message = json_extract(x.value, '$.error_message'),
       msgid = COALESCE(json_extract(x.value, '$.msgid'), msgid),
       attempt_log = json_extract(x.value, '$.attempt_log'),
       response_time = strftime('%Y-%m-%d %H:%M:%f', 'now'),
       lease_expires_at = NULL,
       limit_slot = NULL,
       needs_reversal = CASE WHEN json_extract(x.value, '$.status') = 'COMPLETED'
                                  AND json_extract(x.value, '$.late_reversible') = 1
                                  AND strftime('%Y-%m-%d %H:%M:%f', 'now') > deadline_at
                             THEN 1 ELSE 0 END
  FROM json_each(:rows) AS x
 WHERE medical_insurance_requests.request_id = json_extract(x.value, '$.request_id')
   AND medical_insurance_requests.claim_token = json_extract(x.value, '$.claim_token')
   AND medical_insurance_requests.status = 'PROCESSING'
RETURNING request_id, needs_reversal;

-- name: requeue_request
-- A retryable failure goes back to PENDING with its back-off stored in the row (it survives a
-- restart and any worker may take it); out of attempts or time it ends ERROR or TIMEOUT.
UPDATE medical_insurance_requests
   SET status = CASE
            WHEN strftime('%Y-%m-%d %H:%M:%f', 'now', printf('%+.3f seconds', :delay_seconds))
                 >= deadline_at THEN 'TIMEOUT'
            WHEN attempts > max_retry_count THEN 'ERROR'
            ELSE 'PENDING' END,
       next_attempt_at = strftime('%Y-%m-%d %H:%M:%f', 'now',
                                  printf('%+.3f seconds', :delay_seconds)),
       error_code = :error_code,
       error_message = :error_message,
       attempt_log = :attempt_log,
       msgid = COALESCE(:msgid, msgid),
       worker_id = NULL,
       claim_token = NULL,
       lease_expires_at = NULL,
       limit_slot = NULL,
       response_time = CASE
            WHEN strftime('%Y-%m-%d %H:%M:%f', 'now', printf('%+.3f seconds', :delay_seconds))
                 >= deadline_at OR attempts > max_retry_count
            THEN strftime('%Y-%m-%d %H:%M:%f', 'now') END
 WHERE request_id = :request_id AND claim_token = :claim_token AND status = 'PROCESSING'
RETURNING request_id, status;

-- name: release_request
-- Graceful stop: a claimed row that was never sent goes back to PENDING as if untouched.
UPDATE medical_insurance_requests
   SET status = 'PENDING', attempts = MAX(attempts - 1, 0), worker_id = NULL,
       claim_token = NULL, lease_expires_at = NULL, limit_slot = NULL
 WHERE request_id = :request_id AND claim_token = :claim_token AND status = 'PROCESSING'
RETURNING request_id;

-- name: extend_lease
-- The heartbeat keeps the leases of the claims this worker still works on.
UPDATE medical_insurance_requests
   SET lease_expires_at = strftime('%Y-%m-%d %H:%M:%f', 'now',
                                   printf('%+.3f seconds', :lease_seconds))
 WHERE claim_token = :claim_token AND status = 'PROCESSING';

-- ===== workers =====
-- one heartbeat row per worker process; the -1002 check and the monitors read it

-- name: heartbeat
-- One row per worker process; the -1002 check and the monitors read it.
INSERT INTO sdk_heartbeat (service_name, worker_id, host, pid, version, started_at,
                           last_heartbeat, status, in_flight, processed_total, gateway_kind,
                           gateway_tls_verified)
VALUES (:service_name, :worker_id, :host, :pid, :version,
        strftime('%Y-%m-%d %H:%M:%f', 'now'), strftime('%Y-%m-%d %H:%M:%f', 'now'), :status,
        :in_flight, :processed_total, :gateway_kind, :gateway_tls_verified)
ON CONFLICT (service_name, worker_id) DO UPDATE
   SET last_heartbeat = excluded.last_heartbeat, status = excluded.status,
       in_flight = excluded.in_flight, processed_total = excluded.processed_total,
       host = excluded.host, pid = excluded.pid, version = excluded.version,
       gateway_kind = excluded.gateway_kind,
       gateway_tls_verified = excluded.gateway_tls_verified;

-- name: service_status
-- 1 when any worker beat within :stale_seconds (what sp_check_sdk_service_status answers).
SELECT CASE WHEN EXISTS (
    SELECT 1 FROM sdk_heartbeat
    WHERE status = 'RUNNING'
      AND last_heartbeat > strftime('%Y-%m-%d %H:%M:%f', 'now',
                                    printf('-%d seconds', :stale_seconds))
) THEN 1 ELSE 0 END AS alive;

-- name: heartbeat_rows
-- Every worker's heartbeat with its age in seconds (database clock): health, status, tests.
SELECT service_name, worker_id, host, pid, version, started_at, last_heartbeat, status,
       in_flight, processed_total, gateway_kind, gateway_tls_verified,
       (julianday('now') - julianday(last_heartbeat)) * 86400.0 AS age_seconds
FROM sdk_heartbeat
ORDER BY service_name, worker_id;

-- ===== the HIS contract =====
-- sp_medical_insurance_call_v2 (call_procedure) or, on SQLite, its steps run by mi_worker/his_call.py

-- name: enqueue_request
-- What the HIS procedure inserts on server databases; on SQLite `mi-worker call` runs it.
INSERT INTO medical_insurance_requests (interface_code, input_data, status, priority,
    timeout_seconds, max_retry_count, psn_no, insuplc_admdvs, idempotency_key, his_fee_id,
    parent_request_id, deadline_at)
VALUES (:interface_code, :input_data, 'PENDING', :priority, :timeout_seconds, :max_retry_count,
    :psn_no, :insuplc_admdvs, :idempotency_key, :his_fee_id, :parent_request_id,
    strftime('%Y-%m-%d %H:%M:%f', 'now', printf('%+.3f seconds', :timeout_seconds)))
RETURNING request_id;

-- name: poll_result
-- What the caller polls: the caller-facing state of one request.
SELECT v.request_id, v.status, v.result_status, v.response_data, v.error_code,
       v.error_message,
       CASE WHEN strftime('%Y-%m-%d %H:%M:%f', 'now') >= v.deadline_at THEN 1 ELSE 0 END
           AS past_deadline
FROM v_medical_insurance_result v
WHERE v.request_id = :request_id;

-- name: timeout_if_pending
-- At the caller's deadline a row nobody claimed ends TIMEOUT; a claimed one stays with its
-- worker (the caller is told the outcome is in doubt).
UPDATE medical_insurance_requests
   SET status = 'TIMEOUT', response_time = strftime('%Y-%m-%d %H:%M:%f', 'now'),
       error_code = -1005, error_message = :error_message
 WHERE request_id = :request_id AND status = 'PENDING'
RETURNING request_id;

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
UPDATE medical_insurance_requests
   SET status = 'TIMEOUT', response_time = strftime('%Y-%m-%d %H:%M:%f', 'now'),
       error_code = -1005,
       error_message = '请求超时: deadline passed before any worker sent the request'
 WHERE status = 'PENDING' AND deadline_at <= strftime('%Y-%m-%d %H:%M:%f', 'now')
RETURNING request_id;

-- name: find_lost_leases
-- Rows whose lease ran out and whose worker is not beating (or ran out long ago).
SELECT r.request_id, r.interface_code, r.claim_token, r.worker_id,
       CASE WHEN r.deadline_at <= strftime('%Y-%m-%d %H:%M:%f', 'now') THEN 1 ELSE 0 END
           AS past_deadline
FROM medical_insurance_requests r
WHERE r.status = 'PROCESSING'
  AND r.lease_expires_at < strftime('%Y-%m-%d %H:%M:%f', 'now')
  AND (r.lease_expires_at < strftime('%Y-%m-%d %H:%M:%f', 'now',
                                     printf('-%d seconds', :lease_seconds))
       OR NOT EXISTS (
           SELECT 1 FROM sdk_heartbeat h
           WHERE h.worker_id = r.worker_id AND h.status = 'RUNNING'
             AND h.last_heartbeat > strftime('%Y-%m-%d %H:%M:%f', 'now',
                                             printf('-%d seconds', :stale_seconds))))
ORDER BY r.request_id
LIMIT 500;

-- name: recover_lease
-- Move one lost row to the state the job chose (PENDING, UNCERTAIN or TIMEOUT).
UPDATE medical_insurance_requests
   SET status = :status, worker_id = NULL, claim_token = NULL, lease_expires_at = NULL,
       limit_slot = NULL, error_code = :error_code, error_message = :error_message,
       response_time = CASE WHEN :status = 'PENDING' THEN NULL
                            ELSE strftime('%Y-%m-%d %H:%M:%f', 'now') END
 WHERE request_id = :request_id AND claim_token = :claim_token AND status = 'PROCESSING'
RETURNING request_id;

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
    strftime('%Y-%m-%d %H:%M:%f', 'now', printf('%+.3f seconds', :delay_seconds)),
    strftime('%Y-%m-%d %H:%M:%f', 'now',
             printf('%+.3f seconds', :delay_seconds + :timeout_seconds)))
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
-- Conditions that are alert-worthy right now (the error-rate rule needs :min_calls calls).
SELECT 'SERVICE_DOWN' AS alert_type, 'CRITICAL' AS alert_level,
       '医保SDK服务已停止响应: no mi-worker heartbeat in the last ' || :down_seconds || ' s'
           AS alert_message,
       strftime('%Y-%m-%d %H:%M:%f', 'now') AS alert_time
WHERE NOT EXISTS (SELECT 1 FROM sdk_heartbeat
                  WHERE status = 'RUNNING'
                    AND last_heartbeat > strftime('%Y-%m-%d %H:%M:%f', 'now',
                                                  printf('-%d seconds', :down_seconds)))
UNION ALL
SELECT 'HIGH_ERROR_RATE', 'WARNING',
       '医保接口错误率过高: ' || ROUND(100.0 * SUM(result_status = 'ERROR') / COUNT(*), 2)
           || '% of ' || COUNT(*) || ' calls in the last hour',
       strftime('%Y-%m-%d %H:%M:%f', 'now')
FROM v_medical_insurance_result
WHERE request_time >= strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 hours')
  AND result_status <> 'IN_PROGRESS'
HAVING COUNT(*) >= :min_calls
   AND 100.0 * SUM(result_status = 'ERROR') / COUNT(*) > :error_rate_percent
UNION ALL
SELECT 'SLOW_RESPONSE', 'WARNING',
       '医保接口响应时间过慢: average ' || CAST(ROUND(AVG(latency_ms)) AS INTEGER)
           || ' ms in the last hour',
       strftime('%Y-%m-%d %H:%M:%f', 'now')
FROM v_medical_insurance_result
WHERE request_time >= strftime('%Y-%m-%d %H:%M:%f', 'now', '-1 hours')
  AND latency_ms IS NOT NULL
HAVING AVG(latency_ms) > :slow_avg_ms
UNION ALL
SELECT 'QUEUE_BACKLOG', 'WARNING',
       '队列积压: ' || COUNT(*) || ' PENDING, oldest '
           || CAST((julianday('now') - julianday(MIN(request_time))) * 86400 AS INTEGER) || ' s',
       strftime('%Y-%m-%d %H:%M:%f', 'now')
FROM medical_insurance_requests
WHERE status = 'PENDING'
HAVING COUNT(*) > :backlog_pending
    OR MIN(request_time) < strftime('%Y-%m-%d %H:%M:%f', 'now',
                                    printf('-%d seconds', :backlog_age_seconds))
UNION ALL
SELECT 'UNCERTAIN_REQUESTS', 'WARNING',
       '结果不确定: ' || COUNT(*) || ' request(s) UNCERTAIN, reversal (冲正) under way',
       strftime('%Y-%m-%d %H:%M:%f', 'now')
FROM medical_insurance_requests
WHERE status = 'UNCERTAIN' OR needs_reversal = 1
HAVING COUNT(*) > 0
UNION ALL
SELECT 'NEEDS_MANUAL', 'CRITICAL',
       '需人工处理: ' || COUNT(*)
           || ' request(s) NEEDS_MANUAL (mi-worker requests list --status NEEDS_MANUAL)',
       strftime('%Y-%m-%d %H:%M:%f', 'now')
FROM medical_insurance_requests
WHERE status = 'NEEDS_MANUAL' AND resolved_at IS NULL
HAVING COUNT(*) > 0
UNION ALL
SELECT 'FAKE_GATEWAY', 'WARNING',
       '假医保中心: ' || COUNT(*) || ' live worker(s) use gateway.kind sandbox/noop (a FAKE '
           || 'centre, nothing reaches the national platform), e.g. ' || MIN(worker_id),
       strftime('%Y-%m-%d %H:%M:%f', 'now')
FROM sdk_heartbeat
WHERE status = 'RUNNING' AND gateway_kind IN ('sandbox', 'noop')
  AND last_heartbeat > strftime('%Y-%m-%d %H:%M:%f', 'now', printf('-%d seconds', :down_seconds))
HAVING COUNT(*) > 0
UNION ALL
SELECT 'MIXED_GATEWAY_KINDS', 'CRITICAL',
       '网关类型不一致: live workers on this database use gateway.kind ' || MIN(gateway_kind)
           || ' and ' || MAX(gateway_kind) || ' at once',
       strftime('%Y-%m-%d %H:%M:%f', 'now')
FROM sdk_heartbeat
WHERE status = 'RUNNING' AND gateway_kind IS NOT NULL
  AND last_heartbeat > strftime('%Y-%m-%d %H:%M:%f', 'now', printf('-%d seconds', :down_seconds))
HAVING COUNT(DISTINCT gateway_kind) > 1
UNION ALL
SELECT 'TLS_VERIFY_OFF', 'WARNING',
       'TLS证书未校验: gateway.verify_tls = false on ' || COUNT(*) || ' live worker(s), e.g. '
           || MIN(worker_id),
       strftime('%Y-%m-%d %H:%M:%f', 'now')
FROM sdk_heartbeat
WHERE status = 'RUNNING' AND gateway_tls_verified = 0
  AND last_heartbeat > strftime('%Y-%m-%d %H:%M:%f', 'now', printf('-%d seconds', :down_seconds))
HAVING COUNT(*) > 0;

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
   SET last_seen_at = strftime('%Y-%m-%d %H:%M:%f', 'now'), alert_message = :alert_message, detail = :detail
 WHERE alert_id = :alert_id;

-- name: reopen_alert
-- A condition that cleared and came back within the de-duplication window reopens its alert.
UPDATE medical_insurance_alerts
   SET resolved_at = NULL, last_seen_at = strftime('%Y-%m-%d %H:%M:%f', 'now'),
       alert_message = :alert_message
 WHERE alert_id = (SELECT MAX(alert_id) FROM medical_insurance_alerts
                   WHERE alert_type = :alert_type AND resolved_at IS NOT NULL
                     AND resolved_at > strftime('%Y-%m-%d %H:%M:%f', 'now',
                                                printf('-%d minutes', :dedup_minutes)))
RETURNING alert_id;

-- name: resolve_alert
-- The condition cleared: close the open alert.
UPDATE medical_insurance_alerts SET resolved_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
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
UPDATE medical_insurance_alerts SET notified_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
 WHERE alert_id = :alert_id;

-- ===== monitoring and the CLI =====
-- the figures of `mi-worker status`, `monitor`, `metrics`, `requests`

-- name: monitor_health
-- Per-worker and overall UP / WARNING / DOWN by heartbeat age.
WITH w AS (
    SELECT h.service_name, h.worker_id, h.host, h.last_heartbeat, h.in_flight,
           h.processed_total, h.gateway_kind,
           CAST((julianday('now') - julianday(h.last_heartbeat)) * 86400 AS INTEGER) AS age,
           CASE
               WHEN h.status = 'STOPPED' THEN 'STOPPED'
               WHEN (julianday('now') - julianday(h.last_heartbeat)) * 86400 > :down_seconds
                   THEN 'DOWN'
               WHEN (julianday('now') - julianday(h.last_heartbeat)) * 86400 > :warn_seconds
                   THEN 'WARNING'
               ELSE 'UP'
           END AS state
    FROM sdk_heartbeat h
)
SELECT * FROM (
    SELECT 'medical_insurance_sdk' AS service_name, '*' AS worker_id, '(overall)' AS host,
           CASE WHEN MAX(state = 'UP') = 1 THEN 'UP' WHEN MAX(state = 'WARNING') = 1
                THEN 'WARNING' ELSE 'DOWN' END AS status,
           MAX(last_heartbeat) AS last_heartbeat, MIN(age) AS seconds_since_heartbeat,
           COALESCE(SUM(in_flight), 0) AS in_flight,
           COALESCE(SUM(processed_total), 0) AS processed_total,
           strftime('%Y-%m-%d %H:%M:%f', 'now') AS check_time,
           -- the one gateway.kind of the live workers, MIXED when they differ
           CASE WHEN COUNT(DISTINCT CASE WHEN state IN ('UP', 'WARNING') THEN gateway_kind END)
                     > 1 THEN 'MIXED'
                ELSE MAX(CASE WHEN state IN ('UP', 'WARNING') THEN gateway_kind END)
           END AS gateway_kind
    FROM w
    UNION ALL
    SELECT service_name, worker_id, host, state, last_heartbeat, age, in_flight,
           processed_total, strftime('%Y-%m-%d %H:%M:%f', 'now'), gateway_kind
    FROM w
)
ORDER BY worker_id <> '*', service_name, worker_id;

-- name: monitor_performance
-- Last :hours: totals by outcome, success rate, average / p95 (nearest rank) / max latency.
WITH v AS (
    SELECT result_status, latency_ms FROM v_medical_insurance_result
    WHERE request_time >= strftime('%Y-%m-%d %H:%M:%f', 'now', printf('-%d hours', :hours))
), ranked AS (
    SELECT latency_ms, cume_dist() OVER (ORDER BY latency_ms) AS cd
    FROM v WHERE latency_ms IS NOT NULL
)
SELECT COUNT(*) AS total_requests,
       COALESCE(SUM(result_status = 'SUCCESS'), 0) AS success_count,
       COALESCE(SUM(result_status = 'ERROR'), 0) AS error_count,
       COALESCE(SUM(result_status = 'TIMEOUT'), 0) AS timeout_count,
       COALESCE(SUM(result_status = 'UNCERTAIN'), 0) AS uncertain_count,
       COALESCE(SUM(result_status = 'IN_PROGRESS'), 0) AS in_progress_count,
       ROUND(COALESCE(100.0 * SUM(result_status = 'SUCCESS') / NULLIF(COUNT(*), 0), 0), 2)
           AS success_rate,
       ROUND(COALESCE(100.0 * SUM(result_status = 'ERROR') / NULLIF(COUNT(*), 0), 0), 2)
           AS error_rate,
       ROUND(COALESCE(AVG(latency_ms), 0), 2) AS avg_response_time_ms,
       (SELECT MIN(latency_ms) FROM ranked WHERE cd >= 0.95) AS p95_response_time_ms,
       MAX(latency_ms) AS max_response_time_ms,
       strftime('%Y-%m-%d %H:%M:%f', 'now', printf('-%d hours', :hours)) AS since
FROM v;

-- name: monitor_interfaces
-- Last :hours per interface code, with its Chinese name.
WITH v AS (
    SELECT interface_code, result_status, latency_ms FROM v_medical_insurance_result
    WHERE request_time >= strftime('%Y-%m-%d %H:%M:%f', 'now', printf('-%d hours', :hours))
), ranked AS (
    SELECT interface_code, latency_ms,
           cume_dist() OVER (PARTITION BY interface_code ORDER BY latency_ms) AS cd
    FROM v WHERE latency_ms IS NOT NULL
)
SELECT v.interface_code,
       COALESCE(MAX(i.interface_name), '接口' || v.interface_code) AS interface_name,
       COUNT(*) AS total_calls,
       SUM(v.result_status = 'SUCCESS') AS success_calls,
       SUM(v.result_status = 'ERROR') AS error_calls,
       SUM(v.result_status = 'TIMEOUT') AS timeout_calls,
       SUM(v.result_status = 'UNCERTAIN') AS uncertain_calls,
       ROUND(100.0 * SUM(v.result_status = 'SUCCESS') / COUNT(*), 2) AS success_rate,
       ROUND(COALESCE(AVG(v.latency_ms), 0), 2) AS avg_response_time_ms,
       (SELECT MIN(k.latency_ms) FROM ranked k
         WHERE k.interface_code = v.interface_code AND k.cd >= 0.95) AS p95_response_time_ms,
       MAX(v.latency_ms) AS max_response_time_ms
FROM v
LEFT JOIN medical_insurance_interfaces i ON i.interface_code = v.interface_code
GROUP BY v.interface_code
ORDER BY COUNT(*) DESC, v.interface_code;

-- name: monitor_queue
-- Open rows by status and priority with the oldest one's age.
SELECT status, priority, COUNT(*) AS depth, MIN(request_time) AS oldest_request_time,
       CAST((julianday('now') - julianday(MIN(request_time))) * 86400 AS INTEGER)
           AS oldest_age_seconds
FROM medical_insurance_requests
WHERE status IN ('PENDING', 'PROCESSING', 'UNCERTAIN', 'NEEDS_MANUAL') AND resolved_at IS NULL
GROUP BY status, priority
ORDER BY status, priority;

-- name: monitor_workers
-- Every worker process with uptime and counters.
SELECT service_name, worker_id, host, pid, version, status, started_at, last_heartbeat,
       CAST((julianday('now') - julianday(last_heartbeat)) * 86400 AS INTEGER)
           AS seconds_since_heartbeat,
       CAST((julianday(last_heartbeat) - julianday(started_at)) * 86400 AS INTEGER)
           AS uptime_seconds,
       in_flight, processed_total
FROM sdk_heartbeat
ORDER BY service_name, worker_id;

-- name: metrics_by_interface
-- Prometheus counters and latency histogram per interface and outcome.
SELECT interface_code, result_status, COUNT(*) AS n,
       COALESCE(SUM(latency_ms), 0) AS latency_sum_ms, COUNT(latency_ms) AS latency_count,
       SUM(latency_ms <= 50) AS le_50, SUM(latency_ms <= 100) AS le_100,
       SUM(latency_ms <= 250) AS le_250, SUM(latency_ms <= 500) AS le_500,
       SUM(latency_ms <= 1000) AS le_1000, SUM(latency_ms <= 2500) AS le_2500,
       SUM(latency_ms <= 5000) AS le_5000, SUM(latency_ms <= 10000) AS le_10000,
       SUM(latency_ms <= 30000) AS le_30000
FROM v_medical_insurance_result
GROUP BY interface_code, result_status
ORDER BY interface_code, result_status;

-- name: list_requests
-- `mi-worker requests list`: newest first, optionally one status / interface.
SELECT request_id, interface_code, status, psn_no, msgid, attempts, request_time,
       response_time, error_code, error_message, parent_request_id, resolved_at,
       resolution_note
FROM medical_insurance_requests
WHERE (:status IS NULL OR status = :status)
  AND (:interface_code IS NULL OR interface_code = :interface_code)
ORDER BY request_id DESC
LIMIT :limit_rows;

-- name: get_request
-- One row with everything, for `mi-worker call`, `requests show` and tests.
SELECT r.*, v.result_status, v.latency_ms
FROM medical_insurance_requests r
JOIN v_medical_insurance_result v ON v.request_id = r.request_id
WHERE r.request_id = :request_id;

-- name: resolve_request
-- An operator settled a NEEDS_MANUAL (or UNCERTAIN) row by hand: record who, when and how.
UPDATE medical_insurance_requests
   SET resolved_at = strftime('%Y-%m-%d %H:%M:%f', 'now'), resolved_by = :resolved_by,
       resolution_note = :note, needs_reversal = 0
 WHERE request_id = :request_id AND status IN ('NEEDS_MANUAL', 'UNCERTAIN')
   AND resolved_at IS NULL
RETURNING request_id;

-- ===== reconciliation (对账) =====
-- the day's settlements against the centre's 3201 totals

-- name: settlements_between
-- The reconciliation's local side: settlements that COMPLETED in a (China) day.
SELECT request_id, interface_code, input_data, response_data, response_time
FROM medical_insurance_requests
WHERE status = 'COMPLETED' AND needs_reversal = 0
  AND interface_code IN ('2102', '2207', '2207A', '2304')
  AND response_time >= :start_utc AND response_time < :end_utc
ORDER BY request_id;

-- name: cancellations_since
-- Settlement cancellations (2103/2208/2305) that COMPLETED from the day on.
SELECT request_id, interface_code, input_data
FROM medical_insurance_requests
WHERE status = 'COMPLETED' AND interface_code IN ('2103', '2208', '2305')
  AND response_time >= :start_utc
ORDER BY request_id;

-- name: insert_reconciliation
-- The centre's answer to one 3201, next to the local totals that were sent.
INSERT INTO medical_insurance_reconciliation (stmt_date, insutype, clr_type, setl_optins,
    medfee_sumamt, fund_pay_sumamt, acct_pay, setl_cnt, stmt_rslt, stmt_rslt_dscr, request_id)
VALUES (:stmt_date, :insutype, :clr_type, :setl_optins, :medfee_sumamt, :fund_pay_sumamt,
    :acct_pay, :setl_cnt, :stmt_rslt, :stmt_rslt_dscr, :request_id);

-- name: list_reconciliation
-- Reconciliation results of one day (`mi-worker reconcile --show`).
SELECT recon_id, stmt_date, insutype, clr_type, setl_optins, medfee_sumamt, fund_pay_sumamt,
       acct_pay, setl_cnt, stmt_rslt, stmt_rslt_dscr, request_id, created_at
FROM medical_insurance_reconciliation
WHERE stmt_date = :stmt_date
ORDER BY recon_id;

-- ===== schema, catalogue and locks =====
-- migrations, the tables that mirror the code, cluster-wide locks

-- name: server_features
-- What the server is, so the worker decides once what it can use (logged at start).
SELECT sqlite_version() AS server_version, NULL AS compatibility_level;

-- name: create_migrations_table
-- The version table `mi-worker db upgrade` records applied files in.
CREATE TABLE IF NOT EXISTS mi_schema_version (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

-- name: migration_lock
-- BEGIN IMMEDIATE (taken by the migrator) is the lock on SQLite.
SELECT :lock_key AS lock_key;

-- name: applied_migrations
-- Versions already applied, with the checksum of the file as it was.
SELECT version, checksum FROM mi_schema_version ORDER BY version;

-- name: record_migration
-- Written in the same transaction as the migration itself.
INSERT INTO mi_schema_version (version, name, checksum) VALUES (:version, :name, :checksum);

-- name: upsert_interface
-- The catalogue mirrored into SQL so monitors can name interfaces in Chinese.
-- his_refused: why the HIS may not call the code (issue 12), NULL when it may.
INSERT INTO medical_insurance_interfaces (interface_code, interface_name, kind, reversible,
                                          cancel_code, his_refused)
VALUES (:interface_code, :interface_name, :kind, :reversible, :cancel_code, :his_refused)
ON CONFLICT (interface_code) DO UPDATE
   SET interface_name = excluded.interface_name, kind = excluded.kind,
       reversible = excluded.reversible, cancel_code = excluded.cancel_code,
       his_refused = excluded.his_refused;

-- name: list_limits
-- The cluster-wide caps in force (the worker reconciles them with its config at start).
SELECT interface_code, max_in_flight FROM medical_insurance_limits ORDER BY interface_code;

-- name: upsert_limit
-- Set one cap in place: a cap is never absent while it is being rewritten, so a concurrent
-- claim can never run unlimited.
INSERT INTO medical_insurance_limits (interface_code, max_in_flight)
VALUES (:interface_code, :max_in_flight)
ON CONFLICT (interface_code) DO UPDATE SET max_in_flight = excluded.max_in_flight;

-- name: delete_limit
-- Drop a cap the config no longer names.
DELETE FROM medical_insurance_limits WHERE interface_code = :interface_code;

-- name: try_cluster_lock
-- SQLite is single-host: BEGIN IMMEDIATE already serialises every write, so always granted.
SELECT 1 AS granted, :lock_key AS lock_key;

-- name: release_cluster_lock
-- Nothing to release (see try_cluster_lock).
SELECT 1 AS released, :lock_key AS lock_key;

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
-- The read-only web dashboard (mi_worker/dashboard, issue 16). SELECTs only. Times are UTC
-- text 'yyyy-mm-dd hh:mi:ss' (the columns hold UTC text, so text comparison orders them).

-- name: dash_session_read_only
-- Every dashboard connection refuses writes (SQLite has no roles).
PRAGMA query_only = 1;

-- name: dash_session_plans
-- Nothing to do on SQLite (statements are planned at prepare time); kept for the name.
SELECT 1 AS plans;

-- name: dash_requests_page
-- One page of the request list, newest first, keyset-paged on the primary key (request_id <
-- :before_id, never OFFSET).
SELECT r.request_id, r.interface_code, r.status, r.psn_no, r.msgid, r.his_fee_id, r.attempts,
       r.request_time, r.response_time, r.error_code, r.error_message, r.parent_request_id,
       r.needs_reversal, r.resolved_at
FROM medical_insurance_requests r
WHERE (:status IS NULL OR r.status = :status)
  AND (:interface_code IS NULL OR r.interface_code = :interface_code)
  AND (:psn_no IS NULL OR r.psn_no = :psn_no)
  AND (:msgid IS NULL OR r.msgid = :msgid)
  AND (:his_fee_id IS NULL OR r.his_fee_id = :his_fee_id)
  AND (:from_utc IS NULL OR r.request_time >= :from_utc)
  AND (:to_utc IS NULL OR r.request_time < :to_utc)
  AND (:before_id IS NULL OR r.request_id < :before_id)
ORDER BY r.request_id DESC
LIMIT :limit_rows;

-- name: dash_throughput
-- Calls per time bucket and outcome over the last :hours (bucket 0 = the newest), for the
-- overview's throughput chart; the same view and window as monitor_performance.
SELECT CAST((julianday('now') - julianday(v.request_time)) * 86400 / :bucket_seconds AS INTEGER)
           AS bucket,
       v.result_status, COUNT(*) AS n
FROM v_medical_insurance_result v
WHERE v.request_time >= strftime('%Y-%m-%d %H:%M:%f', 'now', printf('-%d hours', :hours))
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: dash_latency
-- p50 and p95 latency (nearest rank, as monitor_interfaces) per interface over the last
-- :hours, for the overview's latency chart.
WITH v AS (
    SELECT interface_code, latency_ms FROM v_medical_insurance_result
    WHERE request_time >= strftime('%Y-%m-%d %H:%M:%f', 'now', printf('-%d hours', :hours))
), ranked AS (
    SELECT interface_code, latency_ms,
           cume_dist() OVER (PARTITION BY interface_code ORDER BY latency_ms) AS cd
    FROM v WHERE latency_ms IS NOT NULL
)
SELECT v.interface_code, COUNT(*) AS total_calls,
       (SELECT MIN(k.latency_ms) FROM ranked k
         WHERE k.interface_code = v.interface_code AND k.cd >= 0.5) AS p50_ms,
       (SELECT MIN(k.latency_ms) FROM ranked k
         WHERE k.interface_code = v.interface_code AND k.cd >= 0.95) AS p95_ms
FROM v
GROUP BY v.interface_code
ORDER BY COUNT(*) DESC, v.interface_code;

-- name: dash_doubtful
-- Rows a person must look at: UNCERTAIN or NEEDS_MANUAL and not resolved, or COMPLETED but
-- to be reversed, oldest first, with their 2601 reversal rows counted.
SELECT r.request_id, r.interface_code, r.status, r.psn_no, r.msgid, r.his_fee_id, r.attempts,
       r.needs_reversal, r.request_time, r.response_time, r.error_code, r.error_message,
       (SELECT COUNT(*) FROM medical_insurance_requests c
         WHERE c.parent_request_id = r.request_id) AS rev_count,
       (SELECT MAX(c.request_id) FROM medical_insurance_requests c
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
  AND last_heartbeat > strftime('%Y-%m-%d %H:%M:%f', 'now', printf('-%d seconds', :down_seconds))
ORDER BY worker_id;

-- == doctor (issue 11: the go-live preflight) ==

-- name: doctor_db_time
-- The database clock as Unix seconds: `mi-worker doctor` compares it with the host's.
SELECT (julianday('now') - 2440587.5) * 86400.0 AS epoch;

-- name: doctor_procedure
-- SQLite has no procedures (the HIS calls `mi-worker call`): same columns, all NULL.
SELECT NULL AS present, NULL AS role_exists, NULL AS executable, NULL AS table_rights,
       :his_role AS role_name;

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
       (julianday('now') - julianday(last_heartbeat)) * 86400.0 AS age_seconds
FROM sdk_heartbeat
ORDER BY service_name, worker_id;

-- name: retention_batch
-- The next batch of rows past the retention window, oldest first (ix_mir_request_time keeps
-- this a range read of old rows, however long the history): its request_id bounds.
SELECT MIN(t.request_id) AS lo, MAX(t.request_id) AS hi, COUNT(*) AS n
FROM (SELECT r.request_id FROM medical_insurance_requests r
      WHERE r.status IN ('COMPLETED', 'ERROR', 'TIMEOUT', 'REVERSED')
  AND r.needs_reversal = 0
  AND r.request_time < strftime('%Y-%m-%d %H:%M:%f', 'now', printf('-%d days', :retention_days))
  AND (r.response_time IS NULL OR r.response_time < strftime('%Y-%m-%d %H:%M:%f', 'now', printf('-%d days', :retention_days)))
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
                 AND r.response_time >= strftime('%Y-%m-%d %H:%M:%f', m.stmt_date, '-8 hours')
                 AND r.response_time < strftime('%Y-%m-%d %H:%M:%f', m.stmt_date, '+16 hours'))))
      ORDER BY r.request_time, r.request_id
      LIMIT :batch_rows) t;

-- name: retention_archive
-- Copy a batch into the archive (rows already there are skipped, so a batch interrupted
-- between copy and delete is simply finished by the next run).
INSERT INTO medical_insurance_requests_archive (request_id, interface_code, input_data, status, priority, timeout_seconds, max_retry_count, attempts, psn_no, insuplc_admdvs, idempotency_key, his_fee_id, msgid, msgid_seq, worker_id, claim_token, limit_slot, request_time, deadline_at, next_attempt_at, claimed_at, lease_expires_at, response_time, infcode, response_data, error_code, error_message, attempt_log, needs_reversal, parent_request_id, resolved_at, resolved_by, resolution_note, archived_at)
SELECT r.request_id, r.interface_code, r.input_data, r.status, r.priority, r.timeout_seconds, r.max_retry_count, r.attempts, r.psn_no, r.insuplc_admdvs, r.idempotency_key, r.his_fee_id, r.msgid, r.msgid_seq, r.worker_id, r.claim_token, r.limit_slot, r.request_time, r.deadline_at, r.next_attempt_at, r.claimed_at, r.lease_expires_at, r.response_time, r.infcode, r.response_data, r.error_code, r.error_message, r.attempt_log, r.needs_reversal, r.parent_request_id, r.resolved_at, r.resolved_by, r.resolution_note, strftime('%Y-%m-%d %H:%M:%f', 'now')
FROM medical_insurance_requests r
WHERE r.request_id BETWEEN :lo AND :hi
  AND r.status IN ('COMPLETED', 'ERROR', 'TIMEOUT', 'REVERSED')
  AND r.needs_reversal = 0
  AND r.request_time < strftime('%Y-%m-%d %H:%M:%f', 'now', printf('-%d days', :retention_days))
  AND (r.response_time IS NULL OR r.response_time < strftime('%Y-%m-%d %H:%M:%f', 'now', printf('-%d days', :retention_days)))
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
                 AND r.response_time >= strftime('%Y-%m-%d %H:%M:%f', m.stmt_date, '-8 hours')
                 AND r.response_time < strftime('%Y-%m-%d %H:%M:%f', m.stmt_date, '+16 hours'))))
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
  AND r.request_time < strftime('%Y-%m-%d %H:%M:%f', 'now', printf('-%d days', :retention_days))
  AND (r.response_time IS NULL OR r.response_time < strftime('%Y-%m-%d %H:%M:%f', 'now', printf('-%d days', :retention_days)))
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
                 AND r.response_time >= strftime('%Y-%m-%d %H:%M:%f', m.stmt_date, '-8 hours')
                 AND r.response_time < strftime('%Y-%m-%d %H:%M:%f', m.stmt_date, '+16 hours'))))
      AND (:archived = 0 OR EXISTS (SELECT 1 FROM medical_insurance_requests_archive a
                                    WHERE a.request_id = r.request_id)))
RETURNING request_id;

-- name: reconciliation_days
-- China days from :since_date on with at least one 3201 the centre answered ('ERROR' rows are
-- calls that failed): the catch-up of a missed daily reconciliation runs the other days.
SELECT DISTINCT stmt_date FROM medical_insurance_reconciliation
WHERE stmt_date >= :since_date AND stmt_rslt <> 'ERROR'
ORDER BY stmt_date;

-- ===== async calls =====
-- sp_medical_insurance_submit_v2 / _result_v2 (submit_procedure, result_procedure) or, on
-- SQLite, their steps run by mi_worker/his_async.py

-- name: enqueue_async
-- What the submit procedure inserts: a PENDING row nobody waits on, with its own deadline.
INSERT INTO medical_insurance_requests (interface_code, input_data, status, priority,
    timeout_seconds, max_retry_count, psn_no, insuplc_admdvs, idempotency_key, his_fee_id,
    deadline_at, async_call)
VALUES (:interface_code, :input_data, 'PENDING', :priority, :timeout_seconds, :max_retry_count,
    :psn_no, :insuplc_admdvs, :idempotency_key, :his_fee_id,
    strftime('%Y-%m-%d %H:%M:%f', 'now', printf('%+.3f seconds', :timeout_seconds)), 1)
RETURNING request_id;

-- name: poll_async
-- What the result procedure polls: the caller-facing state of a submitted request only.
SELECT v.request_id, v.status, v.result_status, v.response_data, v.error_code,
       v.error_message,
       CASE WHEN strftime('%Y-%m-%d %H:%M:%f', 'now') >= v.deadline_at THEN 1 ELSE 0 END
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
INSERT INTO medical_insurance_catalog (catalog_code, item_code, item_name, ver, updt_time,
    row_hash, row_data, loaded_at)
VALUES (:catalog_code, :item_code, :item_name, :ver, :updt_time, :row_hash, :row_data,
    strftime('%Y-%m-%d %H:%M:%f', 'now'))
ON CONFLICT (catalog_code, item_code) DO UPDATE
   SET item_name = excluded.item_name, ver = excluded.ver, updt_time = excluded.updt_time,
       row_hash = excluded.row_hash, row_data = excluded.row_data,
       loaded_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
 WHERE medical_insurance_catalog.row_hash <> excluded.row_hash;

-- name: catalog_upsert_batch
-- Many catalogue rows in one statement (:rows: a JSON array of catalog_upsert_row's fields).
INSERT INTO medical_insurance_catalog (catalog_code, item_code, item_name, ver, updt_time,
    row_hash, row_data, loaded_at)
SELECT json_extract(j.value, '$.catalog_code'), json_extract(j.value, '$.item_code'),
       json_extract(j.value, '$.item_name'), json_extract(j.value, '$.ver'),
       json_extract(j.value, '$.updt_time'), json_extract(j.value, '$.row_hash'),
       json_extract(j.value, '$.row_data'), strftime('%Y-%m-%d %H:%M:%f', 'now')
FROM json_each(:rows) AS j WHERE true
ON CONFLICT (catalog_code, item_code) DO UPDATE
   SET item_name = excluded.item_name, ver = excluded.ver, updt_time = excluded.updt_time,
       row_hash = excluded.row_hash, row_data = excluded.row_data,
       loaded_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
 WHERE medical_insurance_catalog.row_hash <> excluded.row_hash;

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
   SET finished_at = strftime('%Y-%m-%d %H:%M:%f', 'now'), outcome = :outcome, ver_to = :ver_to,
       file_qury_no = :file_qury_no, file_sha256 = :file_sha256, bytes = :bytes,
       rows_read = :rows_read, rows_inserted = :rows_inserted, rows_updated = :rows_updated,
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

-- name: wf_start
-- What sp_medical_insurance_workflow_v2 inserts; on SQLite the contract in Python runs it.
INSERT INTO medical_insurance_workflows (name, input_data, idempotency_key, his_fee_id, psn_no,
    timeout_seconds, deadline_at, error_code, error_message)
VALUES (:workflow, :input_data, :idempotency_key, :his_fee_id, :psn_no, :timeout_seconds,
    strftime('%Y-%m-%d %H:%M:%f', 'now', printf('%+.3f seconds', :timeout_seconds)),
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
SELECT w.*, CASE WHEN strftime('%Y-%m-%d %H:%M:%f', 'now') >= w.deadline_at THEN 1 ELSE 0 END
    AS past_deadline
FROM medical_insurance_workflows w
WHERE w.workflow_id = :workflow_id;

-- name: wf_open
-- The advance job's work list: workflows still running or compensating, oldest first.
SELECT w.*, CASE WHEN strftime('%Y-%m-%d %H:%M:%f', 'now') >= w.deadline_at THEN 1 ELSE 0 END
    AS past_deadline
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
    strftime('%Y-%m-%d %H:%M:%f', 'now', printf('%+.3f seconds', :timeout_seconds)))
RETURNING request_id;

-- name: wf_update
-- Move a workflow, only from the state the engine saw (a concurrent advancer wins) and never
-- out of a final state; a compensation never goes back to RUNNING or to COMPLETED.
UPDATE medical_insurance_workflows
SET status = :status, current_step = :current_step,
    wf_definition = COALESCE(:wf_definition, wf_definition), wf_result = COALESCE(:wf_result, wf_result),
    error_code = :error_code, error_message = :error_message,
    reason_code = COALESCE(:reason_code, reason_code), reason = COALESCE(:reason, reason),
    updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now'),
    finished_at = CASE WHEN :status IN ('COMPLETED', 'COMPENSATED', 'FAILED_NEEDS_MANUAL')
                       THEN strftime('%Y-%m-%d %H:%M:%f', 'now') END
WHERE workflow_id = :workflow_id AND status = :expected_status
  AND status IN ('RUNNING', 'COMPENSATING')
  AND (status = 'RUNNING' OR :status IN ('COMPENSATING', 'COMPENSATED', 'FAILED_NEEDS_MANUAL'))
RETURNING workflow_id;

-- == wait plan (issue 17: the HIS procedure's first poll timed from the interface's latency) ==
-- name: record_interface_latency
-- A worker's INSERT-to-result median for one interface (mi_worker/wait_plan.py). An
-- interface missing from the catalogue table gets no estimate (fixed schedule).
UPDATE medical_insurance_interfaces
   SET expected_ms = :expected_ms, expected_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
 WHERE interface_code = :interface_code;

-- name: interface_wait_ms
-- The estimate mi-worker call times its first poll by; NULL when unknown or older than
-- wait_plan.STALE_SECONDS (600 s), as the procedures read it.
SELECT (SELECT i.expected_ms FROM medical_insurance_interfaces i
         WHERE i.interface_code = :interface_code AND i.expected_ms > 0
           AND i.expected_at > strftime('%Y-%m-%d %H:%M:%f', 'now', '-600 seconds'))
       AS expected_ms;
