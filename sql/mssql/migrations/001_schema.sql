-- mi-worker schema for SQL Server 2012 and later (the same tables, columns, states and indexes
-- as sql/postgresql/migrations/001_schema.sql).
--
-- Times are DATETIME2(3) in UTC from the database clock (SYSUTCDATETIME()); the view the HIS
-- reads adds China-time columns. Text that may hold Chinese is NVARCHAR and every literal
-- compared with it is N'...'. Codes that are ASCII by definition (interface codes, msgid,
-- claim tokens, infcode) are VARCHAR.
--
-- Every object is created only when missing (OBJECT_ID / sys.indexes checks, no CREATE OR
-- ALTER or DROP ... IF EXISTS: those need 2016), so a DBA may run the file again by hand. The
-- view is created as a stub when missing and then ALTERed, which keeps its permissions. Batches are separated by lines holding only GO
-- (mi_worker/db/mssql.py splits on them; SSMS and sqlcmd do the same).
--
-- Filtered indexes need these SET options when they are created and on every statement that
-- writes the table; the worker's sessions set them (mi_worker/db/mssql.py) and so does the HIS
-- procedure (002_procedures.sql).

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
SET ANSI_PADDING ON;
SET ANSI_WARNINGS ON;
SET ARITHABORT ON;
SET CONCAT_NULL_YIELDS_NULL ON;
SET NUMERIC_ROUNDABORT OFF;
GO

-- Preflight (review S8): a table of the same name left by an earlier integration (the seed
-- schema of the original design document) is not created again below, and what is built on
-- it would fail half-way (an index on a missing column, a procedure naming one). Stop first,
-- naming the columns it lacks. The list is every column this file creates (a test keeps the
-- two in step); a database that already ran this file has them all.
DECLARE @need TABLE (table_name SYSNAME NOT NULL, column_name SYSNAME NOT NULL);
INSERT INTO @need (table_name, column_name) VALUES
    (N'medical_insurance_requests', N'request_id'),
    (N'medical_insurance_requests', N'interface_code'),
    (N'medical_insurance_requests', N'input_data'),
    (N'medical_insurance_requests', N'status'),
    (N'medical_insurance_requests', N'priority'),
    (N'medical_insurance_requests', N'timeout_seconds'),
    (N'medical_insurance_requests', N'max_retry_count'),
    (N'medical_insurance_requests', N'attempts'),
    (N'medical_insurance_requests', N'psn_no'),
    (N'medical_insurance_requests', N'insuplc_admdvs'),
    (N'medical_insurance_requests', N'idempotency_key'),
    (N'medical_insurance_requests', N'his_fee_id'),
    (N'medical_insurance_requests', N'msgid'),
    (N'medical_insurance_requests', N'worker_id'),
    (N'medical_insurance_requests', N'claim_token'),
    (N'medical_insurance_requests', N'limit_slot'),
    (N'medical_insurance_requests', N'request_time'),
    (N'medical_insurance_requests', N'deadline_at'),
    (N'medical_insurance_requests', N'next_attempt_at'),
    (N'medical_insurance_requests', N'claimed_at'),
    (N'medical_insurance_requests', N'lease_expires_at'),
    (N'medical_insurance_requests', N'response_time'),
    (N'medical_insurance_requests', N'infcode'),
    (N'medical_insurance_requests', N'response_data'),
    (N'medical_insurance_requests', N'error_code'),
    (N'medical_insurance_requests', N'error_message'),
    (N'medical_insurance_requests', N'attempt_log'),
    (N'medical_insurance_requests', N'needs_reversal'),
    (N'medical_insurance_requests', N'parent_request_id'),
    (N'medical_insurance_requests', N'resolved_at'),
    (N'medical_insurance_requests', N'resolved_by'),
    (N'medical_insurance_requests', N'resolution_note'),
    (N'sdk_heartbeat', N'service_name'),
    (N'sdk_heartbeat', N'worker_id'),
    (N'sdk_heartbeat', N'host'),
    (N'sdk_heartbeat', N'pid'),
    (N'sdk_heartbeat', N'version'),
    (N'sdk_heartbeat', N'started_at'),
    (N'sdk_heartbeat', N'last_heartbeat'),
    (N'sdk_heartbeat', N'status'),
    (N'sdk_heartbeat', N'in_flight'),
    (N'sdk_heartbeat', N'processed_total'),
    (N'medical_insurance_error_log', N'log_id'),
    (N'medical_insurance_error_log', N'request_id'),
    (N'medical_insurance_error_log', N'error_code'),
    (N'medical_insurance_error_log', N'error_message'),
    (N'medical_insurance_error_log', N'detail'),
    (N'medical_insurance_error_log', N'create_time'),
    (N'medical_insurance_alerts', N'alert_id'),
    (N'medical_insurance_alerts', N'alert_type'),
    (N'medical_insurance_alerts', N'alert_level'),
    (N'medical_insurance_alerts', N'alert_message'),
    (N'medical_insurance_alerts', N'detail'),
    (N'medical_insurance_alerts', N'raised_at'),
    (N'medical_insurance_alerts', N'last_seen_at'),
    (N'medical_insurance_alerts', N'resolved_at'),
    (N'medical_insurance_alerts', N'notified_at'),
    (N'medical_insurance_reconciliation', N'recon_id'),
    (N'medical_insurance_reconciliation', N'stmt_date'),
    (N'medical_insurance_reconciliation', N'insutype'),
    (N'medical_insurance_reconciliation', N'clr_type'),
    (N'medical_insurance_reconciliation', N'setl_optins'),
    (N'medical_insurance_reconciliation', N'medfee_sumamt'),
    (N'medical_insurance_reconciliation', N'fund_pay_sumamt'),
    (N'medical_insurance_reconciliation', N'acct_pay'),
    (N'medical_insurance_reconciliation', N'setl_cnt'),
    (N'medical_insurance_reconciliation', N'stmt_rslt'),
    (N'medical_insurance_reconciliation', N'stmt_rslt_dscr'),
    (N'medical_insurance_reconciliation', N'request_id'),
    (N'medical_insurance_reconciliation', N'created_at'),
    (N'medical_insurance_limits', N'interface_code'),
    (N'medical_insurance_limits', N'max_in_flight'),
    (N'medical_insurance_interfaces', N'interface_code'),
    (N'medical_insurance_interfaces', N'interface_name'),
    (N'medical_insurance_interfaces', N'kind'),
    (N'medical_insurance_interfaces', N'reversible'),
    (N'medical_insurance_interfaces', N'cancel_code');
