-- Database roles for mi-worker on SQL Server 2012 and later (issues 7 and 12). Run by a DBA
-- (a member of db_owner) in the HIS database, AFTER `mi-worker db upgrade` (the GRANTs name
-- the objects, so they must exist). Since issue 12 no migration drops an object the HIS calls
-- or reads (stub + ALTER keeps the permissions), so a later upgrade keeps the grants; run
-- this file again after an upgrade that adds objects.
-- Idempotent: roles are created only when missing, and GRANTing what is granted is a no-op.
-- One batch in one transaction with XACT_ABORT: a missing object (upgrade not run) or any
-- other error rolls the whole file back instead of leaving half the rights granted.
--
-- Four roles:
--
--   mi_worker_role      the worker service account (`mi-worker run`, and the operator
--                       commands status / alerts / metrics / requests / reconcile / call run
--                       with the same account). Exactly the rights the statements in
--                       sql/mssql/queries.sql need, table by table, nothing else: no DDL, no
--                       DELETE on the request history, no rights on the interface catalogue
--                       (written by `db upgrade` only).
--   mi_his_caller_role  the HIS application's login: EXECUTE on sp_medical_insurance_call_v2
--                       and sp_check_sdk_service_status, nothing else. No right on any table
--                       or on the view: with ownership chaining (the procedures, the view and
--                       the tables all belong to dbo), EXECUTE is enough for the INSERT of the
--                       PENDING row and the polling inside the procedure, and the caller gets
--                       only its own request's answer. The chain holds as long as no one
--                       changes an object's owner (ALTER AUTHORIZATION) and the procedures use
--                       no dynamic SQL (they use none).
--   mi_his_result_reader_role  OPTIONAL, for a HIS that reads v_medical_insurance_result
--                       itself (e.g. looks a request up again after -1005): SELECT on the
--                       view. Know what it means: the view holds every patient's
--                       response_data (names, ID numbers, amounts), so every login in this
--                       role can read all of them. Add the HIS user only if it needs it.
--   mi_monitor_role     DBAs and monitoring logins: EXECUTE on the monitor procedures
--                       (sp_get_medical_insurance_monitor_data, sp_check_medical_insurance_alerts),
--                       which return aggregates and queue/worker rows, no patient payloads.
--
-- Upgrading from the issue-7 roles: mi_his_caller_role used to hold SELECT on the view and
-- EXECUTE on the monitors; this file REVOKEs those (a HIS that needs them: add its user to
-- mi_his_result_reader_role / mi_monitor_role).
--
--   mi_dashboard_role   the read-only web dashboard (`mi-worker dashboard`, issue 16) and
--                       any other monitoring login: SELECT on the tables and the view the
--                       dashboard's named queries read (queries.sql, section "dashboard", plus
--                       get_request, find_children, list_open_alerts, list_reconciliation) and
--                       EXECUTE on the monitor procedure. No INSERT, UPDATE or DELETE anywhere.
--
-- Migrations are NOT the worker's job: `mi-worker db upgrade` creates tables, indexes, the
-- sequence, the view and procedures, writes mi_schema_version and the interface catalogue
-- (upsert_interface), and takes a transaction-owned applock. Run it as a DBA, a member of
-- db_owner (e.g. MI_WORKER_DATABASE_URL set to a DBA account for that one command, or the
-- Kubernetes job-db-upgrade with its own secret), never with the worker's login. The worker
-- only reads mi_schema_version at start to refuse to run on a schema that is not up to date.
--
-- Example logins and users (not run; pick your own names and a strong password):
--
--   -- SQL Server authentication
--   CREATE LOGIN mi_worker WITH PASSWORD = N'<strong password>', CHECK_POLICY = ON;
--   CREATE LOGIN his_app WITH PASSWORD = N'<strong password>', CHECK_POLICY = ON;
--   -- or Windows authentication
--   CREATE LOGIN [HOSPITAL\svc-mi-worker] FROM WINDOWS;
--
--   -- in the HIS database
--   CREATE USER mi_worker FOR LOGIN mi_worker WITH DEFAULT_SCHEMA = dbo;
--   CREATE USER his_app FOR LOGIN his_app WITH DEFAULT_SCHEMA = dbo;
--   ALTER ROLE mi_worker_role ADD MEMBER mi_worker;
--   ALTER ROLE mi_his_caller_role ADD MEMBER his_app;
--   -- only if the HIS reads the view itself (see above):
--   -- ALTER ROLE mi_his_result_reader_role ADD MEMBER his_app;
--
-- The worker's rights, by the statement that needs them (queries.sql):
--   medical_insurance_requests   SELECT, INSERT, UPDATE   claim_batch, complete_request,
--                                complete_batch, requeue / release / extend_lease,
--                                expire_pending, find_lost_leases, recover_lease, enqueue_*,
--                                timeout_if_pending, find_idempotent, find_doubtful,
--                                settle_row, find_children, get_request, count_by_status,
--                                list_requests, resolve_request, settlements_between,
--                                cancellations_since (UPDATE ... WHERE and OUTPUT also need
--                                SELECT on the columns they read)
--   v_medical_insurance_result   SELECT                   get_request, poll_result,
--                                metrics_by_interface
--   sdk_heartbeat                SELECT, INSERT, UPDATE   heartbeat, heartbeat_rows,
--                                find_lost_leases
--   medical_insurance_limits     SELECT, INSERT, UPDATE,  claim_batch, list_limits,
--                                DELETE                   upsert_limit, delete_limit
--                                (reconciled with the config at worker start)
--   medical_insurance_alerts     SELECT, INSERT, UPDATE   open_alert, insert_alert,
--                                touch_alert, list_open_alerts, resolve_alert, reopen_alert,
--                                mark_alert_notified
--   medical_insurance_error_log  INSERT                   log_error
--   medical_insurance_reconciliation  SELECT, INSERT     insert_reconciliation,
--                                list_reconciliation
--   mi_schema_version            SELECT                   applied_migrations (start-up check)
--   medical_insurance_interfaces SELECT                   his_refusal (embedded path only; the
--                                catalogue, no patient data), interface_wait_ms
--                                UPDATE (expected_ms,    record_interface_latency (issue 17)
--                                expected_at)
--   medical_insurance_msgid_seq  UPDATE                   NEXT VALUE FOR (assign_new_msgid,
--                                next_msgid) and sp_sequence_get_range (claim_batch)
--   EXECUTE sp_check_sdk_service_status (service_status),
--           sp_medical_insurance_call_v2 (call_procedure: `mi-worker call`),
--           sp_medical_insurance_submit_v2 / _result_v2 (submit_procedure,
--           result_procedure: `mi-worker submit` / `result`),
--           sp_get_medical_insurance_monitor_data (monitor_*),
--           sp_check_medical_insurance_alerts (check_alerts)
--   sp_getapplock / sp_releaseapplock / APPLOCK_MODE (try_cluster_lock,
--   release_cluster_lock), sp_executesql and the current database's row of sys.databases
--   (complete_batch) need nothing beyond public.

