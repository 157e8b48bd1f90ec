-- Issue 15: calls that do not wait (sp_medical_insurance_submit_v2 / _result_v2), the SQL
-- Server twin of sql/postgresql/migrations/010_async_files.sql. Run as UTF-8 (sqlcmd -f
-- 65001). Re-runnable; the procedures are created as stubs once and then ALTERed, so a
-- GRANT on them survives every upgrade.
--
-- An async row is an ordinary request row with async_call = 1: the same claim, retry, lease
-- and reversal rules, but nobody waits on it, so it carries its own deadline (@timeout,
-- default 86400 s = 24 h, at most 7 days). It ends TIMEOUT only when that deadline passes
-- before a worker sent it. sp_medical_insurance_result_v2 reads async rows only: a counter
-- call's id reads as unknown (-1001), so the HIS role cannot read another patient's answer
-- through it.
SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
SET ANSI_PADDING ON;
SET ANSI_WARNINGS ON;
SET ARITHABORT ON;
SET CONCAT_NULL_YIELDS_NULL ON;
SET NUMERIC_ROUNDABORT OFF;
GO

IF COL_LENGTH(N'dbo.medical_insurance_requests', N'async_call') IS NULL
    ALTER TABLE dbo.medical_insurance_requests ADD async_call SMALLINT NOT NULL
        CONSTRAINT df_mir_async_call DEFAULT (0);
GO

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

IF OBJECT_ID(N'dbo.sp_medical_insurance_submit_v2', N'P') IS NULL
    EXEC (N'CREATE PROCEDURE dbo.sp_medical_insurance_submit_v2 AS RETURN 0;');
GO

IF OBJECT_ID(N'dbo.sp_medical_insurance_result_v2', N'P') IS NULL
    EXEC (N'CREATE PROCEDURE dbo.sp_medical_insurance_result_v2 AS RETURN 0;');
GO

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

-- The call procedure's inputs and checks; @timeout is the row's own deadline in seconds.
-- Returns at once with @request_id and 0, or the call procedure's codes.
ALTER PROCEDURE dbo.sp_medical_insurance_submit_v2
    @interface_code VARCHAR(10),
    @input_data NVARCHAR(MAX),
    @timeout INT = 86400,
    @retry_count INT = 3,
    @request_id BIGINT OUTPUT,
    @result NVARCHAR(MAX) OUTPUT,
    @error_code INT OUTPUT,
    @error_message NVARCHAR(500) OUTPUT,
    @priority INT = 5,
    @idempotency_key NVARCHAR(100) = NULL,
    @his_fee_id NVARCHAR(64) = NULL,
    @psn_no NVARCHAR(30) = NULL,
    @insuplc_admdvs NVARCHAR(6) = NULL