DECLARE @missing NVARCHAR(MAX) = N'';
SELECT @missing = @missing + N' ' + n.table_name + N'.' + n.column_name
FROM @need AS n
WHERE OBJECT_ID(N'dbo.' + n.table_name, N'U') IS NOT NULL
    AND COL_LENGTH(N'dbo.' + n.table_name, n.column_name) IS NULL;
IF @missing <> N''
BEGIN
    DECLARE @message NVARCHAR(2048) = N'mi-worker cannot be installed over existing tables '
        + N'that lack its columns (an earlier integration''s schema?):' + LEFT(@missing, 1700)
        + N'. Rename or migrate those tables, then run db upgrade again.';
    THROW 50040, @message, 1;
END;
GO

-- msgid sequence numbers (the last 4 digits of msgid are seq % 10000). The claim reserves a
-- range per batch with sp_sequence_get_range.
IF OBJECT_ID(N'dbo.medical_insurance_msgid_seq', N'SO') IS NULL
    CREATE SEQUENCE dbo.medical_insurance_msgid_seq AS BIGINT START WITH 1 INCREMENT BY 1
    CACHE 100;
GO

IF OBJECT_ID(N'dbo.medical_insurance_requests', N'U') IS NULL
    CREATE TABLE dbo.medical_insurance_requests (
        request_id BIGINT IDENTITY (1, 1) NOT NULL,
        interface_code VARCHAR(10) NOT NULL,
        input_data NVARCHAR(MAX) NOT NULL,
        status NVARCHAR(20) NOT NULL CONSTRAINT df_mir_status DEFAULT (N'PENDING'),
        priority INT NOT NULL CONSTRAINT df_mir_priority DEFAULT (5),
        timeout_seconds INT NOT NULL CONSTRAINT df_mir_timeout DEFAULT (30),
        max_retry_count INT NOT NULL CONSTRAINT df_mir_max_retry DEFAULT (3),
        attempts INT NOT NULL CONSTRAINT df_mir_attempts DEFAULT (0),
        psn_no NVARCHAR(30) NULL,
        insuplc_admdvs NVARCHAR(6) NULL,
        idempotency_key NVARCHAR(100) NULL,
        his_fee_id NVARCHAR(64) NULL,
        msgid VARCHAR(30) NULL,
        worker_id NVARCHAR(100) NULL,
        claim_token VARCHAR(40) NULL,
        limit_slot INT NULL,
        request_time DATETIME2(3) NOT NULL CONSTRAINT df_mir_request_time DEFAULT (SYSUTCDATETIME()),
        deadline_at DATETIME2(3) NOT NULL,
        next_attempt_at DATETIME2(3) NOT NULL
        CONSTRAINT df_mir_next_attempt DEFAULT (SYSUTCDATETIME()),
        claimed_at DATETIME2(3) NULL,
        lease_expires_at DATETIME2(3) NULL,
        response_time DATETIME2(3) NULL,
        infcode VARCHAR(10) NULL,
        response_data NVARCHAR(MAX) NULL,
        error_code INT NULL,
        error_message NVARCHAR(MAX) NULL,
        attempt_log NVARCHAR(MAX) NULL,
        needs_reversal SMALLINT NOT NULL CONSTRAINT df_mir_needs_reversal DEFAULT (0),
        parent_request_id BIGINT NULL,
        resolved_at DATETIME2(3) NULL,
        resolved_by NVARCHAR(100) NULL,
        resolution_note NVARCHAR(MAX) NULL,
        CONSTRAINT pk_medical_insurance_requests PRIMARY KEY CLUSTERED (request_id),
        CONSTRAINT ck_mir_status CHECK (status IN (N'PENDING', N'PROCESSING', N'COMPLETED',
            N'ERROR', N'TIMEOUT', N'UNCERTAIN', N'REVERSED', N'NEEDS_MANUAL'))
    );