SET XACT_ABORT ON;
SET NOCOUNT ON;

BEGIN TRANSACTION;

IF OBJECT_ID(N'dbo.sp_check_medical_insurance_alerts', N'P') IS NULL
    OR OBJECT_ID(N'dbo.sp_medical_insurance_call_v2', N'P') IS NULL
    OR OBJECT_ID(N'dbo.medical_insurance_requests', N'U') IS NULL
    THROW 50030, N'mi-worker: run `mi-worker db upgrade` before security.sql (objects missing)', 1;

IF DATABASE_PRINCIPAL_ID(N'mi_worker_role') IS NULL
    CREATE ROLE mi_worker_role AUTHORIZATION dbo;

IF DATABASE_PRINCIPAL_ID(N'mi_his_caller_role') IS NULL
    CREATE ROLE mi_his_caller_role AUTHORIZATION dbo;

IF DATABASE_PRINCIPAL_ID(N'mi_dashboard_role') IS NULL
    CREATE ROLE mi_dashboard_role AUTHORIZATION dbo;

IF DATABASE_PRINCIPAL_ID(N'mi_his_result_reader_role') IS NULL
    CREATE ROLE mi_his_result_reader_role AUTHORIZATION dbo;

IF DATABASE_PRINCIPAL_ID(N'mi_monitor_role') IS NULL
    CREATE ROLE mi_monitor_role AUTHORIZATION dbo;

-- The worker.
GRANT SELECT, INSERT, UPDATE ON OBJECT::dbo.medical_insurance_requests TO mi_worker_role;
GRANT SELECT ON OBJECT::dbo.v_medical_insurance_result TO mi_worker_role;
-- Retention (jobs.retention_days): old terminal rows move to the archive and leave the table.
GRANT DELETE ON OBJECT::dbo.medical_insurance_requests TO mi_worker_role;
GRANT SELECT, INSERT ON OBJECT::dbo.medical_insurance_requests_archive TO mi_worker_role;
GRANT SELECT, INSERT, UPDATE ON OBJECT::dbo.sdk_heartbeat TO mi_worker_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON OBJECT::dbo.medical_insurance_limits TO mi_worker_role;
GRANT SELECT, INSERT, UPDATE ON OBJECT::dbo.medical_insurance_alerts TO mi_worker_role;
GRANT INSERT ON OBJECT::dbo.medical_insurance_error_log TO mi_worker_role;
GRANT SELECT, INSERT ON OBJECT::dbo.medical_insurance_reconciliation TO mi_worker_role;
GRANT SELECT ON OBJECT::dbo.mi_schema_version TO mi_worker_role;
GRANT SELECT ON OBJECT::dbo.medical_insurance_interfaces TO mi_worker_role;
-- the latency estimates the HIS procedure times its first poll by (issue 17)
GRANT UPDATE (expected_ms, expected_at) ON OBJECT::dbo.medical_insurance_interfaces
    TO mi_worker_role;