AS
BEGIN
    -- SET options changed inside a procedure are restored when it returns, so none of these
    -- leak into the HIS session. The filtered indexes need ANSI_WARNINGS, ANSI_PADDING,
    -- ARITHABORT, CONCAT_NULL_YIELDS_NULL ON and NUMERIC_ROUNDABORT OFF on every INSERT and
    -- UPDATE (ANSI_NULLS and QUOTED_IDENTIFIER are fixed at CREATE time, above); old HIS
    -- clients often run with ANSI_WARNINGS or ARITHABORT OFF.
    SET NOCOUNT ON;
    SET XACT_ABORT ON;
    SET ANSI_WARNINGS ON;
    SET ANSI_PADDING ON;
    SET ARITHABORT ON;
    SET CONCAT_NULL_YIELDS_NULL ON;
    SET NUMERIC_ROUNDABORT OFF;
    -- IMPLICIT_TRANSACTIONS (bit 2 of @@OPTIONS, e.g. a client with SET ANSI_DEFAULTS ON):
    -- switched off for the duration of the procedure (restored on return), so the INSERT and
    -- the polls run in autocommit. Only a transaction the caller already holds (@@TRANCOUNT >
    -- 0) is refused (-1006).
    SET IMPLICIT_TRANSACTIONS OFF;
    -- D4: the caller's isolation level and lock timeout do not apply here (both restored on
    -- return). READ UNCOMMITTED would read a result a worker later rolls back; SNAPSHOT would
    -- fail the TIMEOUT update with 3960; a short LOCK_TIMEOUT would fail a poll that meets a
    -- worker's result write for a few milliseconds.
    SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
    SET LOCK_TIMEOUT -1;

    DECLARE @v_timeout INT;
    DECLARE @v_retry INT;
    DECLARE @v_code_n NVARCHAR(10);
    DECLARE @v_len BIGINT;
    DECLARE @v_first BIGINT;
    DECLARE @v_last BIGINT;
    DECLARE @v_ws_pattern NVARCHAR(20);
    DECLARE @v_refused NVARCHAR(200);
    DECLARE @v_alive INT;
    DECLARE @v_psn NVARCHAR(30);
    DECLARE @v_admdvs NVARCHAR(6);
    DECLARE @v_deadline DATETIME2(3);
    DECLARE @e_rid BIGINT;
    DECLARE @e_status NVARCHAR(20);
    DECLARE @e_needs_reversal SMALLINT;
    DECLARE @e_response NVARCHAR(MAX);
    DECLARE @err_number INT;
    DECLARE @err_text NVARCHAR(MAX);
    DECLARE @err_detail NVARCHAR(MAX);

    SET @request_id = NULL;
    SET @result = NULL;
    SET @error_code = 0;
    SET @error_message = N'';

    BEGIN TRY
        -- -1006: a caller's open transaction would keep the PENDING row locked, so the
        -- workers' READPAST claim skips it and the call times out.
        IF @@TRANCOUNT > 0
        BEGIN
            SET @error_code = -1006;
            SET @error_message = N'不能在事务中调用: call sp_medical_insurance_submit_v2 outside any open '
                + N'transaction (autocommit), the request would be invisible to workers';
            RETURN;
        END;

        -- D6: a blank optional text is no value ('' from PowerBuilder, Delphi or ISNULL(x, '')
        -- was a real idempotency key shared by every such call).
        SET @idempotency_key = NULLIF(LTRIM(RTRIM(@idempotency_key)), N'');
        SET @psn_no = NULLIF(LTRIM(RTRIM(@psn_no)), N'');
        SET @his_fee_id = NULLIF(LTRIM(RTRIM(@his_fee_id)), N'');
        SET @insuplc_admdvs = NULLIF(LTRIM(RTRIM(@insuplc_admdvs)), N'');

        SET @v_timeout = COALESCE(@timeout, 86400);
        SET @v_retry = COALESCE(@retry_count, 3);

        -- -1001: parameters. Four or five ASCII digits and an optional upper-case ASCII letter,
        -- as LIKE patterns; NVARCHAR so trailing blanks count, binary collation so [A-Z] is
        -- upper-case ASCII only and [0-9] ASCII digits.
        SET @v_code_n = @interface_code;
        IF @v_code_n IS NULL
            OR NOT (
                @v_code_n COLLATE Latin1_General_BIN LIKE N'[0-9][0-9][0-9][0-9]'
                OR @v_code_n COLLATE Latin1_General_BIN LIKE N'[0-9][0-9][0-9][0-9][0-9]'
                OR @v_code_n COLLATE Latin1_General_BIN LIKE N'[0-9][0-9][0-9][0-9][A-Z]'
                OR @v_code_n COLLATE Latin1_General_BIN LIKE N'[0-9][0-9][0-9][0-9][0-9][A-Z]'
            )
        BEGIN
            SET @error_code = -1001;
            SET @error_message = N'参数错误: interface_code must look like 1101, 2207A or 90100, got '
                + COALESCE(N'''' + LEFT(@v_code_n, 20) + N'''', N'NULL');
            RETURN;
        END;

        -- -1001: codes mi-worker manages itself (sign-in 9001 / sign-out 9002; 2601 reversal
        -- unless the hospital enabled manual reversal), as the catalogue says.
        SELECT @v_refused = i.his_refused
        FROM dbo.medical_insurance_interfaces AS i
        WHERE i.interface_code = @interface_code;
        IF @v_refused IS NOT NULL
        BEGIN
            SET @error_code = -1001;
            SET @error_message = LEFT(N'参数错误: interface ' + @v_code_n
                + N' is managed by mi-worker itself, the HIS must not call it: ' + @v_refused, 500);
            RETURN;
        END;

        -- DATALENGTH / 2 counts UTF-16 code units including trailing blanks (LEN drops them).
        SET @v_len = DATALENGTH(@input_data) / 2;
        IF @input_data IS NULL OR @v_len = 0
        BEGIN
            SET @error_code = -1001;
            SET @error_message = N'参数错误: input_data is empty';
            RETURN;
        END;
        IF @v_len > 1048576
        BEGIN
            SET @error_code = -1001;
            SET @error_message = N'参数错误: input_data is ' + CAST(@v_len AS NVARCHAR(20))
                + N' characters, more than the 1048576 allowed';
            RETURN;
        END;

        -- A cheap JSON-object shape check (2012 has no ISJSON): the first and the last
        -- character that is not white space are { and }. PATINDEX, REVERSE and SUBSTRING in a
        -- binary collation (D3): under an _SC collation they counted a surrogate pair as one
        -- character while @v_len counts two, and a valid object was refused.
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

        IF @v_timeout < 1 OR @v_timeout > 604800 OR @v_retry < 0 OR @v_retry > 20
        BEGIN
            SET @error_code = -1001;
            SET @error_message = N'参数错误: timeout must be 1..604800 seconds and retry_count 0..20';
            RETURN;
        END;

        -- -1002: nobody would take the row.
        EXEC @v_alive = dbo.sp_check_sdk_service_status;
        IF COALESCE(@v_alive, 0) <> 1
        BEGIN
            SET @error_code = -1002;
            SET @error_message = N'SDK服务未运行: no mi-worker heartbeat in the last 30 seconds';
            RETURN;
        END;

        -- Idempotency: a completed call with the same key answers at once; one in flight is
        -- -1008; one in doubt is -1007. The column's binary collation makes the comparison
        -- case-sensitive, as on PostgreSQL.
        IF @idempotency_key IS NOT NULL
        BEGIN
            SELECT TOP (1)
                @e_rid = r.request_id,
                @e_status = r.status,
                @e_needs_reversal = r.needs_reversal,
                @e_response = r.response_data
            FROM dbo.medical_insurance_requests AS r
            WHERE
                r.idempotency_key = @idempotency_key
                AND r.idempotency_key IS NOT NULL
                AND r.status <> N'ERROR'
                AND r.status <> N'TIMEOUT'
            ORDER BY r.request_id DESC;

            IF @e_rid IS NOT NULL
            BEGIN
                SET @request_id = @e_rid;
                IF @e_status = N'COMPLETED' AND @e_needs_reversal = 0
                BEGIN
                    SET @result = @e_response;
                    RETURN;
                END;
                IF @e_status IN (N'PENDING', N'PROCESSING')
                BEGIN
                    SET @error_code = -1008;
                    SET @error_message = N'重复请求: idempotency key ' + @idempotency_key
                        + N' is already in flight as request ' + CAST(@e_rid AS NVARCHAR(20));
                END
                ELSE
                BEGIN
                    SET @error_code = -1007;
                    SET @error_message = N'结果不确定: idempotency key ' + @idempotency_key
                        + N' belongs to request ' + CAST(@e_rid AS NVARCHAR(20)) + N' in state '
                        + @e_status;
                END;
                RETURN;
            END;
        END;

        -- psn_no / insuplc_admdvs: the parameter, else a plain string search of the input.
        SET @v_psn = LEFT(COALESCE(@psn_no, dbo.fn_mi_json_text(@input_data, N'psn_no')), 30);
        SET @v_admdvs = LEFT(COALESCE(@insuplc_admdvs,
                                      dbo.fn_mi_json_text(@input_data, N'insuplc_admdvs')), 6);
        SET @v_deadline = DATEADD(SECOND, @v_timeout, SYSUTCDATETIME());

        BEGIN TRY
            INSERT INTO dbo.medical_insurance_requests (
                interface_code, input_data, status, priority, timeout_seconds, max_retry_count,
                psn_no, insuplc_admdvs, idempotency_key, his_fee_id, deadline_at, async_call
            )
            VALUES (
                @interface_code, @input_data, N'PENDING', COALESCE(@priority, 5), @v_timeout,
                @v_retry, NULLIF(@v_psn, N''), NULLIF(@v_admdvs, N''), @idempotency_key,
                @his_fee_id, @v_deadline, 1
            );
            -- SCOPE_IDENTITY rather than OUTPUT: OUTPUT without INTO fails on a table with a
            -- trigger, and hospitals add audit triggers.
            SET @request_id = CAST(SCOPE_IDENTITY() AS BIGINT);
        END TRY
        BEGIN CATCH
            SET @err_number = ERROR_NUMBER();
            SET @err_text = ERROR_MESSAGE();
            -- @@TRANCOUNT was 0 on entry, so any transaction here is the INSERT's own.
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
            SET @error_message = LEFT(N'入队失败: could not enqueue: ' + COALESCE(@err_text, N''), 500);
            BEGIN TRY
                INSERT INTO dbo.medical_insurance_error_log (request_id, error_code, error_message, detail)
                VALUES (NULL, -1003, N'入队失败: could not enqueue: ' + COALESCE(@err_text, N''),
                        N'error ' + CAST(@err_number AS NVARCHAR(20)));
            END TRY
            BEGIN CATCH
                -- Best effort: the caller still gets -1003, not -1999.
                SET @err_number = ERROR_NUMBER();
            END CATCH;
            RETURN;
        END CATCH;

        IF @@TRANCOUNT > 0
            COMMIT TRANSACTION;
    END TRY
    BEGIN CATCH
        SET @err_number = ERROR_NUMBER();
        SET @err_text = ERROR_MESSAGE();
        SET @err_detail = N'error ' + CAST(@err_number AS NVARCHAR(20))
            + N', line ' + COALESCE(CAST(ERROR_LINE() AS NVARCHAR(20)), N'?')
            + N', in ' + COALESCE(ERROR_PROCEDURE(), N'?');
        IF XACT_STATE() <> 0
            ROLLBACK TRANSACTION;
        SET @result = NULL;
        IF @request_id IS NULL
        BEGIN
            SET @error_code = -1999;
            SET @error_message = LEFT(N'系统异常: ' + COALESCE(@err_text, N''), 500);
        END;
        BEGIN TRY
            INSERT INTO dbo.medical_insurance_error_log (request_id, error_code, error_message, detail)
            VALUES (@request_id, -1999, LEFT(N'系统异常: ' + COALESCE(@err_text, N''), 4000),
                    @err_detail);
        END TRY
        BEGIN CATCH
            SET @err_number = ERROR_NUMBER();
        END CATCH;
    END CATCH;
END;
GO

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

-- The state of a submitted request now (@wait_ms = 0) or after waiting up to @wait_ms
-- (0..3600000) for a final state, polling every 10 ms doubling up to @poll_ms; the call
-- procedure's codes. A request still open after the wait is -1005 with @status PENDING or
-- PROCESSING: ask again (nothing times out because a caller stopped waiting). An unknown id,
-- or a counter call's id, is -1001.
ALTER PROCEDURE dbo.sp_medical_insurance_result_v2
    @request_id BIGINT,
    @wait_ms INT = 0,
    @status NVARCHAR(20) OUTPUT,
    @result NVARCHAR(MAX) OUTPUT,
    @error_code INT OUTPUT,
    @error_message NVARCHAR(500) OUTPUT,
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
    SET TRANSACTION ISOLATION LEVEL READ COMMITTED;
    SET LOCK_TIMEOUT -1;

    DECLARE @v_wait_total INT;
    DECLARE @v_poll INT;
    DECLARE @v_step INT;
    DECLARE @v_wait INT;
    DECLARE @v_delay VARCHAR(12);
    DECLARE @v_until DATETIME2(3);
    DECLARE @v_rstatus NVARCHAR(20);
    DECLARE @v_code INT;
    DECLARE @v_msg NVARCHAR(MAX);
    DECLARE @v_past INT;
    DECLARE @v_found INT;
    DECLARE @err_text NVARCHAR(MAX);

    SET @status = NULL;
    SET @result = NULL;
    SET @error_code = 0;
    SET @error_message = N'';

    BEGIN TRY
        SET @v_wait_total = COALESCE(@wait_ms, 0);
        IF @request_id IS NULL OR @v_wait_total < 0 OR @v_wait_total > 3600000
        BEGIN
            SET @error_code = -1001;
            SET @error_message = N'参数错误: request_id is required and wait_ms must be 0..3600000';
            RETURN;
        END;
        SET @v_poll = COALESCE(@poll_ms, 100);
        IF @v_poll < 10
            SET @v_poll = 10;
        IF @v_poll > 3600000
            SET @v_poll = 3600000;
        SET @v_step = 10;
        IF @v_step > @v_poll
            SET @v_step = @v_poll;
        SET @v_until = DATEADD(MILLISECOND, @v_wait_total, SYSUTCDATETIME());

        WHILE 1 = 1
        BEGIN
            SET @v_found = 0;
            SELECT
                @v_found = 1,
                @status = v.status,
                @v_rstatus = v.result_status,
                @result = v.response_data,
                @v_code = v.error_code,
                @v_msg = v.error_message,
                @v_past = CASE WHEN SYSUTCDATETIME() >= v.deadline_at THEN 1 ELSE 0 END
            FROM dbo.v_medical_insurance_result AS v
            INNER JOIN dbo.medical_insurance_requests AS r ON v.request_id = r.request_id
            WHERE v.request_id = @request_id AND r.async_call = 1;
            IF @v_found = 0
            BEGIN
                SET @status = NULL;
                SET @result = NULL;
                SET @error_code = -1001;
                SET @error_message = N'参数错误: no submitted request '
                    + CAST(@request_id AS NVARCHAR(20));
                RETURN;
            END;
            IF @v_rstatus = N'IN_PROGRESS' AND @status = N'PENDING' AND @v_past = 1
            BEGIN
                -- Its own deadline passed before any worker sent it.
                UPDATE dbo.medical_insurance_requests
                SET
                    status = N'TIMEOUT',
                    response_time = SYSUTCDATETIME(),
                    error_code = -1005,
                    error_message = N'请求超时: no worker sent the submitted request within its '
                    + N'deadline'
                WHERE
                    request_id = @request_id AND async_call = 1 AND status = N'PENDING'
                    AND deadline_at <= SYSUTCDATETIME();
                CONTINUE;
            END;
            IF @v_rstatus <> N'IN_PROGRESS' OR SYSUTCDATETIME() >= @v_until
                BREAK;
            -- At most an hour is left, so DATEDIFF in milliseconds cannot overflow.
            SET @v_wait = DATEDIFF(MILLISECOND, SYSUTCDATETIME(), @v_until);
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

        IF @v_rstatus = N'SUCCESS'
        BEGIN
            SET @error_code = 0;
            SET @error_message = N'';
        END
        ELSE IF @v_rstatus = N'ERROR'
        BEGIN
            SET @result = NULL;
            SET @error_code = CASE WHEN @v_code IN (-1001, -1004, -1999) THEN @v_code ELSE -1004 END;
            SET @error_message = LEFT(COALESCE(@v_msg, N'error'), 500);
        END
        ELSE IF @v_rstatus = N'TIMEOUT'
        BEGIN
            SET @result = NULL;
            SET @error_code = -1005;
            SET @error_message = LEFT(COALESCE(@v_msg, N'请求超时'), 500);
        END
        ELSE IF @v_rstatus = N'IN_PROGRESS'
        BEGIN
            SET @result = NULL;
            SET @error_code = -1005;
            SET @error_message = N'处理中: request ' + CAST(@request_id AS NVARCHAR(20)) + N' is '
                + @status + N'; ask again later (it keeps its own deadline)';
        END
        ELSE
        BEGIN
            SET @result = NULL;
            SET @error_code = -1007;
            SET @error_message = LEFT(N'结果不确定: request ' + CAST(@request_id AS NVARCHAR(20))
                + N' is ' + COALESCE(@status, N'missing') + COALESCE(N': ' + @v_msg, N''), 500);
        END;
    END TRY
    BEGIN CATCH
        SET @err_text = ERROR_MESSAGE();
        IF XACT_STATE() <> 0 AND @@TRANCOUNT > 0
            ROLLBACK TRANSACTION;
        SET @result = NULL;
        SET @error_code = -1999;
        SET @error_message = LEFT(N'系统异常: ' + COALESCE(@err_text, N''), 500);
    END CATCH;
END;
GO

-- Files with the centre, catalogue sync (目录下载): see the PostgreSQL migration 010.
IF OBJECT_ID(N'dbo.medical_insurance_files', N'U') IS NULL
    CREATE TABLE dbo.medical_insurance_files (
        file_id BIGINT IDENTITY (1, 1) NOT NULL CONSTRAINT pk_mif PRIMARY KEY,
        direction VARCHAR(4) NOT NULL CONSTRAINT ck_mif_direction CHECK (direction IN ('UP', 'DOWN')),
        purpose VARCHAR(10) NOT NULL,
        file_qury_no NVARCHAR(100) NULL,
        filename NVARCHAR(200) NOT NULL,
        local_path NVARCHAR(1000) NOT NULL,
        size_bytes BIGINT NOT NULL,
        sha256 CHAR(64) NOT NULL,
        dld_endtime NVARCHAR(30) NULL,
        created_at DATETIME2(3) NOT NULL CONSTRAINT df_mif_created DEFAULT (SYSUTCDATETIME())
    );
GO

IF OBJECT_ID(N'dbo.medical_insurance_catalog', N'U') IS NULL
    CREATE TABLE dbo.medical_insurance_catalog (
        catalog_code VARCHAR(4) NOT NULL,
        item_code NVARCHAR(100) NOT NULL,
        item_name NVARCHAR(MAX) NULL,
        ver NVARCHAR(60) NULL,
        updt_time NVARCHAR(30) NULL,
        row_hash CHAR(64) NOT NULL,
        row_data NVARCHAR(MAX) NOT NULL,
        loaded_at DATETIME2(3) NOT NULL CONSTRAINT df_mic_loaded DEFAULT (SYSUTCDATETIME()),
        CONSTRAINT pk_mic PRIMARY KEY (catalog_code, item_code)
    );
GO

IF OBJECT_ID(N'dbo.medical_insurance_catalog_sync', N'U') IS NULL
    CREATE TABLE dbo.medical_insurance_catalog_sync (
        sync_id BIGINT IDENTITY (1, 1) NOT NULL CONSTRAINT pk_mics PRIMARY KEY,
        catalog_code VARCHAR(4) NOT NULL,
        started_at DATETIME2(3) NOT NULL CONSTRAINT df_mics_started DEFAULT (SYSUTCDATETIME()),
        finished_at DATETIME2(3) NULL,
        outcome VARCHAR(10) NOT NULL CONSTRAINT df_mics_outcome DEFAULT ('RUNNING')
            CONSTRAINT ck_mics_outcome CHECK (outcome IN ('RUNNING', 'OK', 'FAILED')),
        ver_from NVARCHAR(60) NULL,
        ver_to NVARCHAR(60) NULL,
        file_qury_no NVARCHAR(100) NULL,
        file_sha256 CHAR(64) NULL,
        bytes BIGINT NOT NULL CONSTRAINT df_mics_bytes DEFAULT (0),
        rows_read INT NOT NULL CONSTRAINT df_mics_read DEFAULT (0),
        rows_inserted INT NOT NULL CONSTRAINT df_mics_ins DEFAULT (0),
        rows_updated INT NOT NULL CONSTRAINT df_mics_upd DEFAULT (0),
        rows_unchanged INT NOT NULL CONSTRAINT df_mics_same DEFAULT (0),
        duration_ms INT NULL,
        error_message NVARCHAR(MAX) NULL
    );
GO

IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ix_mics_code'
               AND object_id = OBJECT_ID(N'dbo.medical_insurance_catalog_sync'))
    CREATE INDEX ix_mics_code ON dbo.medical_insurance_catalog_sync (catalog_code, sync_id);