GO

-- Indexes. PostgreSQL's partial indexes become filtered indexes. A filter may use =, <>,
-- IS [NOT] NULL and IN (...) joined by AND, but not OR and not NOT IN, so:
--   * ix_mir_psn_open (PostgreSQL: status IN (...) OR needs_reversal = 1) is two indexes,
--     ix_mir_psn_open on the states and ix_mir_psn_reversal on needs_reversal = 1; the claim's
--     per-patient check is written as two NOT EXISTS, one per index;
--   * ix_mir_doubt (status = 'UNCERTAIN' OR needs_reversal = 1) likewise is ix_mir_doubt plus
--     ix_mir_doubt_reversal;
--   * ux_mir_idempotency's NOT IN ('ERROR', 'TIMEOUT') is written status <> ... AND <> ....
-- INCLUDE columns are a SQL Server addition (same keys as PostgreSQL): they let the claim and
-- the per-patient check read the filtered index alone.

-- The claim is an index seek on runnable rows only (the filtered index stays small however
-- large the history grows).
IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE object_id = OBJECT_ID(N'dbo.medical_insurance_requests')
                 AND name = N'ix_mir_claim')
    CREATE NONCLUSTERED INDEX ix_mir_claim ON dbo.medical_insurance_requests (priority, request_id)
    INCLUDE (status, interface_code, psn_no, parent_request_id, next_attempt_at, deadline_at)
    WHERE status = N'PENDING';
GO

