-- Issue 11: which gateway each worker talks to, so a worker settling against a FAKE centre
-- (gateway.kind sandbox / noop, allowed on a server database only with
-- gateway.allow_fake_centre = true) is visible to DBAs and raises FAKE_GATEWAY, and workers
-- of different kinds on one database raise MIXED_GATEWAY_KINDS. gateway_tls_verified is 0
-- when the worker runs with gateway.verify_tls = false (alert TLS_VERIFY_OFF). Both NULL for
-- rows written by older workers.
--
-- sp_get_medical_insurance_monitor_data is ALTERed again (as in 003, to keep granted EXECUTE
-- permissions) with one column appended to the health rows: gateway_kind (MIXED on the
-- overall row when live workers differ). Every other data type is unchanged.
-- sp_check_medical_insurance_alerts is ALTERed with three more rules: FAKE_GATEWAY,
-- MIXED_GATEWAY_KINDS (CRITICAL) and TLS_VERIFY_OFF (same parameters and columns).

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

IF COL_LENGTH(N'dbo.sdk_heartbeat', N'gateway_kind') IS NULL
    ALTER TABLE dbo.sdk_heartbeat ADD gateway_kind NVARCHAR(16) NULL;
GO

IF COL_LENGTH(N'dbo.sdk_heartbeat', N'gateway_tls_verified') IS NULL
    ALTER TABLE dbo.sdk_heartbeat ADD gateway_tls_verified TINYINT NULL;
GO

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

-- @data_type: health | performance | interfaces | queue | workers (case-insensitive).
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
    ELSE
    BEGIN
        SET @msg = N'unknown @data_type '
            + COALESCE(N'''' + REPLACE(CAST(@data_type AS NVARCHAR(20)), N'''', N'''''') + N'''', N'NULL')
            + N': use health, performance, interfaces, queue or workers';
        THROW 50010, @msg, 1;
    END;
END;
GO

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

-- Current alert conditions: the seed's rules done right (the error-rate rule needs at least
-- @min_calls calls in the hour, a HAVING, not an aggregate in WHERE) plus the queue, UNCERTAIN
-- and NEEDS_MANUAL rules. One row per condition that holds now, none when all is well. The
-- alert scan job stores, de-duplicates and resolves them; this procedure only answers "what
-- is wrong now". A NULL argument means the default.
ALTER PROCEDURE dbo.sp_check_medical_insurance_alerts
    @error_rate_percent DECIMAL(9, 2) = 10,
    @min_calls INT = 10,
    @slow_avg_ms INT = 5000,
    @backlog_pending INT = 100,
    @backlog_age_seconds INT = 60,
    @down_seconds INT = 60