GO

IF OBJECT_ID(N'dbo.v_mi_catalog_1301', N'V') IS NULL
    EXEC (N'CREATE VIEW dbo.v_mi_catalog_1301 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM dbo.medical_insurance_catalog WHERE catalog_code = ''1301'';');
GO

IF OBJECT_ID(N'dbo.v_mi_catalog_1302', N'V') IS NULL
    EXEC (N'CREATE VIEW dbo.v_mi_catalog_1302 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM dbo.medical_insurance_catalog WHERE catalog_code = ''1302'';');
GO

IF OBJECT_ID(N'dbo.v_mi_catalog_1303', N'V') IS NULL
    EXEC (N'CREATE VIEW dbo.v_mi_catalog_1303 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM dbo.medical_insurance_catalog WHERE catalog_code = ''1303'';');
GO

IF OBJECT_ID(N'dbo.v_mi_catalog_1304', N'V') IS NULL
    EXEC (N'CREATE VIEW dbo.v_mi_catalog_1304 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM dbo.medical_insurance_catalog WHERE catalog_code = ''1304'';');
GO

IF OBJECT_ID(N'dbo.v_mi_catalog_1305', N'V') IS NULL
    EXEC (N'CREATE VIEW dbo.v_mi_catalog_1305 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM dbo.medical_insurance_catalog WHERE catalog_code = ''1305'';');