-- In-flight rows: lease recovery, per-interface slot accounting, per-worker lease extension.
IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE object_id = OBJECT_ID(N'dbo.medical_insurance_requests')
                 AND name = N'ix_mir_processing')
    CREATE NONCLUSTERED INDEX ix_mir_processing ON dbo.medical_insurance_requests (claim_token)
    INCLUDE (status, interface_code, limit_slot, lease_expires_at, worker_id)
    WHERE status = N'PROCESSING';
GO

-- Per-patient ordering looks up a patient's open rows (first half: the open states).
IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE object_id = OBJECT_ID(N'dbo.medical_insurance_requests')
                 AND name = N'ix_mir_psn_open')
    CREATE NONCLUSTERED INDEX ix_mir_psn_open ON dbo.medical_insurance_requests (psn_no, request_id)
    INCLUDE (status, deadline_at)
    WHERE status IN (N'PENDING', N'PROCESSING', N'UNCERTAIN');
GO

-- Per-patient ordering (second half: rows flagged for reversal, whatever their state).
IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE object_id = OBJECT_ID(N'dbo.medical_insurance_requests')
                 AND name = N'ix_mir_psn_reversal')
    CREATE NONCLUSTERED INDEX ix_mir_psn_reversal ON dbo.medical_insurance_requests (psn_no, request_id)
    INCLUDE (status, needs_reversal)
    WHERE needs_reversal = 1;
GO

-- Hard guarantees behind the claim's own checks: one in-flight row per patient, and one row
-- per interface slot. A concurrent claim that would break them fails (2601) and is retried.
IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE object_id = OBJECT_ID(N'dbo.medical_insurance_requests')
                 AND name = N'ux_mir_psn_processing')
    CREATE UNIQUE NONCLUSTERED INDEX ux_mir_psn_processing ON dbo.medical_insurance_requests (psn_no)
    WHERE status = N'PROCESSING' AND psn_no IS NOT NULL;
GO

IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE object_id = OBJECT_ID(N'dbo.medical_insurance_requests')
                 AND name = N'ux_mir_slot_processing')
    CREATE UNIQUE NONCLUSTERED INDEX ux_mir_slot_processing
    ON dbo.medical_insurance_requests (interface_code, limit_slot)
    WHERE status = N'PROCESSING' AND limit_slot IS NOT NULL;
GO

IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE object_id = OBJECT_ID(N'dbo.medical_insurance_requests')
                 AND name = N'ux_mir_msgid')
    CREATE UNIQUE NONCLUSTERED INDEX ux_mir_msgid ON dbo.medical_insurance_requests (msgid)
    WHERE msgid IS NOT NULL;
GO

-- An idempotency key is unique among calls that did not fail (a failed call may be retried).
IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE object_id = OBJECT_ID(N'dbo.medical_insurance_requests')
                 AND name = N'ux_mir_idempotency')
    CREATE UNIQUE NONCLUSTERED INDEX ux_mir_idempotency
    ON dbo.medical_insurance_requests (idempotency_key)
    WHERE idempotency_key IS NOT NULL AND status <> N'ERROR' AND status <> N'TIMEOUT';
GO

IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE object_id = OBJECT_ID(N'dbo.medical_insurance_requests')
                 AND name = N'ix_mir_request_time')
    CREATE NONCLUSTERED INDEX ix_mir_request_time ON dbo.medical_insurance_requests (request_time);
GO

-- A request's follow-ups (2601 reversals point at the row they undo).
IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE object_id = OBJECT_ID(N'dbo.medical_insurance_requests')
                 AND name = N'ix_mir_parent')
    CREATE NONCLUSTERED INDEX ix_mir_parent ON dbo.medical_insurance_requests (parent_request_id)
    WHERE parent_request_id IS NOT NULL;
GO

-- Rows in doubt (first half: UNCERTAIN).
IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE object_id = OBJECT_ID(N'dbo.medical_insurance_requests')
                 AND name = N'ix_mir_doubt')
    CREATE NONCLUSTERED INDEX ix_mir_doubt ON dbo.medical_insurance_requests (request_id)
    WHERE status = N'UNCERTAIN';
GO

