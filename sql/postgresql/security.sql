-- Database roles for mi-worker on PostgreSQL (also the starting point for openGauss and
-- KingbaseES), issue 12. Run by the owner of the mi-worker objects (the account that runs
-- `mi-worker db upgrade`) in the HIS database, AFTER the upgrade, with psql:
--     psql -v ON_ERROR_STOP=1 -d <database> -f sql/postgresql/security.sql
-- Idempotent: roles are created only when missing; GRANT / REVOKE repeat as no-ops. One
-- transaction: a missing object (upgrade not run) rolls everything back.
--
-- Two roles, both NOLOGIN groups (roles are cluster-wide in PostgreSQL):
--
--   mi_worker_role      the worker service account (`mi-worker run` and the operator
--                       commands): the rights sql/postgresql/queries.sql needs, table by
--                       table; no DDL, no DELETE on the request history.
--   mi_his_caller_role  the HIS application's login: EXECUTE on sp_medical_insurance_call_v2
--                       and sp_check_sdk_service_status, and on the SECURITY DEFINER functions
--                       the procedure calls (mi_his_*: enqueue, poll its own row by a random
--                       token, time out its own row, the idempotency lookup, the catalogue's
--                       refusal). No right on any table or on the view: it cannot SELECT
--                       another patient's answer, UPDATE a status or DELETE anything. The
--                       procedure itself stays SECURITY INVOKER because it COMMITs.
--
-- Then, per login (pick your own names and a strong password):
--     CREATE ROLE mi_worker LOGIN PASSWORD '<strong password>' IN ROLE mi_worker_role;
--     CREATE ROLE his_app   LOGIN PASSWORD '<strong password>' IN ROLE mi_his_caller_role;
-- A HIS that must read v_medical_insurance_result itself can be given SELECT on it
-- explicitly; that view holds every patient's response_data, so think twice.

BEGIN;

DO $$
BEGIN
    IF to_regprocedure('mi_his_enqueue(varchar, text, integer, integer, integer, varchar, '
                       'varchar, varchar, varchar)') IS NULL THEN
        RAISE EXCEPTION 'mi-worker: run `mi-worker db upgrade` before security.sql (objects missing)';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mi_worker_role') THEN
        CREATE ROLE mi_worker_role NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mi_his_caller_role') THEN
        CREATE ROLE mi_his_caller_role NOLOGIN;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO mi_worker_role, mi_his_caller_role',
                   current_schema());
END;
$$;

-- Functions and procedures are executable by PUBLIC by default: not these.
REVOKE ALL ON PROCEDURE sp_medical_insurance_call_v2 FROM PUBLIC;
REVOKE ALL ON PROCEDURE sp_medical_insurance_submit_v2, sp_medical_insurance_result_v2
    FROM PUBLIC;
REVOKE ALL ON FUNCTION mi_his_enqueue_async, mi_his_result, mi_his_expire_async FROM PUBLIC;
REVOKE ALL ON FUNCTION sp_check_sdk_service_status, mi_his_refusal, mi_his_find_key,
    mi_his_enqueue, mi_his_poll, mi_his_timeout, mi_his_wait_ms FROM PUBLIC;
REVOKE ALL ON FUNCTION mi_monitor_health, mi_monitor_performance, mi_monitor_interfaces,
    mi_monitor_queue, mi_monitor_workers, sp_get_medical_insurance_monitor_data,
    sp_check_medical_insurance_alerts FROM PUBLIC;

-- The HIS: the procedure and what it calls, nothing else.
GRANT EXECUTE ON PROCEDURE sp_medical_insurance_call_v2 TO mi_his_caller_role;
-- Calls that do not wait (issue 15): mi_his_result reads submitted (async) rows only.
GRANT EXECUTE ON PROCEDURE sp_medical_insurance_submit_v2, sp_medical_insurance_result_v2
    TO mi_his_caller_role;
GRANT EXECUTE ON FUNCTION mi_his_enqueue_async, mi_his_result, mi_his_expire_async
    TO mi_his_caller_role;