GO

IF OBJECT_ID(N'dbo.v_mi_catalog_1306', N'V') IS NULL
    EXEC (N'CREATE VIEW dbo.v_mi_catalog_1306 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM dbo.medical_insurance_catalog WHERE catalog_code = ''1306'';');
GO

IF OBJECT_ID(N'dbo.v_mi_catalog_1307', N'V') IS NULL
    EXEC (N'CREATE VIEW dbo.v_mi_catalog_1307 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM dbo.medical_insurance_catalog WHERE catalog_code = ''1307'';');
GO

IF OBJECT_ID(N'dbo.v_mi_catalog_1308', N'V') IS NULL
    EXEC (N'CREATE VIEW dbo.v_mi_catalog_1308 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM dbo.medical_insurance_catalog WHERE catalog_code = ''1308'';');
GO

IF OBJECT_ID(N'dbo.v_mi_catalog_1309', N'V') IS NULL
    EXEC (N'CREATE VIEW dbo.v_mi_catalog_1309 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM dbo.medical_insurance_catalog WHERE catalog_code = ''1309'';');
GO

IF OBJECT_ID(N'dbo.v_mi_catalog_1310', N'V') IS NULL
    EXEC (N'CREATE VIEW dbo.v_mi_catalog_1310 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM dbo.medical_insurance_catalog WHERE catalog_code = ''1310'';');