-- Rows in doubt (second half: flagged for reversal).
IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE object_id = OBJECT_ID(N'dbo.medical_insurance_requests')
                 AND name = N'ix_mir_doubt_reversal')
    CREATE NONCLUSTERED INDEX ix_mir_doubt_reversal ON dbo.medical_insurance_requests (request_id)
    WHERE needs_reversal = 1;
GO

IF OBJECT_ID(N'dbo.sdk_heartbeat', N'U') IS NULL
    CREATE TABLE dbo.sdk_heartbeat (
        service_name NVARCHAR(100) NOT NULL,
        worker_id NVARCHAR(100) NOT NULL,
        host NVARCHAR(255) NULL,
        pid INT NULL,
        version NVARCHAR(40) NULL,
        started_at DATETIME2(3) NULL,
        last_heartbeat DATETIME2(3) NOT NULL CONSTRAINT df_hb_last DEFAULT (SYSUTCDATETIME()),
        status NVARCHAR(20) NOT NULL CONSTRAINT df_hb_status DEFAULT (N'RUNNING'),
        in_flight INT NOT NULL CONSTRAINT df_hb_in_flight DEFAULT (0),
        processed_total BIGINT NOT NULL CONSTRAINT df_hb_processed DEFAULT (0),
        CONSTRAINT pk_sdk_heartbeat PRIMARY KEY CLUSTERED (service_name, worker_id)
    );
GO

IF OBJECT_ID(N'dbo.medical_insurance_error_log', N'U') IS NULL
    CREATE TABLE dbo.medical_insurance_error_log (
        log_id BIGINT IDENTITY (1, 1) NOT NULL,
        request_id BIGINT NULL,
        error_code INT NULL,
        error_message NVARCHAR(MAX) NULL,
        detail NVARCHAR(MAX) NULL,
        create_time DATETIME2(3) NOT NULL CONSTRAINT df_mie_time DEFAULT (SYSUTCDATETIME()),
        CONSTRAINT pk_medical_insurance_error_log PRIMARY KEY CLUSTERED (log_id)
    );
GO

IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE object_id = OBJECT_ID(N'dbo.medical_insurance_error_log')
                 AND name = N'ix_mie_time')
    CREATE NONCLUSTERED INDEX ix_mie_time ON dbo.medical_insurance_error_log (create_time);
GO

IF OBJECT_ID(N'dbo.medical_insurance_alerts', N'U') IS NULL
    CREATE TABLE dbo.medical_insurance_alerts (
        alert_id BIGINT IDENTITY (1, 1) NOT NULL,
        alert_type NVARCHAR(40) NOT NULL,
        alert_level NVARCHAR(20) NOT NULL,
        alert_message NVARCHAR(MAX) NOT NULL,
        detail NVARCHAR(MAX) NULL,
        raised_at DATETIME2(3) NOT NULL CONSTRAINT df_mia_raised DEFAULT (SYSUTCDATETIME()),
        last_seen_at DATETIME2(3) NOT NULL CONSTRAINT df_mia_last_seen DEFAULT (SYSUTCDATETIME()),
        resolved_at DATETIME2(3) NULL,
        notified_at DATETIME2(3) NULL,
        CONSTRAINT pk_medical_insurance_alerts PRIMARY KEY CLUSTERED (alert_id)
    );
GO

IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE object_id = OBJECT_ID(N'dbo.medical_insurance_alerts')
                 AND name = N'ix_mia_open')
    CREATE NONCLUSTERED INDEX ix_mia_open ON dbo.medical_insurance_alerts (alert_type)
    WHERE resolved_at IS NULL;
GO