GRANT EXECUTE ON FUNCTION sp_check_sdk_service_status, mi_his_refusal, mi_his_find_key,
    mi_his_enqueue, mi_his_poll, mi_his_timeout, mi_his_wait_ms TO mi_his_caller_role;

-- The worker.
GRANT SELECT, INSERT, UPDATE ON medical_insurance_requests TO mi_worker_role;
GRANT SELECT ON v_medical_insurance_result TO mi_worker_role;
GRANT SELECT, INSERT, UPDATE ON sdk_heartbeat TO mi_worker_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON medical_insurance_limits TO mi_worker_role;
GRANT SELECT, INSERT, UPDATE ON medical_insurance_alerts TO mi_worker_role;
GRANT INSERT ON medical_insurance_error_log TO mi_worker_role;
GRANT SELECT, INSERT ON medical_insurance_reconciliation TO mi_worker_role;
GRANT SELECT ON mi_schema_version TO mi_worker_role;
GRANT SELECT ON medical_insurance_interfaces TO mi_worker_role;
-- the latency estimates the HIS procedure times its first poll by (issue 17)
GRANT UPDATE (expected_ms, expected_at) ON medical_insurance_interfaces TO mi_worker_role;
-- Files with the centre and catalogue sync (issue 15).
GRANT SELECT, INSERT ON medical_insurance_files TO mi_worker_role;
GRANT SELECT, INSERT, UPDATE ON medical_insurance_catalog TO mi_worker_role;
GRANT SELECT, INSERT, UPDATE ON medical_insurance_catalog_sync TO mi_worker_role;
GRANT SELECT, INSERT, UPDATE ON medical_insurance_recon_detail TO mi_worker_role;
GRANT USAGE ON SEQUENCE medical_insurance_files_file_id_seq,
    medical_insurance_catalog_sync_sync_id_seq, medical_insurance_recon_detail_detail_id_seq
    TO mi_worker_role;
GRANT USAGE ON SEQUENCE medical_insurance_msgid_seq, medical_insurance_requests_request_id_seq,
    medical_insurance_error_log_log_id_seq, medical_insurance_alerts_alert_id_seq,
    medical_insurance_reconciliation_recon_id_seq TO mi_worker_role;
-- `mi-worker call` goes through the procedure, as the HIS does; the monitors are invoker
-- functions over the tables granted above.
GRANT EXECUTE ON PROCEDURE sp_medical_insurance_call_v2 TO mi_worker_role;
GRANT EXECUTE ON PROCEDURE sp_medical_insurance_submit_v2, sp_medical_insurance_result_v2
    TO mi_worker_role;
GRANT EXECUTE ON FUNCTION mi_his_enqueue_async, mi_his_result, mi_his_expire_async
    TO mi_worker_role;
GRANT EXECUTE ON FUNCTION sp_check_sdk_service_status, mi_his_refusal, mi_his_find_key,
    mi_his_enqueue, mi_his_poll, mi_his_timeout, mi_his_wait_ms TO mi_worker_role;
GRANT EXECUTE ON FUNCTION mi_monitor_health, mi_monitor_performance, mi_monitor_interfaces,
    mi_monitor_queue, mi_monitor_workers, sp_get_medical_insurance_monitor_data,
    sp_check_medical_insurance_alerts TO mi_worker_role;

COMMIT;

-- Workflows (issue 14): the HIS runs sp_medical_insurance_workflow_v2 and its definer helpers;
-- the worker advances workflow rows.
REVOKE ALL ON PROCEDURE sp_medical_insurance_workflow_v2 FROM PUBLIC;
REVOKE ALL ON FUNCTION mi_wf_find_key, mi_wf_start, mi_wf_poll FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE sp_medical_insurance_workflow_v2 TO mi_his_caller_role, mi_worker_role;
GRANT EXECUTE ON FUNCTION mi_wf_find_key, mi_wf_start, mi_wf_poll
    TO mi_his_caller_role, mi_worker_role;
GRANT SELECT, INSERT, UPDATE ON medical_insurance_workflows TO mi_worker_role;
GRANT USAGE ON SEQUENCE medical_insurance_workflows_workflow_id_seq TO mi_worker_role;