-- Files with the centre and catalogue sync (issue 15).
GRANT INSERT ON OBJECT::dbo.medical_insurance_files TO mi_worker_role;
GRANT SELECT, INSERT, UPDATE ON OBJECT::dbo.medical_insurance_catalog TO mi_worker_role;
GRANT SELECT, INSERT, UPDATE ON OBJECT::dbo.medical_insurance_catalog_sync TO mi_worker_role;
GRANT SELECT, INSERT, UPDATE ON OBJECT::dbo.medical_insurance_recon_detail TO mi_worker_role;
GRANT UPDATE ON OBJECT::dbo.medical_insurance_msgid_seq TO mi_worker_role;
GRANT EXECUTE ON OBJECT::dbo.sp_check_sdk_service_status TO mi_worker_role;
GRANT EXECUTE ON OBJECT::dbo.sp_medical_insurance_call_v2 TO mi_worker_role;
GRANT EXECUTE ON OBJECT::dbo.sp_medical_insurance_submit_v2 TO mi_worker_role;
GRANT EXECUTE ON OBJECT::dbo.sp_medical_insurance_result_v2 TO mi_worker_role;
GRANT EXECUTE ON OBJECT::dbo.sp_medical_insurance_workflow_v2 TO mi_worker_role;
GRANT SELECT, INSERT, UPDATE ON OBJECT::dbo.medical_insurance_workflows TO mi_worker_role;
GRANT EXECUTE ON OBJECT::dbo.sp_get_medical_insurance_monitor_data TO mi_worker_role;
GRANT EXECUTE ON OBJECT::dbo.sp_check_medical_insurance_alerts TO mi_worker_role;

-- HIS callers: the procedures only.
GRANT EXECUTE ON OBJECT::dbo.sp_medical_insurance_call_v2 TO mi_his_caller_role;
-- Calls that do not wait (issue 15): the result procedure reads submitted rows only.
GRANT EXECUTE ON OBJECT::dbo.sp_medical_insurance_submit_v2 TO mi_his_caller_role;
GRANT EXECUTE ON OBJECT::dbo.sp_medical_insurance_result_v2 TO mi_his_caller_role;
GRANT EXECUTE ON OBJECT::dbo.sp_medical_insurance_workflow_v2 TO mi_his_caller_role;
GRANT EXECUTE ON OBJECT::dbo.sp_check_sdk_service_status TO mi_his_caller_role;
REVOKE EXECUTE ON OBJECT::dbo.sp_get_medical_insurance_monitor_data FROM mi_his_caller_role;
REVOKE EXECUTE ON OBJECT::dbo.sp_check_medical_insurance_alerts FROM mi_his_caller_role;
REVOKE SELECT ON OBJECT::dbo.v_medical_insurance_result FROM mi_his_caller_role;

-- The documented option: a HIS that reads the view itself (every patient's answers).
GRANT SELECT ON OBJECT::dbo.v_medical_insurance_result TO mi_his_result_reader_role;

-- Monitoring.
GRANT EXECUTE ON OBJECT::dbo.sp_get_medical_insurance_monitor_data TO mi_monitor_role;
GRANT EXECUTE ON OBJECT::dbo.sp_check_medical_insurance_alerts TO mi_monitor_role;

-- The read-only dashboard.
GRANT SELECT ON OBJECT::dbo.medical_insurance_requests TO mi_dashboard_role;
GRANT SELECT ON OBJECT::dbo.v_medical_insurance_result TO mi_dashboard_role;
GRANT SELECT ON OBJECT::dbo.sdk_heartbeat TO mi_dashboard_role;
GRANT SELECT ON OBJECT::dbo.medical_insurance_alerts TO mi_dashboard_role;
GRANT SELECT ON OBJECT::dbo.medical_insurance_reconciliation TO mi_dashboard_role;
GRANT EXECUTE ON OBJECT::dbo.sp_get_medical_insurance_monitor_data TO mi_dashboard_role;

COMMIT TRANSACTION;
GO