IF OBJECT_ID(N'dbo.medical_insurance_reconciliation', N'U') IS NULL
    CREATE TABLE dbo.medical_insurance_reconciliation (
        recon_id BIGINT IDENTITY (1, 1) NOT NULL,
        stmt_date DATE NOT NULL,
        insutype NVARCHAR(6) NOT NULL,
        clr_type NVARCHAR(6) NOT NULL,
        setl_optins NVARCHAR(6) NULL,
        medfee_sumamt DECIMAL(16, 2) NOT NULL,
        fund_pay_sumamt DECIMAL(16, 2) NOT NULL,
        acct_pay DECIMAL(16, 2) NOT NULL,
        setl_cnt INT NOT NULL,
        stmt_rslt NVARCHAR(6) NULL,
        stmt_rslt_dscr NVARCHAR(MAX) NULL,
        request_id BIGINT NULL,
        created_at DATETIME2(3) NOT NULL CONSTRAINT df_mirc_created DEFAULT (SYSUTCDATETIME()),
        CONSTRAINT pk_medical_insurance_reconciliation PRIMARY KEY CLUSTERED (recon_id)
    );
GO

-- Cluster-wide in-flight caps per interface code ('*' = every code not named); written from
-- the worker's config at start.
IF OBJECT_ID(N'dbo.medical_insurance_limits', N'U') IS NULL
    CREATE TABLE dbo.medical_insurance_limits (
        interface_code VARCHAR(10) NOT NULL,
        max_in_flight INT NOT NULL,
        CONSTRAINT pk_medical_insurance_limits PRIMARY KEY CLUSTERED (interface_code)
    );
GO

-- The interface catalogue (code, Chinese name, kind), written from the worker's catalogue by
-- `mi-worker db upgrade` so monitors can name interfaces in SQL.
IF OBJECT_ID(N'dbo.medical_insurance_interfaces', N'U') IS NULL
    CREATE TABLE dbo.medical_insurance_interfaces (
        interface_code VARCHAR(10) NOT NULL,
        interface_name NVARCHAR(100) NOT NULL,
        kind NVARCHAR(20) NOT NULL,
        reversible SMALLINT NOT NULL CONSTRAINT df_mii_reversible DEFAULT (0),
        cancel_code VARCHAR(10) NULL,
        CONSTRAINT pk_medical_insurance_interfaces PRIMARY KEY CLUSTERED (interface_code)
    );
GO

-- Created as a stub when missing, then ALTERed: dropping the view would drop every GRANT on
-- it (the HIS reads it, tsql-review D2).
IF OBJECT_ID(N'dbo.v_medical_insurance_result', N'V') IS NULL
    EXEC (N'CREATE VIEW dbo.v_medical_insurance_result AS SELECT 1 AS request_id;');
GO

-- The view the HIS polls. China time is UTC+8 all year (no daylight saving), so the _cn
-- columns are DATEADD(HOUR, 8, ...). latency_ms: DATEDIFF(MILLISECOND) overflows INT after
-- 24.8 days, and an overflow would fail every SELECT on the view, so rows older than that
-- (a row resolved by hand long after) fall back to seconds * 1000 (2012 has no DATEDIFF_BIG).
ALTER VIEW dbo.v_medical_insurance_result
AS
SELECT
    r.request_id,
    r.interface_code,
    r.status,
    CASE
        WHEN r.status = N'COMPLETED' AND r.needs_reversal = 0 THEN N'SUCCESS'
        WHEN r.status = N'COMPLETED' THEN N'UNCERTAIN'
        WHEN r.status IN (N'PENDING', N'PROCESSING') THEN N'IN_PROGRESS'
        WHEN r.status IN (N'ERROR', N'TIMEOUT') THEN r.status
        ELSE N'UNCERTAIN'
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
    DATEADD(HOUR, 8, r.request_time) AS request_time_cn,
    DATEADD(HOUR, 8, r.response_time) AS response_time_cn,
    CASE
        WHEN r.response_time IS NULL THEN CAST(NULL AS BIGINT)
        WHEN r.response_time < DATEADD(DAY, 20, r.request_time)
            AND r.response_time > DATEADD(DAY, -20, r.request_time)
            THEN CAST(DATEDIFF(MILLISECOND, r.request_time, r.response_time) AS BIGINT)
        ELSE CAST(DATEDIFF(SECOND, r.request_time, r.response_time) AS BIGINT) * 1000
    END AS latency_ms
FROM dbo.medical_insurance_requests AS r;
GO