GO

IF OBJECT_ID(N'dbo.v_mi_catalog_1311', N'V') IS NULL
    EXEC (N'CREATE VIEW dbo.v_mi_catalog_1311 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM dbo.medical_insurance_catalog WHERE catalog_code = ''1311'';');
GO

IF OBJECT_ID(N'dbo.v_mi_catalog_1312', N'V') IS NULL
    EXEC (N'CREATE VIEW dbo.v_mi_catalog_1312 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM dbo.medical_insurance_catalog WHERE catalog_code = ''1312'';');
GO

IF OBJECT_ID(N'dbo.v_mi_catalog_1313', N'V') IS NULL
    EXEC (N'CREATE VIEW dbo.v_mi_catalog_1313 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM dbo.medical_insurance_catalog WHERE catalog_code = ''1313'';');
GO

IF OBJECT_ID(N'dbo.v_mi_catalog_1314', N'V') IS NULL
    EXEC (N'CREATE VIEW dbo.v_mi_catalog_1314 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM dbo.medical_insurance_catalog WHERE catalog_code = ''1314'';');
GO

IF OBJECT_ID(N'dbo.v_mi_catalog_1315', N'V') IS NULL
    EXEC (N'CREATE VIEW dbo.v_mi_catalog_1315 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM dbo.medical_insurance_catalog WHERE catalog_code = ''1315'';');
