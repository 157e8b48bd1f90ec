-- Issue 14: settlement workflows (saga on the database, DESIGN.md §11). One row per workflow
-- and one request row per step or undo (workflow_step n = step n, -n = the undo of step n;
-- the unique filtered index makes enqueueing a step idempotent across workers).
-- SQL Server 2012 and later; re-runnable by hand (objects are created only when missing, the
-- procedure is a stub + ALTER so GRANTs on it survive).

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
SET ANSI_PADDING ON;
SET ANSI_WARNINGS ON;
SET ARITHABORT ON;
SET CONCAT_NULL_YIELDS_NULL ON;
SET NUMERIC_ROUNDABORT OFF;
GO

IF OBJECT_ID(N'dbo.medical_insurance_workflows', N'U') IS NULL
    CREATE TABLE dbo.medical_insurance_workflows (
        workflow_id BIGINT IDENTITY(1, 1) NOT NULL,
        name NVARCHAR(64) NOT NULL,
        input_data NVARCHAR(MAX) NOT NULL,
        wf_definition NVARCHAR(MAX) NULL,
        status NVARCHAR(30) NOT NULL CONSTRAINT df_miw_status DEFAULT (N'RUNNING'),
        current_step INT NOT NULL CONSTRAINT df_miw_step DEFAULT (0),
        idempotency_key NVARCHAR(100) COLLATE Latin1_General_BIN2 NULL,
        his_fee_id NVARCHAR(64) NULL,
        psn_no NVARCHAR(30) NULL,
        timeout_seconds INT NOT NULL CONSTRAINT df_miw_timeout DEFAULT (60),
        deadline_at DATETIME2(3) NOT NULL,
        wf_result NVARCHAR(MAX) NULL,
        error_code INT NULL,
        error_message NVARCHAR(MAX) NULL,
        reason_code INT NULL,
        reason NVARCHAR(MAX) NULL,
        created_at DATETIME2(3) NOT NULL CONSTRAINT df_miw_created DEFAULT (SYSUTCDATETIME()),
        updated_at DATETIME2(3) NOT NULL CONSTRAINT df_miw_updated DEFAULT (SYSUTCDATETIME()),
        finished_at DATETIME2(3) NULL,
        CONSTRAINT pk_medical_insurance_workflows PRIMARY KEY CLUSTERED (workflow_id),
        CONSTRAINT ck_miw_status CHECK (status IN (N'RUNNING', N'COMPLETED', N'COMPENSATING',
            N'COMPENSATED', N'FAILED_NEEDS_MANUAL'))
    );
GO

IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ix_miw_open'
                 AND object_id = OBJECT_ID(N'dbo.medical_insurance_workflows'))
    CREATE NONCLUSTERED INDEX ix_miw_open ON dbo.medical_insurance_workflows (workflow_id)
        WHERE status IN (N'RUNNING', N'COMPENSATING');
GO

-- A key names one live workflow; a COMPENSATED one (nothing stands) frees it for a new try.
IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ux_miw_key'
                 AND object_id = OBJECT_ID(N'dbo.medical_insurance_workflows'))
    CREATE UNIQUE NONCLUSTERED INDEX ux_miw_key
        ON dbo.medical_insurance_workflows (idempotency_key)
        WHERE idempotency_key IS NOT NULL AND status <> N'COMPENSATED';
GO

IF COL_LENGTH(N'dbo.medical_insurance_requests', N'workflow_id') IS NULL
    ALTER TABLE dbo.medical_insurance_requests ADD
        workflow_id BIGINT NULL,
        workflow_step INT NULL;
GO

IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ux_mir_workflow_step'
                 AND object_id = OBJECT_ID(N'dbo.medical_insurance_requests'))
    CREATE UNIQUE NONCLUSTERED INDEX ux_mir_workflow_step
        ON dbo.medical_insurance_requests (workflow_id, workflow_step)
        WHERE workflow_id IS NOT NULL;
GO