AS
BEGIN
    SET NOCOUNT ON;
    SET ANSI_WARNINGS ON;
    SET ANSI_PADDING ON;
    SET ARITHABORT ON;
    SET CONCAT_NULL_YIELDS_NULL ON;
    SET NUMERIC_ROUNDABORT OFF;

    DECLARE @now DATETIME2(3) = SYSUTCDATETIME();
    DECLARE @hour_ago DATETIME2(3);
    DECLARE @v_error_rate DECIMAL(9, 2) = COALESCE(@error_rate_percent, 10);
    DECLARE @v_min_calls INT = COALESCE(@min_calls, 10);
    DECLARE @v_slow_ms INT = COALESCE(@slow_avg_ms, 5000);
    DECLARE @v_backlog INT = COALESCE(@backlog_pending, 100);
    DECLARE @v_backlog_age INT = COALESCE(@backlog_age_seconds, 60);
    DECLARE @v_down INT = COALESCE(@down_seconds, 60);
    SET @hour_ago = DATEADD(HOUR, -1, @now);

    -- No worker beat within @down_seconds.
    SELECT
        CAST(N'SERVICE_DOWN' AS NVARCHAR(40)) AS alert_type,
        CAST(N'CRITICAL' AS NVARCHAR(20)) AS alert_level,
        CAST(N'医保SDK服务已停止响应: no mi-worker heartbeat in the last '
            + CAST(@v_down AS NVARCHAR(11)) + N' s' AS NVARCHAR(4000)) AS alert_message,
        @now AS alert_time
    WHERE NOT EXISTS (
        SELECT 1
        FROM dbo.sdk_heartbeat AS h
        WHERE
            h.status = N'RUNNING'
            AND h.last_heartbeat > DATEADD(SECOND, -@v_down, @now)
    )
    UNION ALL
    -- Error rate above @error_rate_percent with at least @min_calls finished calls in the last
    -- hour (calls still in progress are not in the rate).
    SELECT
        N'HIGH_ERROR_RATE',
        N'WARNING',
        N'医保接口错误率过高: '
        + CAST(CAST(ROUND(
            100.0 * SUM(CASE WHEN v.result_status = N'ERROR' THEN 1 ELSE 0 END)
            / NULLIF(COUNT(*), 0),
            2
        ) AS DECIMAL(5, 2)) AS NVARCHAR(20))
        + N'% of ' + CAST(COUNT(*) AS NVARCHAR(20)) + N' calls in the last hour',
        @now
    FROM dbo.v_medical_insurance_result AS v
    WHERE v.request_time >= @hour_ago AND v.result_status <> N'IN_PROGRESS'
    HAVING
        COUNT(*) >= @v_min_calls
        AND 100.0 * SUM(CASE WHEN v.result_status = N'ERROR' THEN 1 ELSE 0 END)
        / NULLIF(COUNT(*), 0) > @v_error_rate
    UNION ALL
    -- Average latency of the last hour's finished calls above @slow_avg_ms.
    SELECT
        N'SLOW_RESPONSE',
        N'WARNING',
        N'医保接口响应时间过慢: average '
        + CAST(CAST(ROUND(AVG(CAST(v.latency_ms AS DECIMAL(19, 4))), 0) AS DECIMAL(19, 0))
            AS NVARCHAR(20))
        + N' ms in the last hour',
        @now
    FROM dbo.v_medical_insurance_result AS v
    WHERE v.request_time >= @hour_ago AND v.latency_ms IS NOT NULL
    HAVING AVG(CAST(v.latency_ms AS DECIMAL(19, 4))) > @v_slow_ms
    UNION ALL
    -- More than @backlog_pending PENDING rows, or one waiting longer than @backlog_age_seconds.
    SELECT
        N'QUEUE_BACKLOG',
        N'WARNING',
        N'队列积压: ' + CAST(COUNT(*) AS NVARCHAR(20)) + N' PENDING, oldest '
        + CAST(CAST(ROUND(
            DATEDIFF(SECOND, MIN(r.request_time), @now)
            + DATEDIFF(
                MILLISECOND,
                DATEADD(SECOND, DATEDIFF(SECOND, MIN(r.request_time), @now), MIN(r.request_time)),
                @now
            ) / 1000.0,
            0
        ) AS INT) AS NVARCHAR(11))
        + N' s',
        @now
    FROM dbo.medical_insurance_requests AS r
    WHERE r.status = N'PENDING'
    HAVING
        COUNT(*) > @v_backlog
        OR MIN(r.request_time) < DATEADD(SECOND, -@v_backlog_age, @now)
    UNION ALL
    -- Rows in doubt: UNCERTAIN, or flagged for reversal. PostgreSQL's "status = 'UNCERTAIN'
    -- OR needs_reversal = 1" as a UNION of two branches, one per filtered index
    -- (ix_mir_doubt, ix_mir_doubt_reversal), so the history is never scanned.
    SELECT
        N'UNCERTAIN_REQUESTS',
        N'WARNING',
        N'结果不确定: ' + CAST(COUNT(*) AS NVARCHAR(20))
        + N' request(s) UNCERTAIN, reversal (冲正) under way',
        @now
    FROM (
        SELECT u.request_id
        FROM dbo.medical_insurance_requests AS u
        WHERE u.status = N'UNCERTAIN'
        UNION
        SELECT n.request_id
        FROM dbo.medical_insurance_requests AS n
        WHERE n.needs_reversal = 1
    ) AS d
    HAVING COUNT(*) > 0
    UNION ALL
    -- Rows nobody could settle automatically and nobody has resolved by hand yet.
    SELECT
        N'NEEDS_MANUAL',
        N'CRITICAL',
        N'需人工处理: ' + CAST(COUNT(*) AS NVARCHAR(20))
        + N' request(s) NEEDS_MANUAL (mi-worker requests list --status NEEDS_MANUAL)',
        @now
    FROM dbo.medical_insurance_requests AS r
    WHERE r.status = N'NEEDS_MANUAL' AND r.resolved_at IS NULL
    HAVING COUNT(*) > 0
    UNION ALL
    -- Issue 11: live workers answering from a FAKE centre (gateway.kind sandbox / noop).
    SELECT
        N'FAKE_GATEWAY',
        N'WARNING',
        N'假医保中心: ' + CAST(COUNT(*) AS NVARCHAR(20))
        + N' live worker(s) use gateway.kind sandbox/noop (a FAKE centre, nothing reaches the '
        + N'national platform), e.g. ' + MIN(h.worker_id),
        @now
    FROM dbo.sdk_heartbeat AS h
    WHERE
        h.status = N'RUNNING'
        AND h.gateway_kind IN (N'sandbox', N'noop')
        AND h.last_heartbeat > DATEADD(SECOND, -@v_down, @now)
    HAVING COUNT(*) > 0
    UNION ALL
    -- Live workers of different gateway kinds on one database.
    SELECT
        N'MIXED_GATEWAY_KINDS',
        N'CRITICAL',
        N'网关类型不一致: live workers on this database use gateway.kind '
        + MIN(h.gateway_kind) + N' and ' + MAX(h.gateway_kind) + N' at once',
        @now
    FROM dbo.sdk_heartbeat AS h
    WHERE
        h.status = N'RUNNING'
        AND h.gateway_kind IS NOT NULL
        AND h.last_heartbeat > DATEADD(SECOND, -@v_down, @now)
    HAVING COUNT(DISTINCT h.gateway_kind) > 1
    UNION ALL
    -- Live workers that talk to the real centre without verifying its certificate.
    SELECT
        N'TLS_VERIFY_OFF',
        N'WARNING',
        N'TLS证书未校验: gateway.verify_tls = false on ' + CAST(COUNT(*) AS NVARCHAR(20))
        + N' live worker(s), e.g. ' + MIN(h.worker_id),
        @now
    FROM dbo.sdk_heartbeat AS h
    WHERE
        h.status = N'RUNNING'
        AND h.gateway_tls_verified = 0
        AND h.last_heartbeat > DATEADD(SECOND, -@v_down, @now)
    HAVING COUNT(*) > 0;
END;
GO