GO

IF OBJECT_ID(N'dbo.v_mi_catalog_1316', N'V') IS NULL
    EXEC (N'CREATE VIEW dbo.v_mi_catalog_1316 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM dbo.medical_insurance_catalog WHERE catalog_code = ''1316'';');
GO

IF OBJECT_ID(N'dbo.v_mi_catalog_1317', N'V') IS NULL
    EXEC (N'CREATE VIEW dbo.v_mi_catalog_1317 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM dbo.medical_insurance_catalog WHERE catalog_code = ''1317'';');
GO

IF OBJECT_ID(N'dbo.v_mi_catalog_1318', N'V') IS NULL
    EXEC (N'CREATE VIEW dbo.v_mi_catalog_1318 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM dbo.medical_insurance_catalog WHERE catalog_code = ''1318'';');
GO

IF OBJECT_ID(N'dbo.v_mi_catalog_1319', N'V') IS NULL
    EXEC (N'CREATE VIEW dbo.v_mi_catalog_1319 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM dbo.medical_insurance_catalog WHERE catalog_code = ''1319'';');
GO

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

-- The monitoring entry point ALTERed again (grants kept) with the data type 'catalog'; every
-- other data type as in 007.
-- @data_type: health | performance | interfaces | queue | workers | catalog (case-insensitive).
-- Appended parameters, all optional: @warn_seconds / @down_seconds (health: heartbeat age
-- above which a worker is WARNING / DOWN), @hours (the window of performance, default 1, and
-- of interfaces, default 24; NULL = that default).
ALTER PROCEDURE dbo.sp_get_medical_insurance_monitor_data
    @data_type VARCHAR(20) = 'health',
    @warn_seconds INT = 30,
    @down_seconds INT = 60,
    @hours INT = NULL