IF OBJECT_ID(N'dbo.sp_medical_insurance_workflow_v2', N'P') IS NULL
    EXEC (N'CREATE PROCEDURE dbo.sp_medical_insurance_workflow_v2 AS RETURN 0;');
GO

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

-- One HIS call runs a whole workflow: validate, check a worker is alive, the idempotency key,
-- INSERT the workflow row (committed at once), poll it until it ends or the deadline passes.
-- The workers advance it; @request_id is the workflow id, @result every step's output keyed
-- by step name. The answer at the deadline is the one the workers keep on the row (-1005
-- still running, -1007 in doubt / compensating); -1009 = failed and fully compensated.
ALTER PROCEDURE dbo.sp_medical_insurance_workflow_v2
    @workflow NVARCHAR(64),
    @input_data NVARCHAR(MAX),
    @timeout INT = 60,
    @request_id BIGINT OUTPUT,
    @result NVARCHAR(MAX) OUTPUT,
    @error_code INT OUTPUT,
    @error_message NVARCHAR(500) OUTPUT,
    @idempotency_key NVARCHAR(100) = NULL,
    @his_fee_id NVARCHAR(64) = NULL,
    @psn_no NVARCHAR(30) = NULL,
    @poll_ms INT = 100
AS
BEGIN
    SET NOCOUNT ON;
    SET XACT_ABORT ON;
    SET ANSI_WARNINGS ON;
    SET ANSI_PADDING ON;
    SET ARITHABORT ON;
    SET CONCAT_NULL_YIELDS_NULL ON;
    SET NUMERIC_ROUNDABORT OFF;
    SET IMPLICIT_TRANSACTIONS OFF;
    SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
    SET LOCK_TIMEOUT -1;

    DECLARE @v_timeout INT;
    DECLARE @v_poll INT;
    DECLARE @v_step INT;
    DECLARE @v_wait INT;
    DECLARE @v_delay VARCHAR(12);
    DECLARE @v_len BIGINT;
    DECLARE @v_first BIGINT;
    DECLARE @v_last BIGINT;
    DECLARE @v_ws_pattern NVARCHAR(20);
    DECLARE @v_alive INT;
    DECLARE @v_psn NVARCHAR(30);
    DECLARE @v_deadline DATETIME2(3);
    DECLARE @v_status NVARCHAR(30);
    DECLARE @v_code INT;
    DECLARE @v_msg NVARCHAR(MAX);
    DECLARE @e_wid BIGINT;
    DECLARE @e_status NVARCHAR(30);
    DECLARE @e_result NVARCHAR(MAX);
    DECLARE @e_code INT;
    DECLARE @e_msg NVARCHAR(MAX);
    DECLARE @err_number INT;
    DECLARE @err_text NVARCHAR(MAX);

    SET @request_id = NULL;
    SET @result = NULL;
    SET @error_code = 0;
    SET @error_message = N'';

    BEGIN TRY
        IF @@TRANCOUNT > 0
        BEGIN
            SET @error_code = -1006;
            SET @error_message = N'不能在事务中调用: call sp_medical_insurance_workflow_v2 outside '
                + N'any open transaction (autocommit), the workflow would be invisible to workers';
            RETURN;
        END;

        SET @idempotency_key = NULLIF(LTRIM(RTRIM(@idempotency_key)), N'');
        SET @psn_no = NULLIF(LTRIM(RTRIM(@psn_no)), N'');
        SET @his_fee_id = NULLIF(LTRIM(RTRIM(@his_fee_id)), N'');
        SET @v_timeout = COALESCE(@timeout, 60);
        SET @v_poll = COALESCE(@poll_ms, 100);
        IF @v_poll < 10
            SET @v_poll = 10;
        IF @v_poll > 3600000
            SET @v_poll = 3600000;

        -- -1001: a workflow name is a lower-case ASCII letter, then letters, digits and _.
        IF @workflow IS NULL OR LEN(@workflow) = 0
            OR @workflow COLLATE Latin1_General_BIN NOT LIKE N'[a-z]%'
            OR @workflow COLLATE Latin1_General_BIN LIKE N'%[^a-z0-9_]%'
        BEGIN
            SET @error_code = -1001;
            SET @error_message = N'参数错误: workflow must be a workflow name such as '
                + N'outpatient_settlement, got ' + COALESCE(N'''' + LEFT(@workflow, 64) + N'''', N'NULL');
            RETURN;
        END;
        SET @v_len = DATALENGTH(@input_data) / 2;
        IF @input_data IS NULL OR @v_len = 0 OR @v_len > 1048576
        BEGIN
            SET @error_code = -1001;
            SET @error_message = N'参数错误: input_data must be 1..1048576 characters';
            RETURN;
        END;
        SET @v_ws_pattern = N'%[^ ' + NCHAR(9) + NCHAR(10) + NCHAR(13) + N']%';
        SET @v_first = PATINDEX(@v_ws_pattern, @input_data COLLATE Latin1_General_BIN2);
        SET @v_last = PATINDEX(@v_ws_pattern, REVERSE(@input_data COLLATE Latin1_General_BIN2));
        IF @v_first = 0
            OR SUBSTRING(@input_data COLLATE Latin1_General_BIN2, @v_first, 1) <> N'{'
            OR SUBSTRING(@input_data COLLATE Latin1_General_BIN2, @v_len - @v_last + 1, 1) <> N'}'
        BEGIN
            SET @error_code = -1001;
            SET @error_message = N'参数错误: input_data is not a JSON object';
            RETURN;
        END;
        IF @v_timeout < 1 OR @v_timeout > 3600
        BEGIN
            SET @error_code = -1001;
            SET @error_message = N'参数错误: timeout must be 1..3600 seconds';
            RETURN;
        END;

        EXEC @v_alive = dbo.sp_check_sdk_service_status;
        IF COALESCE(@v_alive, 0) <> 1
        BEGIN
            SET @error_code = -1002;
            SET @error_message = N'SDK服务未运行: no mi-worker heartbeat in the last 30 seconds';
            RETURN;
        END;

        -- Idempotency: a completed workflow answers with its result; one running is -1008;
        -- otherwise its own final answer. COMPENSATED frees the key (nothing stands).
        IF @idempotency_key IS NOT NULL
        BEGIN
            SELECT TOP (1)
                @e_wid = w.workflow_id,
                @e_status = w.status,
                @e_result = w.wf_result,
                @e_code = w.error_code,
                @e_msg = w.error_message
            FROM dbo.medical_insurance_workflows AS w
            WHERE w.idempotency_key = @idempotency_key AND w.status <> N'COMPENSATED'
            ORDER BY w.workflow_id DESC;
            IF @e_wid IS NOT NULL
            BEGIN
                SET @request_id = @e_wid;
                IF @e_status = N'COMPLETED'
                    SET @result = @e_result;
                ELSE IF @e_status IN (N'RUNNING', N'COMPENSATING')
                BEGIN
                    SET @error_code = -1008;
                    SET @error_message = N'重复请求: idempotency key ' + @idempotency_key
                        + N' is already in flight as workflow ' + CAST(@e_wid AS NVARCHAR(20));
                END
                ELSE
                BEGIN
                    SET @error_code = COALESCE(@e_code, -1007);
                    SET @error_message = LEFT(COALESCE(@e_msg, N''), 500);
                END;
                RETURN;
            END;
        END;

        SET @v_psn = LEFT(COALESCE(@psn_no, dbo.fn_mi_json_text(@input_data, N'psn_no')), 30);
        SET @v_deadline = DATEADD(MILLISECOND, @v_timeout * 1000, SYSUTCDATETIME());
        BEGIN TRY
            INSERT INTO dbo.medical_insurance_workflows (
                name, input_data, idempotency_key, his_fee_id, psn_no, timeout_seconds,
                deadline_at, error_code, error_message
            )
            VALUES (
                @workflow, @input_data, @idempotency_key, @his_fee_id, NULLIF(@v_psn, N''),
                @v_timeout, @v_deadline, -1005, N'请求超时: workflow not started yet'
            );
            SET @request_id = CAST(SCOPE_IDENTITY() AS BIGINT);
        END TRY
        BEGIN CATCH
            SET @err_number = ERROR_NUMBER();
            SET @err_text = ERROR_MESSAGE();
            IF XACT_STATE() <> 0
                ROLLBACK TRANSACTION;
            IF @err_number IN (2601, 2627)
            BEGIN
                SET @error_code = -1008;
                SET @error_message = N'重复请求: idempotency key ' + COALESCE(@idempotency_key, N'')
                    + N' is already in flight';
                RETURN;
            END;
            SET @error_code = -1003;
            SET @error_message = LEFT(N'入队失败: could not start the workflow: '
                + COALESCE(@err_text, N''), 500);
            RETURN;
        END CATCH;
        IF @@TRANCOUNT > 0
            COMMIT TRANSACTION;

        SET @v_step = 10;
        IF @v_step > @v_poll
            SET @v_step = @v_poll;
        WHILE 1 = 1
        BEGIN
            SELECT
                @v_status = w.status,
                @result = w.wf_result,
                @v_code = w.error_code,
                @v_msg = w.error_message
            FROM dbo.medical_insurance_workflows AS w
            WHERE w.workflow_id = @request_id;
            IF @v_status IN (N'COMPLETED', N'COMPENSATED', N'FAILED_NEEDS_MANUAL')
                OR SYSUTCDATETIME() >= @v_deadline
                BREAK;
            SET @v_wait = DATEDIFF(MILLISECOND, SYSUTCDATETIME(), @v_deadline);
            IF @v_wait > @v_step
                SET @v_wait = @v_step;
            IF @v_wait < 10
                SET @v_wait = 10;
            SET @v_delay = RIGHT(
                CONVERT(VARCHAR(23), DATEADD(MILLISECOND, @v_wait, CAST('2000-01-01' AS DATETIME2(3))), 121),
                12
            );
            WAITFOR DELAY @v_delay;
            SET @v_step = @v_step * 2;
            IF @v_step > @v_poll
                SET @v_step = @v_poll;
        END;

        IF @v_status = N'COMPLETED'
        BEGIN
            SET @error_code = 0;
            SET @error_message = N'';
        END
        ELSE
        BEGIN
            SET @result = NULL;
            SET @error_code = COALESCE(@v_code, -1005);
            SET @error_message = LEFT(COALESCE(@v_msg, N''), 500);
            IF @v_status IN (N'RUNNING', N'COMPENSATING') AND @error_code NOT IN (-1005, -1007)
                SET @error_code = -1007;
        END;
    END TRY
    BEGIN CATCH
        SET @err_text = ERROR_MESSAGE();
        IF XACT_STATE() <> 0
            ROLLBACK TRANSACTION;
        SET @result = NULL;
        IF @request_id IS NOT NULL
        BEGIN
            -- The workflow is started and the workers go on with it: in doubt, never "failed".
            SET @error_code = -1005;
            SET @error_message = LEFT(N'请求超时(结果待定): workflow ' + CAST(@request_id AS NVARCHAR(20))
                + N' was started, then polling it failed (' + COALESCE(@err_text, N'')
                + N'); it continues to a consistent end - check medical_insurance_workflows', 500);
        END
        ELSE
        BEGIN
            SET @error_code = -1999;
            SET @error_message = LEFT(N'系统异常: ' + COALESCE(@err_text, N''), 500);
        END;
        BEGIN TRY
            INSERT INTO dbo.medical_insurance_error_log (request_id, error_code, error_message, detail)
            VALUES (NULL, @error_code, LEFT(@error_message, 4000), N'sp_medical_insurance_workflow_v2');
        END TRY
        BEGIN CATCH
            SET @err_number = ERROR_NUMBER();
        END CATCH;
    END CATCH;
END;
GO
