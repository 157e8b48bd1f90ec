-- Issue 17: after its first look (timed from the interface's published latency, migration
-- 012), a waiting caller looks again after 5 ms instead of 10, growing by half as before
-- (5, 7, 10, 15, 22 ... ms up to @poll_ms); the same rule as mi_worker/wait_plan.py and the
-- PostgreSQL migration 013. Without a fresh estimate the fixed schedule (at once, then 10 ms
-- doubling) is unchanged. ALTER keeps every permission granted on the procedure (D2);
-- parameters, codes and answers are unchanged.
-- Run as UTF-8 (sqlcmd needs -f 65001): this file holds Chinese literals. Re-runnable.

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
SET ANSI_PADDING ON;
SET ANSI_WARNINGS ON;
SET ARITHABORT ON;
SET CONCAT_NULL_YIELDS_NULL ON;
SET NUMERIC_ROUNDABORT OFF;
GO

IF OBJECT_ID(N'dbo.sp_medical_insurance_call_v2', N'P') IS NULL
    EXEC (N'CREATE PROCEDURE dbo.sp_medical_insurance_call_v2 AS RETURN 0;');
GO

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

-- The HIS entry point: validate, check that a worker is alive, INSERT a PENDING row (committed
-- at once, in its own autocommit transaction), poll v_medical_insurance_result until a final
-- state or the deadline, and map the row's state to @error_code exactly as on PostgreSQL.
-- ALTER keeps every permission granted on the procedure.
ALTER PROCEDURE dbo.sp_medical_insurance_call_v2
    @interface_code VARCHAR(10),
    @input_data NVARCHAR(MAX),
    @timeout INT = 30,
    @retry_count INT = 3,
    @request_id BIGINT OUTPUT,
    @result NVARCHAR(MAX) OUTPUT,
    @error_code INT OUTPUT,
    @error_message NVARCHAR(500) OUTPUT,
    @priority INT = 5,
    @idempotency_key NVARCHAR(100) = NULL,
    @his_fee_id NVARCHAR(64) = NULL,
    @psn_no NVARCHAR(30) = NULL,
    @poll_ms INT = 100,
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
    DECLARE @v_poll INT;
    DECLARE @v_step INT;
    DECLARE @v_wait INT;
    DECLARE @v_delay VARCHAR(12);
    DECLARE @v_expect INT;
    DECLARE @v_fixed BIT;
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
    DECLARE @v_status NVARCHAR(20);
    DECLARE @v_rstatus NVARCHAR(20);
    DECLARE @v_code INT;
    DECLARE @v_msg NVARCHAR(MAX);
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
            SET @error_message = N'不能在事务中调用: call sp_medical_insurance_call_v2 outside any open '
                + N'transaction (autocommit), the request would be invisible to workers';
            RETURN;
        END;

        -- D6: a blank optional text is no value ('' from PowerBuilder, Delphi or ISNULL(x, '')
        -- was a real idempotency key shared by every such call).
        SET @idempotency_key = NULLIF(LTRIM(RTRIM(@idempotency_key)), N'');
        SET @psn_no = NULLIF(LTRIM(RTRIM(@psn_no)), N'');
        SET @his_fee_id = NULLIF(LTRIM(RTRIM(@his_fee_id)), N'');
        SET @insuplc_admdvs = NULLIF(LTRIM(RTRIM(@insuplc_admdvs)), N'');

        SET @v_timeout = COALESCE(@timeout, 30);
        SET @v_retry = COALESCE(@retry_count, 3);
        SET @v_poll = COALESCE(@poll_ms, 100);
        IF @v_poll < 10
            SET @v_poll = 10;
        IF @v_poll > 3600000
            SET @v_poll = 3600000;

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

        IF @v_timeout < 1 OR @v_timeout > 3600 OR @v_retry < 0 OR @v_retry > 20
        BEGIN
            SET @error_code = -1001;
            SET @error_message = N'参数错误: timeout must be 1..3600 seconds and retry_count 0..20';
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
        SET @v_deadline = DATEADD(MILLISECOND, @v_timeout * 1000, SYSUTCDATETIME());

        BEGIN TRY
            INSERT INTO dbo.medical_insurance_requests (
                interface_code, input_data, status, priority, timeout_seconds, max_retry_count,
                psn_no, insuplc_admdvs, idempotency_key, his_fee_id, deadline_at
            )
            VALUES (
                @interface_code, @input_data, N'PENDING', COALESCE(@priority, 5), @v_timeout,
                @v_retry, NULLIF(@v_psn, N''), NULLIF(@v_admdvs, N''), @idempotency_key,
                @his_fee_id, @v_deadline
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

        -- The row must be visible to the workers now. IMPLICIT_TRANSACTIONS is off and
        -- @@TRANCOUNT was 0, so the INSERT has committed already; this only guards a session
        -- where that did not hold.
        IF @@TRANCOUNT > 0
            COMMIT TRANSACTION;

        -- When to look (mi_worker/wait_plan.py, issue 17). With the interface's recent
        -- INSERT-to-result median from the workers (expected_ms, fresh within 600 s): wait until
        -- that long after the INSERT (the estimate is measured from its request_time, taken
        -- when @v_deadline was), look, then look every 5 ms growing by half (5, 7, 10, 15,
        -- 22 ...) up to @poll_ms.
        -- Without one: look
        -- at once, then 10 ms doubling up to @poll_ms, as before. Each wait is capped by the
        -- time left before the deadline (D9). The estimate only moves when the caller looks,
        -- never what it is told.
        SET @v_expect = NULL;
        SELECT @v_expect = i.expected_ms
        FROM dbo.medical_insurance_interfaces AS i
        WHERE i.interface_code = @interface_code AND i.expected_ms > 0
            AND i.expected_at > DATEADD(SECOND, -600, SYSUTCDATETIME());
        SET @v_step = 10;
        IF @v_expect IS NOT NULL
            SET @v_step = 5;
        IF @v_step > @v_poll
            SET @v_step = @v_poll;
        SET @v_fixed = CASE WHEN @v_expect IS NULL THEN 1 ELSE 0 END;
        IF @v_fixed = 0
        BEGIN
            IF @v_expect > 600000
                SET @v_expect = 600000;
            -- Less than an hour is left, so DATEDIFF in milliseconds cannot overflow.
            SET @v_wait = DATEDIFF(MILLISECOND, SYSUTCDATETIME(), @v_deadline);
            SET @v_expect = @v_expect - DATEDIFF(MILLISECOND,
                DATEADD(MILLISECOND, -@v_timeout * 1000, @v_deadline), SYSUTCDATETIME());
            IF @v_wait > @v_expect
                SET @v_wait = @v_expect;
            IF @v_wait > 0
            BEGIN
                SET @v_delay = RIGHT(
                    CONVERT(VARCHAR(23), DATEADD(MILLISECOND, @v_wait, CAST('2000-01-01' AS DATETIME2(3))), 121),
                    12
                );
                WAITFOR DELAY @v_delay;
            END;
        END;

        WHILE 1 = 1
        BEGIN
            SELECT
                @v_status = v.status,
                @v_rstatus = v.result_status,
                @result = v.response_data,
                @v_code = v.error_code,
                @v_msg = v.error_message
            FROM dbo.v_medical_insurance_result AS v
            WHERE v.request_id = @request_id;
            IF @v_rstatus <> N'IN_PROGRESS' OR SYSUTCDATETIME() >= @v_deadline
                BREAK;
            -- Less than an hour is left, so DATEDIFF in milliseconds cannot overflow.
            SET @v_wait = DATEDIFF(MILLISECOND, SYSUTCDATETIME(), @v_deadline);
            IF @v_wait > @v_step
                SET @v_wait = @v_step;
            IF @v_wait < 5
                SET @v_wait = 5;
            -- WAITFOR DELAY takes 'hh:mm:ss.mmm': the wait added to midnight, style 121
            -- (yyyy-mm-dd hh:mi:ss.mmm), last 12 characters.
            SET @v_delay = RIGHT(
                CONVERT(VARCHAR(23), DATEADD(MILLISECOND, @v_wait, CAST('2000-01-01' AS DATETIME2(3))), 121),
                12
            );
            WAITFOR DELAY @v_delay;
            IF @v_fixed = 1
                SET @v_step = @v_step * 2;
            ELSE
                SET @v_step = @v_step * 3 / 2;
            IF @v_step > @v_poll
                SET @v_step = @v_poll;
        END;

        IF @v_rstatus = N'IN_PROGRESS' AND @v_status = N'PENDING'
        BEGIN
            -- Never claimed: end it here, unless a worker took it this very instant.
            UPDATE dbo.medical_insurance_requests
            SET
                status = N'TIMEOUT',
                response_time = SYSUTCDATETIME(),
                error_code = -1005,
                error_message = N'请求超时: no worker claimed the request within '
                + CAST(@v_timeout AS NVARCHAR(10)) + N' s'
            WHERE request_id = @request_id AND status = N'PENDING';

            SELECT
                @v_status = v.status,
                @v_rstatus = v.result_status,
                @result = v.response_data,
                @v_code = v.error_code,
                @v_msg = v.error_message
            FROM dbo.v_medical_insurance_result AS v
            WHERE v.request_id = @request_id;
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
            SET @error_message = N'请求超时(结果待定): request ' + CAST(@request_id AS NVARCHAR(20))
                + N' is still being processed by a worker; its outcome is in doubt and will be '
                + N'settled (a state-changing call is reversed) - check v_medical_insurance_result';
        END
        ELSE
        BEGIN
            SET @result = NULL;
            SET @error_code = -1007;
            SET @error_message = LEFT(N'结果不确定: request ' + CAST(@request_id AS NVARCHAR(20))
                + N' is ' + COALESCE(@v_status, N'missing') + COALESCE(N': ' + @v_msg, N''), 500);
        END;
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
        IF @request_id IS NOT NULL
        BEGIN
            -- D5: the row is queued and a worker may still complete it, so the answer is "in
            -- doubt" (-1005, request id kept), never "failed": a HIS that retried a failure
            -- without an idempotency key would settle twice.
            SET @error_code = -1005;
            SET @error_message = LEFT(N'请求超时(结果待定): request ' + CAST(@request_id AS NVARCHAR(20))
                + N' was queued, then polling it failed (' + COALESCE(@err_text, N'') + N'); its '
                + N'outcome is in doubt - check v_medical_insurance_result', 500);
        END
        ELSE
        BEGIN
            -- -1999: anything unexpected before the row was queued.
            SET @error_code = -1999;
            SET @error_message = LEFT(N'系统异常: ' + COALESCE(@err_text, N''), 500);
        END;
        BEGIN TRY
            INSERT INTO dbo.medical_insurance_error_log (request_id, error_code, error_message, detail)
            VALUES (@request_id, @error_code, LEFT(@error_message, 4000), @err_detail);
        END TRY
        BEGIN CATCH
            -- The log is best effort: the caller still gets the code above, not a second error.
            SET @err_number = ERROR_NUMBER();
        END CATCH;
    END CATCH;
END;
GO