AS
BEGIN
    -- SET options changed here are restored on return. These make every call behave the
    -- same whatever the HIS session runs with (and let the optimizer use filtered indexes).
    SET NOCOUNT ON;
    SET ANSI_WARNINGS ON;
    SET ANSI_PADDING ON;
    SET ARITHABORT ON;
    SET CONCAT_NULL_YIELDS_NULL ON;
    SET NUMERIC_ROUNDABORT OFF;

    DECLARE @kind VARCHAR(20) = LOWER(COALESCE(@data_type, ''));
    DECLARE @now DATETIME2(3) = SYSUTCDATETIME();
    DECLARE @since DATETIME2(3);
    DECLARE @v_warn INT;
    DECLARE @v_down INT;
    DECLARE @msg NVARCHAR(2048);

    IF @kind = 'health'
    BEGIN
        -- One row per worker process, and first an overall row (worker_id '*', host
        -- '(overall)'): UP if any worker is UP, else WARNING if any is, else DOWN (also with
        -- no worker at all). The overall row comes first so a caller of the seed's procedure
        -- that reads the first row still gets the service's status.
        SET @v_warn = COALESCE(@warn_seconds, 30);
        SET @v_down = COALESCE(@down_seconds, 60);
        WITH w AS (
            SELECT
                h.service_name,
                h.worker_id,
                h.host,
                h.last_heartbeat,
                h.in_flight,
                h.processed_total,
                h.gateway_kind,
                CAST(ROUND(
                    DATEDIFF(SECOND, h.last_heartbeat, @now)
                    + DATEDIFF(
                        MILLISECOND,
                        DATEADD(SECOND, DATEDIFF(SECOND, h.last_heartbeat, @now), h.last_heartbeat),
                        @now
                    ) / 1000.0,
                    0
                ) AS INT) AS age,
                CASE
                    WHEN h.status = N'STOPPED' THEN N'STOPPED'
                    WHEN h.last_heartbeat < DATEADD(SECOND, -@v_down, @now) THEN N'DOWN'
                    WHEN h.last_heartbeat < DATEADD(SECOND, -@v_warn, @now) THEN N'WARNING'
                    ELSE N'UP'
                END AS state
            FROM dbo.sdk_heartbeat AS h
        )

        SELECT
            x.service_name,
            x.worker_id,
            x.host,
            x.status,
            x.last_heartbeat,
            x.seconds_since_heartbeat,
            x.in_flight,
            x.processed_total,
            x.check_time,
            x.gateway_kind
        FROM (
            SELECT
                0 AS ord,
                CAST(N'medical_insurance_sdk' AS NVARCHAR(100)) AS service_name,
                CAST(N'*' AS NVARCHAR(100)) AS worker_id,
                CAST(N'(overall)' AS NVARCHAR(255)) AS host,
                CAST(CASE
                    WHEN MAX(CASE WHEN w.state = N'UP' THEN 1 ELSE 0 END) = 1 THEN N'UP'
                    WHEN MAX(CASE WHEN w.state = N'WARNING' THEN 1 ELSE 0 END) = 1 THEN N'WARNING'
                    ELSE N'DOWN'
                END AS NVARCHAR(20)) AS status,
                MAX(w.last_heartbeat) AS last_heartbeat,
                MIN(w.age) AS seconds_since_heartbeat,
                COALESCE(SUM(w.in_flight), 0) AS in_flight,
                COALESCE(SUM(w.processed_total), 0) AS processed_total,
                @now AS check_time,
                -- the one gateway.kind of the live workers, MIXED when they differ
                CAST(CASE
                    WHEN MIN(CASE WHEN w.state IN (N'UP', N'WARNING') THEN w.gateway_kind END)
                        = MAX(CASE WHEN w.state IN (N'UP', N'WARNING') THEN w.gateway_kind END)
                        THEN MIN(CASE WHEN w.state IN (N'UP', N'WARNING') THEN w.gateway_kind END)
                    WHEN MAX(CASE WHEN w.state IN (N'UP', N'WARNING') THEN w.gateway_kind END)
                        IS NULL THEN NULL
                    ELSE N'MIXED'
                END AS NVARCHAR(16)) AS gateway_kind
            FROM w
            UNION ALL
            SELECT
                1 AS ord,
                w.service_name,
                w.worker_id,
                w.host,
                w.state,
                w.last_heartbeat,
                w.age,
                w.in_flight,
                w.processed_total,
                @now,
                w.gateway_kind
            FROM w
        ) AS x
        ORDER BY x.ord, x.service_name, x.worker_id;
    END
    ELSE IF @kind = 'performance'
    BEGIN
        -- Last @hours (default 1): totals by outcome of v_medical_insurance_result, rates,
        -- average / p95 / max latency. Always exactly one row.
        SET @since = DATEADD(HOUR, -COALESCE(@hours, 1), @now);
        SELECT
            a.total_requests,
            a.success_count,
            a.error_count,
            a.timeout_count,
            a.uncertain_count,
            a.in_progress_count,
            a.success_rate,
            a.error_rate,
            a.avg_response_time_ms,
            (
                SELECT q.latency_ms
                FROM (
                    SELECT
                        l.latency_ms,
                        ROW_NUMBER() OVER (ORDER BY l.latency_ms) AS rn,
                        COUNT(*) OVER () AS n
                    FROM dbo.v_medical_insurance_result AS l
                    WHERE l.request_time >= @since AND l.latency_ms IS NOT NULL
                ) AS q
                WHERE q.rn = CEILING(0.95 * q.n)
            ) AS p95_response_time_ms,
            a.max_response_time_ms,
            @since AS since
        FROM (
            SELECT
                COUNT_BIG(*) AS total_requests,
                COALESCE(SUM(CASE WHEN v.result_status = N'SUCCESS' THEN 1 ELSE 0 END), 0)
                    AS success_count,
                COALESCE(SUM(CASE WHEN v.result_status = N'ERROR' THEN 1 ELSE 0 END), 0)
                    AS error_count,
                COALESCE(SUM(CASE WHEN v.result_status = N'TIMEOUT' THEN 1 ELSE 0 END), 0)
                    AS timeout_count,
                COALESCE(SUM(CASE WHEN v.result_status = N'UNCERTAIN' THEN 1 ELSE 0 END), 0)
                    AS uncertain_count,
                COALESCE(SUM(CASE WHEN v.result_status = N'IN_PROGRESS' THEN 1 ELSE 0 END), 0)
                    AS in_progress_count,
                CAST(ROUND(COALESCE(
                    100.0 * SUM(CASE WHEN v.result_status = N'SUCCESS' THEN 1 ELSE 0 END)
                    / NULLIF(COUNT(*), 0),
                    0
                ), 2) AS DECIMAL(5, 2)) AS success_rate,
                CAST(ROUND(COALESCE(
                    100.0 * SUM(CASE WHEN v.result_status = N'ERROR' THEN 1 ELSE 0 END)
                    / NULLIF(COUNT(*), 0),
                    0
                ), 2) AS DECIMAL(5, 2)) AS error_rate,
                CAST(ROUND(COALESCE(AVG(CAST(v.latency_ms AS DECIMAL(19, 4))), 0), 2)
                    AS DECIMAL(19, 2)) AS avg_response_time_ms,
                MAX(v.latency_ms) AS max_response_time_ms
            FROM dbo.v_medical_insurance_result AS v
            WHERE v.request_time >= @since
        ) AS a;
    END
    ELSE IF @kind = 'interfaces'
    BEGIN
        -- Last @hours (default 24) per interface code, named from medical_insurance_interfaces
        -- (else 接口 + code), busiest first.
        SET @since = DATEADD(HOUR, -COALESCE(@hours, 24), @now);
        SELECT
            a.interface_code,
            a.interface_name,
            a.total_calls,
            a.success_calls,
            a.error_calls,
            a.timeout_calls,
            a.uncertain_calls,
            a.success_rate,
            a.avg_response_time_ms,
            p.latency_ms AS p95_response_time_ms,
            a.max_response_time_ms
        FROM (
            SELECT
                v.interface_code,
                CAST(COALESCE(MAX(i.interface_name), N'接口' + v.interface_code) AS NVARCHAR(100))
                    AS interface_name,
                COUNT_BIG(*) AS total_calls,
                SUM(CASE WHEN v.result_status = N'SUCCESS' THEN 1 ELSE 0 END) AS success_calls,
                SUM(CASE WHEN v.result_status = N'ERROR' THEN 1 ELSE 0 END) AS error_calls,
                SUM(CASE WHEN v.result_status = N'TIMEOUT' THEN 1 ELSE 0 END) AS timeout_calls,
                SUM(CASE WHEN v.result_status = N'UNCERTAIN' THEN 1 ELSE 0 END) AS uncertain_calls,
                CAST(ROUND(
                    100.0 * SUM(CASE WHEN v.result_status = N'SUCCESS' THEN 1 ELSE 0 END)
                    / COUNT(*),
                    2
                ) AS DECIMAL(5, 2)) AS success_rate,
                CAST(ROUND(COALESCE(AVG(CAST(v.latency_ms AS DECIMAL(19, 4))), 0), 2)
                    AS DECIMAL(19, 2)) AS avg_response_time_ms,
                MAX(v.latency_ms) AS max_response_time_ms
            FROM dbo.v_medical_insurance_result AS v
            LEFT JOIN dbo.medical_insurance_interfaces AS i ON v.interface_code = i.interface_code
            WHERE v.request_time >= @since
            GROUP BY v.interface_code
        ) AS a
        LEFT JOIN (
            SELECT
                q.interface_code,
                q.latency_ms
            FROM (
                SELECT
                    l.interface_code,
                    l.latency_ms,
                    ROW_NUMBER() OVER (PARTITION BY l.interface_code ORDER BY l.latency_ms) AS rn,
                    COUNT(*) OVER (PARTITION BY l.interface_code) AS n
                FROM dbo.v_medical_insurance_result AS l
                WHERE l.request_time >= @since AND l.latency_ms IS NOT NULL
            ) AS q
            WHERE q.rn = CEILING(0.95 * q.n)
        ) AS p ON a.interface_code = p.interface_code
        ORDER BY a.total_calls DESC, a.interface_code;
    END
    ELSE IF @kind = 'queue'
    BEGIN
        -- Open rows by status and priority, with the oldest one's age.
        SELECT
            g.status,
            g.priority,
            g.depth,
            g.oldest_request_time,
            CAST(ROUND(
                DATEDIFF(SECOND, g.oldest_request_time, @now)
                + DATEDIFF(
                    MILLISECOND,
                    DATEADD(SECOND, DATEDIFF(SECOND, g.oldest_request_time, @now), g.oldest_request_time),
                    @now
                ) / 1000.0,
                0
            ) AS INT) AS oldest_age_seconds
        FROM (
            SELECT
                r.status,
                r.priority,
                COUNT_BIG(*) AS depth,
                MIN(r.request_time) AS oldest_request_time
            FROM dbo.medical_insurance_requests AS r
            WHERE
                r.status IN (N'PENDING', N'PROCESSING', N'UNCERTAIN', N'NEEDS_MANUAL')
                AND r.resolved_at IS NULL
            GROUP BY r.status, r.priority
        ) AS g
        ORDER BY g.status, g.priority;
    END
    ELSE IF @kind = 'workers'
    BEGIN
        -- Every worker process with its uptime (start to last beat) and counters.
        SELECT
            h.service_name,
            h.worker_id,
            h.host,
            h.pid,
            h.version,
            h.status,
            h.started_at,
            h.last_heartbeat,
            CAST(ROUND(
                DATEDIFF(SECOND, h.last_heartbeat, @now)
                + DATEDIFF(
                    MILLISECOND,
                    DATEADD(SECOND, DATEDIFF(SECOND, h.last_heartbeat, @now), h.last_heartbeat),
                    @now
                ) / 1000.0,
                0
            ) AS INT) AS seconds_since_heartbeat,
            CAST(ROUND(
                DATEDIFF(SECOND, h.started_at, h.last_heartbeat)
                + DATEDIFF(
                    MILLISECOND,
                    DATEADD(SECOND, DATEDIFF(SECOND, h.started_at, h.last_heartbeat), h.started_at),
                    h.last_heartbeat
                ) / 1000.0,
                0
            ) AS INT) AS uptime_seconds,
            h.in_flight,
            h.processed_total
        FROM dbo.sdk_heartbeat AS h
        ORDER BY h.service_name, h.worker_id;
    END
    ELSE IF @kind = 'catalog'
    BEGIN
        -- The latest 50 catalogue sync runs (issue 15), newest first.
        SELECT TOP (50)
            s.sync_id,
            s.catalog_code,
            s.started_at,
            s.finished_at,
            s.outcome,
            s.ver_from,
            s.ver_to,
            s.bytes,
            s.rows_read,
            s.rows_inserted,
            s.rows_updated,
            s.rows_unchanged,
            s.duration_ms,
            s.error_message
        FROM dbo.medical_insurance_catalog_sync AS s
        ORDER BY s.sync_id DESC;
    END
    ELSE
    BEGIN
        SET @msg = N'unknown @data_type '
            + COALESCE(N'''' + REPLACE(CAST(@data_type AS NVARCHAR(20)), N'''', N'''''') + N'''', N'NULL')
            + N': use health, performance, interfaces, queue, workers or catalog';
        THROW 50010, @msg, 1;
    END;
END;
GO

-- 3202 对明细账 results: see the PostgreSQL migration 010.
IF OBJECT_ID(N'dbo.medical_insurance_recon_detail', N'U') IS NULL
    CREATE TABLE dbo.medical_insurance_recon_detail (
        detail_id BIGINT IDENTITY (1, 1) NOT NULL CONSTRAINT pk_mird PRIMARY KEY,
        stmt_date DATE NOT NULL,
        insutype VARCHAR(6) NULL,
        clr_type VARCHAR(6) NULL,
        setl_id NVARCHAR(50) NULL,
        mdtrt_id NVARCHAR(50) NULL,
        psn_no NVARCHAR(50) NULL,
        msgid VARCHAR(30) NULL,
        stmt_rslt VARCHAR(6) NOT NULL,
        memo NVARCHAR(MAX) NULL,
        medfee_sumamt DECIMAL(16, 2) NULL,
        fund_pay_sumamt DECIMAL(16, 2) NULL,
        acct_pay DECIMAL(16, 2) NULL,
        request_id BIGINT NULL,
        fix_request_id BIGINT NULL,
        created_at DATETIME2(3) NOT NULL CONSTRAINT df_mird_created DEFAULT (SYSUTCDATETIME())
    );
GO

IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'ix_mird_date'
               AND object_id = OBJECT_ID(N'dbo.medical_insurance_recon_detail'))
    CREATE INDEX ix_mird_date ON dbo.medical_insurance_recon_detail (stmt_date, detail_id);
GO
