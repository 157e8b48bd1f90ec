-- Day-two operations: monotonic per-worker counters on the heartbeat row (Prometheus reads
-- them instead of scanning the history) and the archive the retention job moves old terminal
-- rows into. Re-runnable by hand (every object is created only when missing).

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

IF COL_LENGTH(N'dbo.sdk_heartbeat', N'completed_total') IS NULL
    ALTER TABLE dbo.sdk_heartbeat ADD
        completed_total BIGINT NOT NULL CONSTRAINT df_hb_completed DEFAULT (0),
        error_total BIGINT NOT NULL CONSTRAINT df_hb_error DEFAULT (0),
        uncertain_total BIGINT NOT NULL CONSTRAINT df_hb_uncertain DEFAULT (0),
        requeued_total BIGINT NOT NULL CONSTRAINT df_hb_requeued DEFAULT (0),
        counters_json NVARCHAR(MAX) NULL;
GO

IF OBJECT_ID(N'dbo.medical_insurance_requests_archive', N'U') IS NULL
    CREATE TABLE dbo.medical_insurance_requests_archive (
        request_id BIGINT NOT NULL,
        interface_code VARCHAR(10) NOT NULL,
        input_data NVARCHAR(MAX) NOT NULL,
        status NVARCHAR(20) NOT NULL,
        priority INT NOT NULL,
        timeout_seconds INT NOT NULL,
        max_retry_count INT NOT NULL,
        attempts INT NOT NULL,
        psn_no NVARCHAR(30) NULL,
        insuplc_admdvs NVARCHAR(6) NULL,
        idempotency_key NVARCHAR(100) NULL,
        his_fee_id NVARCHAR(64) NULL,
        msgid VARCHAR(30) NULL,
        worker_id NVARCHAR(100) NULL,
        claim_token VARCHAR(40) NULL,
        limit_slot INT NULL,
        request_time DATETIME2(3) NOT NULL,
        deadline_at DATETIME2(3) NOT NULL,
        next_attempt_at DATETIME2(3) NOT NULL,
        claimed_at DATETIME2(3) NULL,
        lease_expires_at DATETIME2(3) NULL,
        response_time DATETIME2(3) NULL,
        infcode VARCHAR(10) NULL,
        response_data NVARCHAR(MAX) NULL,
        error_code INT NULL,
        error_message NVARCHAR(MAX) NULL,
        attempt_log NVARCHAR(MAX) NULL,
        needs_reversal SMALLINT NOT NULL,
        parent_request_id BIGINT NULL,
        resolved_at DATETIME2(3) NULL,
        resolved_by NVARCHAR(100) NULL,
        resolution_note NVARCHAR(MAX) NULL,
        archived_at DATETIME2(3) NOT NULL CONSTRAINT df_mira_archived DEFAULT (SYSUTCDATETIME()),
        CONSTRAINT pk_medical_insurance_requests_archive PRIMARY KEY CLUSTERED (request_id)
    );
GO

IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ix_mira_request_time'
                 AND object_id = OBJECT_ID(N'dbo.medical_insurance_requests_archive'))
    CREATE NONCLUSTERED INDEX ix_mira_request_time
        ON dbo.medical_insurance_requests_archive (request_time);
GO
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ix_mira_msgid'
                 AND object_id = OBJECT_ID(N'dbo.medical_insurance_requests_archive'))
    CREATE NONCLUSTERED INDEX ix_mira_msgid ON dbo.medical_insurance_requests_archive (msgid);
GO
