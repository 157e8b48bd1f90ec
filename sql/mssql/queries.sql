-- Every statement mi-worker runs on SQL Server (2012 and later). `-- name:` starts a query, the
-- next comment line says why. Parameters are :named, become ? bound in order of appearance
-- (mi_worker/db/queries.py), and are always bound, never formatted in: each batch DECLAREs
-- every parameter once, typed like its column, and uses the variable afterwards (a typed
-- variable also keeps the implicit conversion on the parameter's side, not the column's).
-- Each batch starts with SET NOCOUNT ON and ends with the one result set it returns (the
-- worker reads the last result set that has columns). Writes to medical_insurance_requests
-- return their rows with OUTPUT ... INTO a table variable and a final SELECT, which keeps
-- working if a DBA adds a trigger to the table (plain OUTPUT to the client fails then).
-- The worker's connections run in autocommit, READ COMMITTED, with the filtered indexes' SET
-- options (mi_worker/db/mssql.py). The same names exist in sql/postgresql/queries.sql and
-- sql/sqlite/queries.sql.
-- Run outside this file, on purpose: the session SETs of every new connection (isolation
-- level and the filtered indexes' SET options, mi_worker/db/mssql.py), the transaction
-- control of migrations, and the migration files themselves.

-- ===== claim and results =====
-- a worker leases rows, sends them, writes each outcome once (token-guarded)

-- name: claim_batch
-- Lease up to :batch_size runnable rows: priority then age, only the head of each patient's
-- queue, within each interface's free slots, msgid assigned. Three steps in one short
-- transaction: (1) read up to :scan_size runnable candidates with update locks held until the
-- commit (UPDLOCK, ROWLOCK, READPAST: a concurrent claim skips them and takes the next rows,
-- as FOR UPDATE SKIP LOCKED does on PostgreSQL; tsql-review D1), into a table variable;
-- (2) give each candidate of a limited interface a free slot, rotated by :slot_offset, keep at
-- most one candidate per patient (psn_rank = 1), and keep the first :batch_size; (3) one
-- UPDATE that claims them, status re-checked. :scan_size stays far below the 5,000 locks of
-- lock escalation (batch_size is at most 1,000). TRY/CATCH with ROLLBACK + THROW rather than
-- XACT_ABORT, which would outlive the batch on the pooled session. Candidates are
-- materialized once (a CTE would be
-- re-evaluated per reference); the unique filtered indexes on (psn_no) and (interface_code,
-- limit_slot) among PROCESSING rows stop a racing claim, which fails and is retried.
SET NOCOUNT ON;
DECLARE @scan_size INT = :scan_size;
DECLARE @batch_size INT = :batch_size;
DECLARE @slot_offset BIGINT = :slot_offset;
DECLARE @worker_id NVARCHAR(100) = :worker_id;
DECLARE @claim_token VARCHAR(40) = :claim_token;
DECLARE @lease_seconds FLOAT = :lease_seconds;
DECLARE @fixmedins_code VARCHAR(30) = :fixmedins_code;
DECLARE @now DATETIME2(3) = SYSUTCDATETIME();
DECLARE @n INT = 0;
DECLARE @first_value SQL_VARIANT;
DECLARE @first BIGINT = 0;
DECLARE @stamp VARCHAR(14);
DECLARE @cn DATETIME2(3);
DECLARE @shift INT = 0;
DECLARE @cand TABLE (
    request_id BIGINT NOT NULL PRIMARY KEY,
    interface_code VARCHAR(10) NOT NULL,
    priority INT NOT NULL,
    lim INT NULL,
    k BIGINT NOT NULL,
    psn_rank BIGINT NOT NULL
);
DECLARE @slots TABLE (
    interface_code VARCHAR(10) NOT NULL,
    slot INT NOT NULL,
    k BIGINT NOT NULL,
    PRIMARY KEY (interface_code, k)
);
DECLARE @picked TABLE (
    request_id BIGINT NOT NULL PRIMARY KEY,
    slot INT NULL,
    rn BIGINT NOT NULL,
    msgid VARCHAR(30) NULL
);
DECLARE @claimed TABLE (
    request_id BIGINT NOT NULL,
    interface_code VARCHAR(10) NOT NULL,
    input_data NVARCHAR(MAX) NOT NULL,
    msgid VARCHAR(30) NULL,
    attempts INT NOT NULL,
    max_retry_count INT NOT NULL,
    psn_no NVARCHAR(30) NULL,
    insuplc_admdvs NVARCHAR(6) NULL,
    priority INT NOT NULL,
    parent_request_id BIGINT NULL,
    workflow_id BIGINT NULL,
    seconds_left FLOAT NULL,
    queued_seconds FLOAT NULL
);

-- (1) Candidates. The per-patient rule is PostgreSQL's NOT EXISTS split in two, one per
-- filtered index (a filter cannot say OR): another row of the patient blocks this one when it
-- is PROCESSING, or, unless this row is a follow-up (parent_request_id set), when it is an
-- older PENDING row still within its deadline, UNCERTAIN, or COMPLETED awaiting reversal.
-- Rows of a limited interface already at its cap are not candidates at all, so they cannot
-- fill the scan window and starve other codes (the count seeks ux_mir_slot_processing).
-- psn_rank: a candidate's place among the candidates of its patient (a row without psn_no
-- is its own group, 'rid:' + request_id). Two rows of one patient can both be runnable (a
-- follow-up such as a 2601 reversal does not wait behind an older PENDING row), but only one
-- may be PROCESSING (ux_mir_psn_processing): claiming both in one UPDATE would fail with 2601
-- on every retry, so each batch takes only the first.
BEGIN TRY
BEGIN TRANSACTION;
INSERT INTO @cand (request_id, interface_code, priority, lim, k, psn_rank)
SELECT
    c.request_id,
    c.interface_code,
    c.priority,
    COALESCE(l.max_in_flight, d.max_in_flight) AS lim,
    ROW_NUMBER() OVER (PARTITION BY c.interface_code ORDER BY c.priority, c.request_id) AS k,
    ROW_NUMBER() OVER (
        PARTITION BY COALESCE(c.psn_no, N'rid:' + CAST(c.request_id AS NVARCHAR(20)))
        ORDER BY c.priority, c.request_id
    ) AS psn_rank
FROM (
    SELECT TOP (@scan_size)
        r.request_id,
        r.interface_code,
        r.priority,
        r.psn_no
    FROM dbo.medical_insurance_requests AS r WITH (UPDLOCK, ROWLOCK, READPAST, READCOMMITTEDLOCK)
    WHERE
        r.status = N'PENDING'
        AND r.next_attempt_at <= @now
        AND r.deadline_at > @now
        AND (
            r.psn_no IS NULL
            OR (
                NOT EXISTS (
                    SELECT 1
                    FROM dbo.medical_insurance_requests AS e WITH (READCOMMITTEDLOCK)
                    WHERE
                        e.psn_no = r.psn_no
                        AND e.request_id <> r.request_id
                        AND e.status IN (N'PENDING', N'PROCESSING', N'UNCERTAIN')
                        AND (
                            e.status = N'PROCESSING'
                            OR (
                                r.parent_request_id IS NULL
                                AND (
                                    e.status = N'UNCERTAIN'
                                    OR (
                                        e.status = N'PENDING'
                                        AND e.request_id < r.request_id
                                        AND e.deadline_at > @now
                                    )
                                )
                            )
                        )
                )
                AND (
                    r.parent_request_id IS NOT NULL
                    OR NOT EXISTS (
                        SELECT 1
                        FROM dbo.medical_insurance_requests AS e WITH (READCOMMITTEDLOCK)
                        WHERE
                            e.psn_no = r.psn_no
                            AND e.request_id <> r.request_id
                            AND e.needs_reversal = 1
                            AND e.status = N'COMPLETED'
                    )
                )
            )
        )
        AND (
            NOT EXISTS (
                SELECT 1
                FROM dbo.medical_insurance_limits AS ml
                WHERE ml.interface_code IN (r.interface_code, '*')
            )
            OR (
                SELECT COUNT(*)
                FROM dbo.medical_insurance_requests AS b WITH (READCOMMITTEDLOCK)
                WHERE
                    b.status = N'PROCESSING'
                    AND b.interface_code = r.interface_code
                    AND b.limit_slot IS NOT NULL
            )
            < COALESCE(
                (
                    SELECT ml.max_in_flight
                    FROM dbo.medical_insurance_limits AS ml
                    WHERE ml.interface_code = r.interface_code
                ),
                (
                    SELECT ml.max_in_flight
                    FROM dbo.medical_insurance_limits AS ml
                    WHERE ml.interface_code = '*'
                )
            )
        )
    ORDER BY r.priority, r.request_id
) AS c
LEFT JOIN dbo.medical_insurance_limits AS l ON c.interface_code = l.interface_code
LEFT JOIN dbo.medical_insurance_limits AS d ON d.interface_code = '*';

-- (2a) Free slots of each limited interface: 0..lim-1 (a recursive CTE, as on SQLite; lim
-- rows per limited interface, hence MAXRECURSION 0) not held by a PROCESSING row, ranked in an
-- order rotated by :slot_offset so workers do not all race for slot 0.
WITH all_slots (interface_code, lim, slot) AS (
    SELECT DISTINCT
        c.interface_code,
        c.lim,
        0 AS slot
    FROM @cand AS c
    WHERE c.lim > 0
    UNION ALL
    SELECT
        a.interface_code,
        a.lim,
        a.slot + 1 AS slot
    FROM all_slots AS a
    WHERE a.slot + 1 < a.lim
)

INSERT INTO @slots (interface_code, slot, k)
SELECT
    a.interface_code,
    a.slot,
    ROW_NUMBER() OVER (
        PARTITION BY a.interface_code ORDER BY (a.slot + @slot_offset) % a.lim, a.slot
    ) AS k
FROM all_slots AS a
WHERE NOT EXISTS (
    SELECT 1
    FROM dbo.medical_insurance_requests AS b
    WHERE
        b.status = N'PROCESSING'
        AND b.interface_code = a.interface_code
        AND b.limit_slot = a.slot
)
OPTION (MAXRECURSION 0);

-- (2b) The k-th candidate of an interface takes its k-th free slot; a candidate of a limited
-- interface without one waits. Unlimited interfaces (no row for the code, no '*') take none.
-- Only the first candidate of each patient is claimed (as on PostgreSQL, after the slot
-- join: k counts every candidate of the interface).
INSERT INTO @picked (request_id, slot, rn)
SELECT TOP (CASE WHEN @batch_size > 10000 THEN 10000 ELSE @batch_size END)
    c.request_id,
    s.slot,
    ROW_NUMBER() OVER (ORDER BY c.priority, c.request_id) AS rn
FROM @cand AS c
LEFT JOIN @slots AS s ON c.interface_code = s.interface_code AND c.k = s.k
WHERE (c.lim IS NULL OR s.slot IS NOT NULL) AND c.psn_rank = 1
ORDER BY c.priority, c.request_id;

SELECT @n = COUNT(*) FROM @picked;

IF @n > 0
BEGIN
    -- One msgid sequence range per batch (NEXT VALUE FOR is not allowed beside TOP or ORDER
    -- BY). msgid = fixmedins_code + China time yyyyMMddHHmmss + seq % 10000 as 4 digits;
    -- styles 112 and 108 rather than FORMAT (slow, and CLR-based).
    EXEC sp_sequence_get_range
        @sequence_name = N'dbo.medical_insurance_msgid_seq',
        @range_size = @n,
        @range_first_value = @first_value OUTPUT;
    SET @first = CAST(@first_value AS BIGINT);
    SET @now = SYSUTCDATETIME();
    SET @cn = DATEADD(HOUR, 8, @now);
    SET @stamp = CONVERT(VARCHAR(8), @cn, 112)
        + REPLACE(CONVERT(VARCHAR(8), @cn, 108), ':', '');
    UPDATE @picked
    SET msgid = @fixmedins_code + @stamp
        + RIGHT('0000' + CAST((@first + rn - 1) % 10000 AS VARCHAR(4)), 4);
    -- Above 10,000 msgids in one second the 4 digits come round again: such a row takes the
    -- next second whose msgid with its digits is free (the protocol allows a msgid second
    -- ahead of the clock), so the claim never trips ux_mir_msgid.
    WHILE @shift < 60 AND EXISTS (
        SELECT 1
        FROM @picked AS p
        INNER JOIN dbo.medical_insurance_requests AS x ON p.msgid = x.msgid
    )
    BEGIN
        SET @shift = @shift + 1;
        UPDATE p
        SET
            msgid = @fixmedins_code
            + CONVERT(VARCHAR(8), DATEADD(SECOND, @shift, @cn), 112)
            + REPLACE(CONVERT(VARCHAR(8), DATEADD(SECOND, @shift, @cn), 108), ':', '')
            + RIGHT('0000' + CAST((@first + p.rn - 1) % 10000 AS VARCHAR(4)), 4)
        FROM @picked AS p
        WHERE EXISTS (
            SELECT 1
            FROM dbo.medical_insurance_requests AS x
            WHERE x.msgid = p.msgid
        );
    END;

    -- (3) The claim itself: one statement, row locks, rows locked by another claim skipped,
    -- and every runnable condition checked again on the row as it is now.
    UPDATE t
    SET
        status = N'PROCESSING',
        worker_id = @worker_id,
        claim_token = @claim_token,
        claimed_at = @now,
        lease_expires_at = DATEADD(MILLISECOND, CAST(ROUND(@lease_seconds * 1000, 0) AS INT), @now),
        attempts = t.attempts + 1,
        limit_slot = p.slot,
        msgid = p.msgid
    OUTPUT
        inserted.request_id,
        inserted.interface_code,
        inserted.input_data,
        inserted.msgid,
        inserted.attempts,
        inserted.max_retry_count,
        inserted.psn_no,
        inserted.insuplc_admdvs,
        inserted.priority,
        inserted.parent_request_id,
        inserted.workflow_id,
        CAST(DATEDIFF(MILLISECOND, @now, inserted.deadline_at) AS FLOAT) / 1000.0,
        -- queued_seconds: DATEDIFF in milliseconds overflows INT past 24 days (a revived
        -- async row can be that old); a day or more is reported as one day
        CASE WHEN inserted.request_time < DATEADD(DAY, -1, @now) THEN 86400.0
             ELSE CAST(DATEDIFF(MILLISECOND, inserted.request_time, @now) AS FLOAT) / 1000.0 END
    INTO @claimed (
        request_id, interface_code, input_data, msgid, attempts, max_retry_count, psn_no,
        insuplc_admdvs, priority, parent_request_id, workflow_id, seconds_left, queued_seconds
    )
    FROM dbo.medical_insurance_requests AS t WITH (ROWLOCK, READPAST, UPDLOCK, READCOMMITTEDLOCK)
    INNER JOIN @picked AS p ON t.request_id = p.request_id
    WHERE
        t.status = N'PENDING'
        AND t.next_attempt_at <= @now
        AND t.deadline_at > @now;
END;
COMMIT TRANSACTION;
END TRY
BEGIN CATCH
    IF @@TRANCOUNT > 0
        ROLLBACK TRANSACTION;
    THROW;
END CATCH;

SELECT
    request_id,
    interface_code,
    input_data,
    msgid,
    attempts,
    max_retry_count,
    psn_no,
    insuplc_admdvs,
    priority,
    parent_request_id,
    workflow_id,
    seconds_left,
    queued_seconds
FROM @claimed
ORDER BY priority, request_id;

-- name: assign_new_msgid
-- A resend must carry a new msgid (the centre rejects a repeated one); stored before sending.
SET NOCOUNT ON;
DECLARE @request_id BIGINT = :request_id;
DECLARE @claim_token VARCHAR(40) = :claim_token;
DECLARE @fixmedins_code VARCHAR(30) = :fixmedins_code;
DECLARE @seq BIGINT;
DECLARE @cn DATETIME2(3);
DECLARE @u TABLE (msgid VARCHAR(30) NULL);
DECLARE @m VARCHAR(30);
DECLARE @shift INT = 0;
SET @seq = NEXT VALUE FOR dbo.medical_insurance_msgid_seq;
SET @cn = DATEADD(HOUR, 8, SYSUTCDATETIME());
SET @m = @fixmedins_code
    + CONVERT(VARCHAR(8), @cn, 112)
    + REPLACE(CONVERT(VARCHAR(8), @cn, 108), ':', '')
    + RIGHT('0000' + CAST(@seq % 10000 AS VARCHAR(4)), 4);
-- The same rule as claim_batch: a second whose msgid with these 4 digits is taken is skipped.
WHILE @shift < 60 AND EXISTS (SELECT 1 FROM dbo.medical_insurance_requests WHERE msgid = @m)
BEGIN
    SET @shift = @shift + 1;
    SET @m = @fixmedins_code
        + CONVERT(VARCHAR(8), DATEADD(SECOND, @shift, @cn), 112)
        + REPLACE(CONVERT(VARCHAR(8), DATEADD(SECOND, @shift, @cn), 108), ':', '')
        + RIGHT('0000' + CAST(@seq % 10000 AS VARCHAR(4)), 4);
END;
UPDATE dbo.medical_insurance_requests
SET msgid = @m
OUTPUT inserted.msgid INTO @u (msgid)
WHERE request_id = @request_id AND claim_token = @claim_token AND status = N'PROCESSING';
SELECT msgid FROM @u;

-- name: next_msgid
-- A msgid for a message that has no request row (9001 sign-in, 9002 sign-out).
SET NOCOUNT ON;
DECLARE @fixmedins_code VARCHAR(30) = :fixmedins_code;
DECLARE @seq BIGINT;
DECLARE @cn DATETIME2(3);
DECLARE @m VARCHAR(30);
DECLARE @shift INT = 0;
SET @seq = NEXT VALUE FOR dbo.medical_insurance_msgid_seq;
SET @cn = DATEADD(HOUR, 8, SYSUTCDATETIME());
SET @m = @fixmedins_code
    + CONVERT(VARCHAR(8), @cn, 112)
    + REPLACE(CONVERT(VARCHAR(8), @cn, 108), ':', '')
    + RIGHT('0000' + CAST(@seq % 10000 AS VARCHAR(4)), 4);
-- The same rule as claim_batch (a second whose msgid with these 4 digits is taken is skipped).
WHILE @shift < 60 AND EXISTS (SELECT 1 FROM dbo.medical_insurance_requests WHERE msgid = @m)
BEGIN
    SET @shift = @shift + 1;
    SET @m = @fixmedins_code
        + CONVERT(VARCHAR(8), DATEADD(SECOND, @shift, @cn), 112)
        + REPLACE(CONVERT(VARCHAR(8), DATEADD(SECOND, @shift, @cn), 108), ':', '')
        + RIGHT('0000' + CAST(@seq % 10000 AS VARCHAR(4)), 4);
END;
SELECT @m AS msgid;

-- name: complete_request
-- The one write of a finished call, only while this claim still holds the row; a
-- state-changing call finished after its caller's deadline is flagged for reversal.
SET NOCOUNT ON;
DECLARE @status NVARCHAR(20) = :status;
DECLARE @infcode VARCHAR(10) = :infcode;
DECLARE @response_data NVARCHAR(MAX) = :response_data;
DECLARE @error_code INT = :error_code;
DECLARE @error_message NVARCHAR(MAX) = :error_message;
DECLARE @msgid VARCHAR(30) = :msgid;
DECLARE @attempt_log NVARCHAR(MAX) = :attempt_log;
DECLARE @late_reversible INT = :late_reversible;
DECLARE @request_id BIGINT = :request_id;
DECLARE @claim_token VARCHAR(40) = :claim_token;
DECLARE @now DATETIME2(3) = SYSUTCDATETIME();
DECLARE @u TABLE (request_id BIGINT NOT NULL, needs_reversal SMALLINT NOT NULL);
UPDATE dbo.medical_insurance_requests
SET
    status = @status,
    infcode = @infcode,
    response_data = @response_data,
    error_code = @error_code,
    error_message = @error_message,
    msgid = COALESCE(@msgid, msgid),
    attempt_log = @attempt_log,
    response_time = @now,
    lease_expires_at = NULL,
    limit_slot = NULL,
    needs_reversal = CASE
        WHEN @status = N'COMPLETED' AND @late_reversible = 1 AND @now > deadline_at THEN 1
        ELSE 0
    END
OUTPUT inserted.request_id, inserted.needs_reversal INTO @u (request_id, needs_reversal)
WHERE request_id = @request_id AND claim_token = @claim_token AND status = N'PROCESSING';
SELECT
    request_id,
    needs_reversal
FROM @u;

-- name: complete_batch
-- Group commit: many finished calls written in one statement (the same guard as
-- complete_request, row by row). :rows is a JSON array of complete_request's parameters,
-- which only OPENJSON can read: SQL Server 2016+ with database compatibility level 130+
-- (also Azure SQL). Elsewhere (2012, 2014, or an older compatibility level) this throws
-- 50020 before touching any row; the worker must then write with complete_request. The
-- OPENJSON statement is dynamic SQL so that the batch still compiles on 2012 / 2014.
SET NOCOUNT ON;
DECLARE @rows NVARCHAR(MAX) = :rows;
DECLARE @compat INT;
SELECT @compat = compatibility_level
FROM sys.databases
WHERE database_id = DB_ID();
IF COALESCE(@compat, 0) < 130
    THROW 50020, N'mi-worker: complete_batch needs OPENJSON (SQL Server 2016+, database compatibility level 130+); write results with complete_request', 1;
EXEC sp_executesql
    N'SET NOCOUNT ON;
    DECLARE @now DATETIME2(3) = SYSUTCDATETIME();
    DECLARE @u TABLE (request_id BIGINT NOT NULL, needs_reversal SMALLINT NOT NULL);
    UPDATE t
    SET
        status = x.status,
        infcode = x.infcode,
        response_data = x.response_data,
        error_code = x.error_code,
        error_message = x.error_message,
        msgid = COALESCE(x.msgid, t.msgid),
        attempt_log = x.attempt_log,
        response_time = @now,
        lease_expires_at = NULL,
        limit_slot = NULL,
        needs_reversal = CASE
            WHEN x.status = N''COMPLETED'' AND x.late_reversible = 1 AND @now > t.deadline_at THEN 1
            ELSE 0
        END
    OUTPUT inserted.request_id, inserted.needs_reversal INTO @u (request_id, needs_reversal)
    FROM dbo.medical_insurance_requests AS t
    INNER JOIN OPENJSON(@rows) WITH (
        request_id BIGINT,
        claim_token VARCHAR(40),
        status NVARCHAR(20),
        infcode VARCHAR(10),
        response_data NVARCHAR(MAX),
        error_code INT,
        error_message NVARCHAR(MAX),
        msgid VARCHAR(30),
        attempt_log NVARCHAR(MAX),
        late_reversible INT
    ) AS x ON t.request_id = x.request_id AND t.claim_token = x.claim_token
    WHERE t.status = N''PROCESSING'';
    SELECT request_id, needs_reversal FROM @u;',
    N'@rows NVARCHAR(MAX)',
    @rows = @rows;

-- name: requeue_request
-- A retryable failure goes back to PENDING with its back-off stored in the row (it survives a
-- restart and any worker may take it); out of attempts or time it ends ERROR or TIMEOUT.
SET NOCOUNT ON;
DECLARE @delay_seconds FLOAT = :delay_seconds;
DECLARE @error_code INT = :error_code;
DECLARE @error_message NVARCHAR(MAX) = :error_message;
DECLARE @attempt_log NVARCHAR(MAX) = :attempt_log;
DECLARE @msgid VARCHAR(30) = :msgid;
DECLARE @request_id BIGINT = :request_id;
DECLARE @claim_token VARCHAR(40) = :claim_token;
DECLARE @now DATETIME2(3) = SYSUTCDATETIME();
DECLARE @next DATETIME2(3);
DECLARE @u TABLE (request_id BIGINT NOT NULL, status NVARCHAR(20) NOT NULL);
SET @next = DATEADD(MILLISECOND, CAST(ROUND(@delay_seconds * 1000, 0) AS INT), @now);
UPDATE dbo.medical_insurance_requests
SET
    status = CASE
        WHEN @next >= deadline_at THEN N'TIMEOUT'
        WHEN attempts > max_retry_count THEN N'ERROR'
        ELSE N'PENDING'
    END,
    next_attempt_at = @next,
    error_code = @error_code,
    error_message = @error_message,
    attempt_log = @attempt_log,
    msgid = COALESCE(@msgid, msgid),
    worker_id = NULL,
    claim_token = NULL,
    lease_expires_at = NULL,
    limit_slot = NULL,
    response_time = CASE
        WHEN @next >= deadline_at OR attempts > max_retry_count THEN @now
    END
OUTPUT inserted.request_id, inserted.status INTO @u (request_id, status)
WHERE request_id = @request_id AND claim_token = @claim_token AND status = N'PROCESSING';
SELECT
    request_id,
    status
FROM @u;

-- name: release_request
-- Graceful stop: a claimed row that was never sent goes back to PENDING as if untouched.
SET NOCOUNT ON;
DECLARE @request_id BIGINT = :request_id;
DECLARE @claim_token VARCHAR(40) = :claim_token;
DECLARE @u TABLE (request_id BIGINT NOT NULL);
UPDATE dbo.medical_insurance_requests
SET
    status = N'PENDING',
    attempts = CASE WHEN attempts > 1 THEN attempts - 1 ELSE 0 END,
    worker_id = NULL,
    claim_token = NULL,
    lease_expires_at = NULL,
    limit_slot = NULL
OUTPUT inserted.request_id INTO @u (request_id)
WHERE request_id = @request_id AND claim_token = @claim_token AND status = N'PROCESSING';
SELECT request_id FROM @u;

-- name: extend_lease
-- The heartbeat keeps the leases of the claims this worker still works on.
SET NOCOUNT ON;
DECLARE @lease_seconds FLOAT = :lease_seconds;
DECLARE @claim_token VARCHAR(40) = :claim_token;
UPDATE dbo.medical_insurance_requests
SET lease_expires_at = DATEADD(MILLISECOND, CAST(ROUND(@lease_seconds * 1000, 0) AS INT), SYSUTCDATETIME())
WHERE claim_token = @claim_token AND status = N'PROCESSING';

-- ===== workers =====
-- one heartbeat row per worker process; the -1002 check and the monitors read it

-- name: heartbeat
-- One row per worker process; the HIS procedure's -1002 check and the monitors read it.
-- Update, else insert (only this worker writes its row, so no race needs MERGE or HOLDLOCK).
SET NOCOUNT ON;
DECLARE @service_name NVARCHAR(100) = :service_name;
DECLARE @worker_id NVARCHAR(100) = :worker_id;
DECLARE @host NVARCHAR(255) = :host;
DECLARE @pid INT = :pid;
DECLARE @version NVARCHAR(40) = :version;
DECLARE @status NVARCHAR(20) = :status;
DECLARE @in_flight INT = :in_flight;
DECLARE @processed_total BIGINT = :processed_total;
DECLARE @gateway_kind NVARCHAR(16) = :gateway_kind;
DECLARE @gateway_tls_verified TINYINT = :gateway_tls_verified;
UPDATE dbo.sdk_heartbeat
SET
    last_heartbeat = SYSUTCDATETIME(),
    status = @status,
    in_flight = @in_flight,
    processed_total = @processed_total,
    host = @host,
    pid = @pid,
    version = @version,
    gateway_kind = @gateway_kind,
    gateway_tls_verified = @gateway_tls_verified
WHERE service_name = @service_name AND worker_id = @worker_id;
IF @@ROWCOUNT = 0
    INSERT INTO dbo.sdk_heartbeat (
        service_name, worker_id, host, pid, version, started_at, last_heartbeat, status,
        in_flight, processed_total, gateway_kind, gateway_tls_verified
    )
    VALUES (
        @service_name, @worker_id, @host, @pid, @version, SYSUTCDATETIME(), SYSUTCDATETIME(),
        @status, @in_flight, @processed_total, @gateway_kind, @gateway_tls_verified
    );

-- name: service_status
-- The same answer as sp_check_sdk_service_status, for `mi-worker call` and health checks.
SET NOCOUNT ON;
DECLARE @stale_seconds INT = :stale_seconds;
DECLARE @s INT;
EXEC @s = dbo.sp_check_sdk_service_status @stale_seconds = @stale_seconds;
SELECT @s AS alive;

-- name: heartbeat_rows
-- Every worker's heartbeat with its age in seconds (database clock): health, status, tests.
-- A beat older than 20 days is aged in whole seconds (DATEDIFF in milliseconds would
-- overflow INT after 24.8 days and fail the whole query).
SET NOCOUNT ON;
DECLARE @now DATETIME2(3) = SYSUTCDATETIME();
SELECT
    service_name,
    worker_id,
    host,
    pid,
    version,
    started_at,
    last_heartbeat,
    status,
    in_flight,
    processed_total,
    gateway_kind,
    gateway_tls_verified,
    CASE
        WHEN last_heartbeat > DATEADD(DAY, -20, @now)
            THEN CAST(DATEDIFF(MILLISECOND, last_heartbeat, @now) AS FLOAT) / 1000.0
        ELSE CAST(DATEDIFF(SECOND, last_heartbeat, @now) AS FLOAT)
    END AS age_seconds
FROM dbo.sdk_heartbeat
ORDER BY service_name, worker_id;

-- ===== the HIS contract =====
-- sp_medical_insurance_call_v2 (call_procedure) or, on SQLite, its steps run by mi_worker/his_call.py

-- name: call_procedure
-- `mi-worker call` goes through the HIS procedure itself, exactly as the HIS does; pyodbc
-- cannot read OUTPUT parameters, so the batch SELECTs them.
SET NOCOUNT ON;
DECLARE @interface_code VARCHAR(10) = :interface_code;
DECLARE @input_data NVARCHAR(MAX) = :input_data;
DECLARE @timeout INT = :timeout;
DECLARE @retry_count INT = :retry_count;
DECLARE @priority INT = :priority;
DECLARE @idempotency_key NVARCHAR(100) = :idempotency_key;
DECLARE @his_fee_id NVARCHAR(64) = :his_fee_id;
DECLARE @psn_no NVARCHAR(30) = :psn_no;
DECLARE @poll_ms INT = :poll_ms;
DECLARE @insuplc_admdvs NVARCHAR(6) = :insuplc_admdvs;
DECLARE @rid BIGINT;
DECLARE @res NVARCHAR(MAX);
DECLARE @ec INT;
DECLARE @em NVARCHAR(500);
EXEC dbo.sp_medical_insurance_call_v2
    @interface_code = @interface_code,
    @input_data = @input_data,
    @timeout = @timeout,
    @retry_count = @retry_count,
    @request_id = @rid OUTPUT,
    @result = @res OUTPUT,
    @error_code = @ec OUTPUT,
    @error_message = @em OUTPUT,
    @priority = @priority,
    @idempotency_key = @idempotency_key,
    @his_fee_id = @his_fee_id,
    @psn_no = @psn_no,
    @poll_ms = @poll_ms,
    @insuplc_admdvs = @insuplc_admdvs;
SELECT
    @rid AS request_id,
    @res AS result,
    @ec AS error_code,
    @em AS error_message;

-- name: enqueue_request
-- What the HIS procedure inserts; used directly where there is no procedure (SQLite) and to
-- seed tests and the benchmark.
SET NOCOUNT ON;
DECLARE @interface_code VARCHAR(10) = :interface_code;
DECLARE @input_data NVARCHAR(MAX) = :input_data;
DECLARE @priority INT = :priority;
DECLARE @timeout_seconds FLOAT = :timeout_seconds;
DECLARE @max_retry_count INT = :max_retry_count;
DECLARE @psn_no NVARCHAR(30) = :psn_no;
DECLARE @insuplc_admdvs NVARCHAR(6) = :insuplc_admdvs;
DECLARE @idempotency_key NVARCHAR(100) = :idempotency_key;
DECLARE @his_fee_id NVARCHAR(64) = :his_fee_id;
DECLARE @parent_request_id BIGINT = :parent_request_id;
DECLARE @u TABLE (request_id BIGINT NOT NULL);
INSERT INTO dbo.medical_insurance_requests (
    interface_code, input_data, status, priority, timeout_seconds, max_retry_count, psn_no,
    insuplc_admdvs, idempotency_key, his_fee_id, parent_request_id, deadline_at
)
OUTPUT inserted.request_id INTO @u (request_id)
VALUES (
    @interface_code, @input_data, N'PENDING', @priority,
    CAST(ROUND(@timeout_seconds, 0) AS INT), @max_retry_count,
    @psn_no, @insuplc_admdvs, @idempotency_key, @his_fee_id, @parent_request_id,
    DATEADD(MILLISECOND, CAST(ROUND(@timeout_seconds * 1000, 0) AS INT), SYSUTCDATETIME())
);
SELECT request_id FROM @u;

-- name: poll_result
-- What the HIS procedure polls: the caller-facing state of one request.
SET NOCOUNT ON;
DECLARE @request_id BIGINT = :request_id;
SELECT
    v.request_id,
    v.status,
    v.result_status,
    v.response_data,
    v.error_code,
    v.error_message,
    CASE WHEN SYSUTCDATETIME() >= v.deadline_at THEN 1 ELSE 0 END AS past_deadline
FROM dbo.v_medical_insurance_result AS v
WHERE v.request_id = @request_id;

-- name: timeout_if_pending
-- At the caller's deadline a row nobody claimed ends TIMEOUT; a claimed one stays with its
-- worker (the caller is told the outcome is in doubt).
SET NOCOUNT ON;
DECLARE @error_message NVARCHAR(MAX) = :error_message;
DECLARE @request_id BIGINT = :request_id;
DECLARE @u TABLE (request_id BIGINT NOT NULL);
UPDATE dbo.medical_insurance_requests
SET
    status = N'TIMEOUT',
    response_time = SYSUTCDATETIME(),
    error_code = -1005,
    error_message = @error_message
OUTPUT inserted.request_id INTO @u (request_id)
WHERE request_id = @request_id AND status = N'PENDING';
SELECT request_id FROM @u;

-- name: find_idempotent
-- The latest call with this idempotency key that did not fail.
SET NOCOUNT ON;
DECLARE @idempotency_key NVARCHAR(100) = :idempotency_key;
SELECT TOP (1)
    request_id,
    status,
    needs_reversal,
    response_data,
    error_message
FROM dbo.medical_insurance_requests
WHERE
    idempotency_key = @idempotency_key
    AND idempotency_key IS NOT NULL
    AND status <> N'ERROR'
    AND status <> N'TIMEOUT'
ORDER BY request_id DESC;

-- ===== sweeps =====
-- rows whose caller or worker is gone (expire, lease recovery), once per cluster

-- name: expire_pending
-- PENDING rows whose caller's deadline passed can never be useful: TIMEOUT (never sent).
-- In steps of 1,000 rows, each its own autocommit statement, so a backlog after an outage
-- never escalates to a table lock (5,000 locks); every expired row is returned, as on
-- PostgreSQL. ROWLOCK, READPAST: never page locks a claim's READPAST cannot skip, never a wait
-- on a row a claim holds (a skipped row is expired by the next sweep).
SET NOCOUNT ON;
DECLARE @rows INT = 1000;
DECLARE @u TABLE (request_id BIGINT NOT NULL);
WHILE @rows = 1000
BEGIN
    UPDATE TOP (1000) dbo.medical_insurance_requests WITH (ROWLOCK, READPAST)
    SET
        status = N'TIMEOUT',
        response_time = SYSUTCDATETIME(),
        error_code = -1005,
        error_message = N'请求超时: deadline passed before any worker sent the request'
    OUTPUT inserted.request_id INTO @u (request_id)
    WHERE status = N'PENDING' AND deadline_at <= SYSUTCDATETIME();
    SET @rows = @@ROWCOUNT;
END;
SELECT request_id FROM @u;

-- name: find_lost_leases
-- Rows whose lease ran out and whose worker is not beating (or ran out long ago): the worker
-- died or lost them; the job decides per interface kind what becomes of each.
SET NOCOUNT ON;
DECLARE @lease_seconds FLOAT = :lease_seconds;
DECLARE @stale_seconds FLOAT = :stale_seconds;
DECLARE @now DATETIME2(3) = SYSUTCDATETIME();
DECLARE @lease_cutoff DATETIME2(3);
DECLARE @beat_cutoff DATETIME2(3);
SET @lease_cutoff = DATEADD(MILLISECOND, -CAST(ROUND(@lease_seconds * 1000, 0) AS INT), @now);
SET @beat_cutoff = DATEADD(MILLISECOND, -CAST(ROUND(@stale_seconds * 1000, 0) AS INT), @now);
SELECT TOP (500)
    r.request_id,
    r.interface_code,
    r.claim_token,
    r.worker_id,
    CASE WHEN r.deadline_at <= @now THEN 1 ELSE 0 END AS past_deadline
FROM dbo.medical_insurance_requests AS r
WHERE
    r.status = N'PROCESSING'
    AND r.lease_expires_at < @now
    AND (
        r.lease_expires_at < @lease_cutoff
        OR NOT EXISTS (
            SELECT 1
            FROM dbo.sdk_heartbeat AS h
            WHERE
                h.worker_id = r.worker_id
                AND h.status = N'RUNNING'
                AND h.last_heartbeat > @beat_cutoff
        )
    )
ORDER BY r.request_id;

-- name: recover_lease
-- Move one lost row to the state the job chose (PENDING for a query, UNCERTAIN for a
-- state-changing call that may have reached the centre, TIMEOUT when nobody waits any more).
SET NOCOUNT ON;
DECLARE @status NVARCHAR(20) = :status;
DECLARE @error_code INT = :error_code;
DECLARE @error_message NVARCHAR(MAX) = :error_message;
DECLARE @request_id BIGINT = :request_id;
DECLARE @claim_token VARCHAR(40) = :claim_token;
DECLARE @u TABLE (request_id BIGINT NOT NULL);
UPDATE dbo.medical_insurance_requests
SET
    status = @status,
    worker_id = NULL,
    claim_token = NULL,
    lease_expires_at = NULL,
    limit_slot = NULL,
    error_code = @error_code,
    error_message = @error_message,
    response_time = CASE WHEN @status = N'PENDING' THEN NULL ELSE SYSUTCDATETIME() END
OUTPUT inserted.request_id INTO @u (request_id)
WHERE request_id = @request_id AND claim_token = @claim_token AND status = N'PROCESSING';
SELECT request_id FROM @u;

-- ===== reversal (冲正) =====
-- rows in doubt and their 2601 rows

-- name: find_doubtful
-- Rows whose outcome is in doubt (UNCERTAIN, or COMPLETED after the caller gave up), with
-- their latest 2601 reversal row if any: the reversal job's work list. PostgreSQL's
-- "status = 'UNCERTAIN' OR needs_reversal = 1" is a UNION of two branches, one per filtered
-- index (ix_mir_doubt, ix_mir_doubt_reversal), so the history table is never scanned.
SET NOCOUNT ON;
SELECT TOP (200)
    r.request_id,
    r.interface_code,
    r.status,
    r.psn_no,
    r.insuplc_admdvs,
    r.msgid,
    r.needs_reversal,
    r.error_message,
    (
        SELECT MAX(c.request_id)
        FROM dbo.medical_insurance_requests AS c
        WHERE c.parent_request_id = r.request_id
    ) AS rev_id,
    (
        SELECT COUNT(*)
        FROM dbo.medical_insurance_requests AS c
        WHERE c.parent_request_id = r.request_id
    ) AS rev_count
FROM (
    SELECT u.request_id
    FROM dbo.medical_insurance_requests AS u
    WHERE u.status = N'UNCERTAIN'
    UNION
    SELECT n.request_id
    FROM dbo.medical_insurance_requests AS n
    WHERE n.needs_reversal = 1
) AS d
INNER JOIN dbo.medical_insurance_requests AS r ON d.request_id = r.request_id
WHERE r.parent_request_id IS NULL
ORDER BY r.request_id;

-- name: settle_row
-- Move a row from the state the job saw to its settled state (REVERSED, NEEDS_MANUAL, ERROR);
-- the status guard makes a concurrent change win instead of being overwritten.
SET NOCOUNT ON;
DECLARE @status NVARCHAR(20) = :status;
DECLARE @error_code INT = :error_code;
DECLARE @error_message NVARCHAR(MAX) = :error_message;
DECLARE @request_id BIGINT = :request_id;
DECLARE @expected_status NVARCHAR(20) = :expected_status;
UPDATE dbo.medical_insurance_requests
SET
    status = @status,
    needs_reversal = 0,
    error_code = @error_code,
    error_message = @error_message
WHERE request_id = @request_id AND status = @expected_status
    -- only the arrows states.TRANSITIONS allows for "reverse"
    AND ((status = N'UNCERTAIN' AND @status IN (N'REVERSED', N'NEEDS_MANUAL', N'ERROR'))
        OR (status = N'COMPLETED' AND @status IN (N'REVERSED', N'NEEDS_MANUAL')));

-- name: enqueue_reversal
-- A 2601 冲正 row linked to the original, at top priority, not runnable before :delay_seconds.
SET NOCOUNT ON;
DECLARE @input_data NVARCHAR(MAX) = :input_data;
DECLARE @timeout_seconds FLOAT = :timeout_seconds;
DECLARE @psn_no NVARCHAR(30) = :psn_no;
DECLARE @insuplc_admdvs NVARCHAR(6) = :insuplc_admdvs;
DECLARE @parent_request_id BIGINT = :parent_request_id;
DECLARE @delay_seconds FLOAT = :delay_seconds;
DECLARE @runnable_at DATETIME2(3);
DECLARE @u TABLE (request_id BIGINT NOT NULL);
SET @runnable_at = DATEADD(MILLISECOND, CAST(ROUND(@delay_seconds * 1000, 0) AS INT), SYSUTCDATETIME());
INSERT INTO dbo.medical_insurance_requests (
    interface_code, input_data, status, priority, timeout_seconds, max_retry_count, psn_no,
    insuplc_admdvs, parent_request_id, next_attempt_at, deadline_at
)
OUTPUT inserted.request_id INTO @u (request_id)
VALUES (
    '2601', @input_data, N'PENDING', 0, CAST(ROUND(@timeout_seconds, 0) AS INT), 3, @psn_no,
    @insuplc_admdvs, @parent_request_id, @runnable_at,
    DATEADD(MILLISECOND, CAST(ROUND(@timeout_seconds * 1000, 0) AS INT), @runnable_at)
);
SELECT request_id FROM @u;

-- name: find_children
-- The 2601 reversal rows queued for one original request (audit trail, `requests show`).
SET NOCOUNT ON;
DECLARE @parent_request_id BIGINT = :parent_request_id;
SELECT
    request_id,
    interface_code,
    status,
    input_data,
    error_message,
    request_time
FROM dbo.medical_insurance_requests
WHERE parent_request_id = @parent_request_id
ORDER BY request_id;

-- ===== alerts =====
-- raised, refreshed, resolved and notified by the alert scan

-- name: check_alerts
-- Conditions that are alert-worthy right now (the alert scan stores and de-duplicates them).
SET NOCOUNT ON;
DECLARE @error_rate_percent DECIMAL(9, 2) = :error_rate_percent;
DECLARE @min_calls INT = :min_calls;
DECLARE @slow_avg_ms INT = :slow_avg_ms;
DECLARE @backlog_pending INT = :backlog_pending;
DECLARE @backlog_age_seconds INT = :backlog_age_seconds;
DECLARE @down_seconds INT = :down_seconds;
EXEC dbo.sp_check_medical_insurance_alerts
    @error_rate_percent = @error_rate_percent,
    @min_calls = @min_calls,
    @slow_avg_ms = @slow_avg_ms,
    @backlog_pending = @backlog_pending,
    @backlog_age_seconds = @backlog_age_seconds,
    @down_seconds = @down_seconds;

-- name: open_alert
-- The open alert of a type, if any: alerts are de-duplicated per type while open.
SET NOCOUNT ON;
DECLARE @alert_type NVARCHAR(40) = :alert_type;
SELECT TOP (1)
    alert_id,
    alert_type,
    alert_level,
    alert_message,
    raised_at,
    last_seen_at
FROM dbo.medical_insurance_alerts
WHERE alert_type = @alert_type AND resolved_at IS NULL
ORDER BY alert_id DESC;

-- name: insert_alert
-- A new alert (the scan found a condition with no open alert of its type).
SET NOCOUNT ON;
DECLARE @alert_type NVARCHAR(40) = :alert_type;
DECLARE @alert_level NVARCHAR(20) = :alert_level;
DECLARE @alert_message NVARCHAR(MAX) = :alert_message;
DECLARE @detail NVARCHAR(MAX) = :detail;
INSERT INTO dbo.medical_insurance_alerts (alert_type, alert_level, alert_message, detail)
VALUES (@alert_type, @alert_level, @alert_message, @detail);

-- name: touch_alert
-- The condition still holds: keep the open alert, refresh its message and last_seen_at.
SET NOCOUNT ON;
DECLARE @alert_message NVARCHAR(MAX) = :alert_message;
DECLARE @detail NVARCHAR(MAX) = :detail;
DECLARE @alert_id BIGINT = :alert_id;
UPDATE dbo.medical_insurance_alerts
SET
    last_seen_at = SYSUTCDATETIME(),
    alert_message = @alert_message,
    detail = @detail
WHERE alert_id = @alert_id;

-- name: reopen_alert
-- A condition that cleared and came back within the de-duplication window reopens its alert
-- instead of raising (and notifying) a new one.
SET NOCOUNT ON;
DECLARE @alert_message NVARCHAR(MAX) = :alert_message;
DECLARE @alert_type NVARCHAR(40) = :alert_type;
DECLARE @dedup_minutes INT = :dedup_minutes;
DECLARE @now DATETIME2(3) = SYSUTCDATETIME();
DECLARE @u TABLE (alert_id BIGINT NOT NULL);
UPDATE dbo.medical_insurance_alerts
SET
    resolved_at = NULL,
    last_seen_at = @now,
    alert_message = @alert_message
OUTPUT inserted.alert_id INTO @u (alert_id)
WHERE alert_id = (
    SELECT MAX(a.alert_id)
    FROM dbo.medical_insurance_alerts AS a
    WHERE
        a.alert_type = @alert_type
        AND a.resolved_at IS NOT NULL
        AND a.resolved_at > DATEADD(MINUTE, -@dedup_minutes, @now)
);
SELECT alert_id FROM @u;

-- name: resolve_alert
-- The condition cleared: close the open alert.
SET NOCOUNT ON;
DECLARE @alert_id BIGINT = :alert_id;
UPDATE dbo.medical_insurance_alerts
SET resolved_at = SYSUTCDATETIME()
WHERE alert_id = @alert_id AND resolved_at IS NULL;

-- name: list_open_alerts
-- Alerts not yet resolved (or all recent ones with :include_resolved = 1).
SET NOCOUNT ON;
DECLARE @include_resolved INT = :include_resolved;
SELECT TOP (200)
    alert_id,
    alert_type,
    alert_level,
    alert_message,
    raised_at,
    last_seen_at,
    resolved_at,
    notified_at
FROM dbo.medical_insurance_alerts
WHERE resolved_at IS NULL OR @include_resolved = 1
ORDER BY alert_id DESC;

-- name: mark_alert_notified
-- The webhook accepted the notification.
SET NOCOUNT ON;
DECLARE @alert_id BIGINT = :alert_id;
UPDATE dbo.medical_insurance_alerts
SET notified_at = SYSUTCDATETIME()
WHERE alert_id = @alert_id;

-- ===== monitoring and the CLI =====
-- the figures of `mi-worker status`, `monitor`, `metrics`, `requests`

-- name: monitor_health
-- Per-worker and overall UP / WARNING / DOWN by heartbeat age (the DBA procedure's rows;
-- sql/mssql/migrations/003_monitoring.sql).
SET NOCOUNT ON;
DECLARE @warn_seconds INT = :warn_seconds;
DECLARE @down_seconds INT = :down_seconds;
EXEC dbo.sp_get_medical_insurance_monitor_data
    @data_type = 'health',
    @warn_seconds = @warn_seconds,
    @down_seconds = @down_seconds;

-- name: monitor_performance
-- Last :hours: totals by outcome, success rate, average / p95 / max latency.
SET NOCOUNT ON;
DECLARE @hours INT = :hours;
EXEC dbo.sp_get_medical_insurance_monitor_data @data_type = 'performance', @hours = @hours;

-- name: monitor_interfaces
-- Last :hours per interface code, with its Chinese name.
SET NOCOUNT ON;
DECLARE @hours INT = :hours;
EXEC dbo.sp_get_medical_insurance_monitor_data @data_type = 'interfaces', @hours = @hours;

-- name: monitor_queue
-- Open rows by status and priority with the oldest one's age.
SET NOCOUNT ON;
EXEC dbo.sp_get_medical_insurance_monitor_data @data_type = 'queue';

-- name: monitor_workers
-- Every worker process with uptime and counters.
SET NOCOUNT ON;
EXEC dbo.sp_get_medical_insurance_monitor_data @data_type = 'workers';

-- name: metrics_by_interface
-- Prometheus counters and latency histogram per interface and outcome (whole table, so the
-- counters only grow as long as rows are kept).
SET NOCOUNT ON;
SELECT
    v.interface_code,
    v.result_status,
    COUNT_BIG(*) AS n,
    COALESCE(SUM(v.latency_ms), 0) AS latency_sum_ms,
    COUNT_BIG(v.latency_ms) AS latency_count,
    SUM(CASE WHEN v.latency_ms <= 50 THEN 1 ELSE 0 END) AS le_50,
    SUM(CASE WHEN v.latency_ms <= 100 THEN 1 ELSE 0 END) AS le_100,
    SUM(CASE WHEN v.latency_ms <= 250 THEN 1 ELSE 0 END) AS le_250,
    SUM(CASE WHEN v.latency_ms <= 500 THEN 1 ELSE 0 END) AS le_500,
    SUM(CASE WHEN v.latency_ms <= 1000 THEN 1 ELSE 0 END) AS le_1000,
    SUM(CASE WHEN v.latency_ms <= 2500 THEN 1 ELSE 0 END) AS le_2500,
    SUM(CASE WHEN v.latency_ms <= 5000 THEN 1 ELSE 0 END) AS le_5000,
    SUM(CASE WHEN v.latency_ms <= 10000 THEN 1 ELSE 0 END) AS le_10000,
    SUM(CASE WHEN v.latency_ms <= 30000 THEN 1 ELSE 0 END) AS le_30000
FROM dbo.v_medical_insurance_result AS v
GROUP BY v.interface_code, v.result_status
ORDER BY v.interface_code, v.result_status;

-- name: list_requests
-- `mi-worker requests list`: newest first, optionally one status / interface. OPTION
-- (RECOMPILE) plans each call for the filters actually given (an operator's command, rare);
-- a NULL :limit_rows means no limit, as PostgreSQL's LIMIT NULL.
SET NOCOUNT ON;
DECLARE @status NVARCHAR(20) = :status;
DECLARE @interface_code VARCHAR(10) = :interface_code;
DECLARE @limit_rows INT = :limit_rows;
SELECT TOP (COALESCE(@limit_rows, 2147483647))
    r.request_id,
    r.interface_code,
    r.status,
    r.psn_no,
    r.msgid,
    r.attempts,
    r.request_time,
    r.response_time,
    r.error_code,
    r.error_message,
    r.parent_request_id,
    r.resolved_at,
    r.resolution_note
FROM dbo.medical_insurance_requests AS r
WHERE
    (@status IS NULL OR r.status = @status)
    AND (@interface_code IS NULL OR r.interface_code = @interface_code)
ORDER BY r.request_id DESC
OPTION (RECOMPILE);

-- name: get_request
-- One row with everything, for `mi-worker call`, `requests show` and tests.
SET NOCOUNT ON;
DECLARE @request_id BIGINT = :request_id;
SELECT
    r.*,
    v.result_status,
    v.latency_ms
FROM dbo.medical_insurance_requests AS r
INNER JOIN dbo.v_medical_insurance_result AS v ON r.request_id = v.request_id
WHERE r.request_id = @request_id;

-- name: resolve_request
-- An operator settled a NEEDS_MANUAL (or UNCERTAIN) row by hand: record who, when and how.
SET NOCOUNT ON;
DECLARE @resolved_by NVARCHAR(100) = :resolved_by;
DECLARE @note NVARCHAR(MAX) = :note;
DECLARE @request_id BIGINT = :request_id;
DECLARE @u TABLE (request_id BIGINT NOT NULL);
UPDATE dbo.medical_insurance_requests
SET
    resolved_at = SYSUTCDATETIME(),
    resolved_by = @resolved_by,
    resolution_note = @note,
    needs_reversal = 0
OUTPUT inserted.request_id INTO @u (request_id)
WHERE
    request_id = @request_id
    AND status IN (N'NEEDS_MANUAL', N'UNCERTAIN')
    AND resolved_at IS NULL;
SELECT request_id FROM @u;

-- ===== reconciliation (对账) =====
-- the day's settlements against the centre's 3201 totals

-- name: settlements_between
-- The reconciliation's local side: settlements that COMPLETED in a (China) day, not flagged
-- for reversal. :start_utc / :end_utc are UTC text 'yyyy-mm-dd hh:mi:ss' (style 121 whatever
-- the session's DATEFORMAT or LANGUAGE).
SET NOCOUNT ON;
DECLARE @start_text VARCHAR(30) = :start_utc;
DECLARE @end_text VARCHAR(30) = :end_utc;
DECLARE @start_utc DATETIME2(3) = CONVERT(DATETIME2(3), @start_text, 121);
DECLARE @end_utc DATETIME2(3) = CONVERT(DATETIME2(3), @end_text, 121);
SELECT
    request_id,
    interface_code,
    input_data,
    response_data,
    response_time
FROM dbo.medical_insurance_requests
WHERE
    status = N'COMPLETED'
    AND needs_reversal = 0
    AND interface_code IN ('2102', '2207', '2207A', '2304')
    AND response_time >= @start_utc
    AND response_time < @end_utc
ORDER BY request_id;

-- name: cancellations_since
-- Settlement cancellations (2103/2208/2305) that COMPLETED from the day on: their setl_id
-- leaves a settlement out of the day's totals.
SET NOCOUNT ON;
DECLARE @start_text VARCHAR(30) = :start_utc;
DECLARE @start_utc DATETIME2(3) = CONVERT(DATETIME2(3), @start_text, 121);
SELECT
    request_id,
    interface_code,
    input_data
FROM dbo.medical_insurance_requests
WHERE
    status = N'COMPLETED'
    AND interface_code IN ('2103', '2208', '2305')
    AND response_time >= @start_utc
ORDER BY request_id;

-- name: insert_reconciliation
-- The centre's answer to one 3201, next to the local totals that were sent. :stmt_date is
-- 'yyyy-mm-dd' (style 23); the amounts come as decimal text ('123.45').
SET NOCOUNT ON;
DECLARE @stmt_date_text VARCHAR(10) = :stmt_date;
DECLARE @insutype NVARCHAR(6) = :insutype;
DECLARE @clr_type NVARCHAR(6) = :clr_type;
DECLARE @setl_optins NVARCHAR(6) = :setl_optins;
DECLARE @medfee_sumamt DECIMAL(16, 2) = :medfee_sumamt;
DECLARE @fund_pay_sumamt DECIMAL(16, 2) = :fund_pay_sumamt;
DECLARE @acct_pay DECIMAL(16, 2) = :acct_pay;
DECLARE @setl_cnt INT = :setl_cnt;
DECLARE @stmt_rslt NVARCHAR(6) = :stmt_rslt;
DECLARE @stmt_rslt_dscr NVARCHAR(MAX) = :stmt_rslt_dscr;
DECLARE @request_id BIGINT = :request_id;
INSERT INTO dbo.medical_insurance_reconciliation (
    stmt_date, insutype, clr_type, setl_optins, medfee_sumamt, fund_pay_sumamt, acct_pay,
    setl_cnt, stmt_rslt, stmt_rslt_dscr, request_id
)
VALUES (
    CONVERT(DATE, @stmt_date_text, 23), @insutype, @clr_type, @setl_optins, @medfee_sumamt,
    @fund_pay_sumamt, @acct_pay, @setl_cnt, @stmt_rslt, @stmt_rslt_dscr, @request_id
);

-- name: list_reconciliation
-- Reconciliation results of one day (`mi-worker reconcile --show`).
SET NOCOUNT ON;
DECLARE @stmt_date_text VARCHAR(10) = :stmt_date;
DECLARE @stmt_date DATE = CONVERT(DATE, @stmt_date_text, 23);
SELECT
    recon_id,
    stmt_date,
    insutype,
    clr_type,
    setl_optins,
    medfee_sumamt,
    fund_pay_sumamt,
    acct_pay,
    setl_cnt,
    stmt_rslt,
    stmt_rslt_dscr,
    request_id,
    created_at
FROM dbo.medical_insurance_reconciliation
WHERE stmt_date = @stmt_date
ORDER BY recon_id;

-- ===== schema, catalogue and locks =====
-- migrations, the tables that mirror the code, cluster-wide locks

-- name: server_features
-- What the server is, so the worker decides once what it can use (logged at start): the
-- group commit (complete_batch, OPENJSON) needs compatibility level 130 (SQL Server 2016+).
-- NULL when the login may not read sys.databases: results are then written row by row.
SELECT CAST(SERVERPROPERTY('ProductVersion') AS NVARCHAR(128)) AS server_version,
       (SELECT d.compatibility_level FROM sys.databases AS d WHERE d.name = DB_NAME())
           AS compatibility_level;

-- name: create_migrations_table
-- The version table `mi-worker db upgrade` records applied files in. Created under a
-- transaction-owned applock, so two hosts running the very first upgrade at once cannot both
-- try the CREATE (2714; tsql-review D8): the second waits, then finds the table.
SET NOCOUNT ON;
DECLARE @rc INT;
BEGIN TRY
    BEGIN TRANSACTION;
    EXEC @rc = sp_getapplock
        @Resource = N'mi_worker:schema_version',
        @LockMode = 'Exclusive',
        @LockOwner = 'Transaction',
        @LockTimeout = 600000;
    IF @rc < 0
        THROW 50001, N'mi-worker: migration lock not granted (another upgrade is running)', 1;
    IF OBJECT_ID(N'dbo.mi_schema_version', N'U') IS NULL
        CREATE TABLE dbo.mi_schema_version (
            version INT NOT NULL,
            name NVARCHAR(200) NOT NULL,
            checksum VARCHAR(64) NOT NULL,
            applied_at DATETIME2(3) NOT NULL CONSTRAINT df_mi_schema_version_applied
            DEFAULT (SYSUTCDATETIME()),
            CONSTRAINT pk_mi_schema_version PRIMARY KEY CLUSTERED (version)
        );
    COMMIT TRANSACTION;
END TRY
BEGIN CATCH
    IF @@TRANCOUNT > 0
        ROLLBACK TRANSACTION;
    THROW;
END CATCH;

-- name: migration_lock
-- Two hosts upgrading at once: the second waits here, then sees the first one's versions.
-- Owned by the migration's transaction (released at its COMMIT or ROLLBACK); waits up to 10
-- minutes, then fails the upgrade rather than hang.
SET NOCOUNT ON;
DECLARE @lock_key BIGINT = :lock_key;
DECLARE @resource NVARCHAR(255);
DECLARE @rc INT;
DECLARE @applied INT;
SET @resource = N'mi_worker:' + CAST(@lock_key AS NVARCHAR(20));
-- The migration connection is in manual-commit mode (the ODBC driver's implicit
-- transactions), where a SELECT from a table opens the transaction and an EXEC does not; a
-- transaction-owned applock needs one open.
SELECT @applied = COUNT(*) FROM dbo.mi_schema_version;
IF @@TRANCOUNT = 0
    THROW 50002, N'mi-worker: migration_lock must run inside the migration transaction', 1;
EXEC @rc = sp_getapplock
    @Resource = @resource,
    @LockMode = 'Exclusive',
    @LockOwner = 'Transaction',
    @LockTimeout = 600000;
IF @rc < 0
    THROW 50001, N'mi-worker: migration lock not granted (another upgrade is running)', 1;

-- name: applied_migrations
-- Versions already applied, with the checksum of the file as it was.
SET NOCOUNT ON;
SELECT
    version,
    checksum
FROM dbo.mi_schema_version
ORDER BY version;

-- name: record_migration
-- Written in the same transaction as the migration itself.
SET NOCOUNT ON;
DECLARE @version INT = :version;
DECLARE @name NVARCHAR(200) = :name;
DECLARE @checksum VARCHAR(64) = :checksum;
INSERT INTO dbo.mi_schema_version (version, name, checksum)
VALUES (@version, @name, @checksum);

-- name: upsert_interface
-- The catalogue mirrored into SQL so DBA monitors can name interfaces in Chinese.
SET NOCOUNT ON;
DECLARE @interface_code VARCHAR(10) = :interface_code;
DECLARE @interface_name NVARCHAR(100) = :interface_name;
DECLARE @kind NVARCHAR(20) = :kind;
DECLARE @reversible SMALLINT = :reversible;
DECLARE @cancel_code VARCHAR(10) = :cancel_code;
DECLARE @his_refused NVARCHAR(200) = :his_refused;
-- Two hosts upgrading at once: UPDLOCK + SERIALIZABLE on the key, as upsert_limit, so the
-- second waits instead of both inserting (2627; tsql-review D8).
BEGIN TRY
    BEGIN TRANSACTION;
    UPDATE dbo.medical_insurance_interfaces WITH (UPDLOCK, SERIALIZABLE)
    SET
        interface_name = @interface_name,
        kind = @kind,
        reversible = @reversible,
        cancel_code = @cancel_code,
        his_refused = @his_refused
    WHERE interface_code = @interface_code;
    IF @@ROWCOUNT = 0
        INSERT INTO dbo.medical_insurance_interfaces (
            interface_code, interface_name, kind, reversible, cancel_code, his_refused
        )
        VALUES (@interface_code, @interface_name, @kind, @reversible, @cancel_code, @his_refused);
    COMMIT TRANSACTION;
END TRY
BEGIN CATCH
    IF @@TRANCOUNT > 0
        ROLLBACK TRANSACTION;
    THROW;
END CATCH;

-- name: list_limits
-- The cluster-wide caps in force (the worker reconciles them with its config at start).
SET NOCOUNT ON;
SELECT
    interface_code,
    max_in_flight
FROM dbo.medical_insurance_limits
ORDER BY interface_code;

-- name: upsert_limit
-- Set one cap in place: a cap is never absent while it is being rewritten, so a concurrent
-- claim can never run unlimited. PostgreSQL's ON CONFLICT as UPDATE, else INSERT, in one
-- short transaction; UPDLOCK + SERIALIZABLE on the key make two workers starting at once
-- wait for each other instead of both inserting (2627). Worker start only, never a hot path.
-- TRY/CATCH rather than SET XACT_ABORT ON, which would outlive this batch on the pooled
-- session.
SET NOCOUNT ON;
DECLARE @interface_code VARCHAR(10) = :interface_code;
DECLARE @max_in_flight INT = :max_in_flight;
BEGIN TRY
    BEGIN TRANSACTION;
    UPDATE dbo.medical_insurance_limits WITH (UPDLOCK, SERIALIZABLE)
    SET max_in_flight = @max_in_flight
    WHERE interface_code = @interface_code;
    IF @@ROWCOUNT = 0
        INSERT INTO dbo.medical_insurance_limits (interface_code, max_in_flight)
        VALUES (@interface_code, @max_in_flight);
    COMMIT TRANSACTION;
END TRY
BEGIN CATCH
    IF @@TRANCOUNT > 0
        ROLLBACK TRANSACTION;
    THROW;
END CATCH;

-- name: delete_limit
-- Drop a cap the config no longer names.
SET NOCOUNT ON;
DECLARE @interface_code VARCHAR(10) = :interface_code;
DELETE FROM dbo.medical_insurance_limits
WHERE interface_code = @interface_code;

-- name: try_cluster_lock
-- Once-per-cluster jobs: a session-level application lock, not waited for. Named by
-- :lock_name (readable in sys.dm_tran_locks); :lock_key is PostgreSQL's advisory-lock number.
SET NOCOUNT ON;
DECLARE @lock_name NVARCHAR(200) = :lock_name;
DECLARE @resource NVARCHAR(255);
DECLARE @rc INT;
SET @resource = N'mi_worker:' + @lock_name;
EXEC @rc = sp_getapplock
    @Resource = @resource,
    @LockMode = 'Exclusive',
    @LockOwner = 'Session',
    @LockTimeout = 0;
SELECT CASE WHEN @rc >= 0 THEN 1 ELSE 0 END AS granted;

-- name: release_cluster_lock
-- Released by the same session right after the job (0, not an error, when it is not held,
-- like pg_advisory_unlock).
SET NOCOUNT ON;
DECLARE @lock_name NVARCHAR(200) = :lock_name;
DECLARE @resource NVARCHAR(255);
DECLARE @rc INT = -999;
SET @resource = N'mi_worker:' + @lock_name;
IF APPLOCK_MODE('public', @resource, 'Session') <> 'NoLock'
    EXEC @rc = sp_releaseapplock @Resource = @resource, @LockOwner = 'Session';
SELECT CASE WHEN @rc >= 0 THEN 1 ELSE 0 END AS released;

-- name: log_error
-- Errors worth a DBA's eye, next to the request they belong to.
SET NOCOUNT ON;
DECLARE @request_id BIGINT = :request_id;
DECLARE @error_code INT = :error_code;
DECLARE @error_message NVARCHAR(MAX) = :error_message;
DECLARE @detail NVARCHAR(MAX) = :detail;
INSERT INTO dbo.medical_insurance_error_log (request_id, error_code, error_message, detail)
VALUES (@request_id, @error_code, @error_message, @detail);

-- ===== for tests and the benchmark only =====
-- not run by the worker

-- name: count_by_status
-- Queue depth by status: `mi-worker status`, the monitors and the tests read it.
SET NOCOUNT ON;
SELECT
    status,
    COUNT(*) AS n
FROM dbo.medical_insurance_requests
GROUP BY status;

-- == dashboard ==
-- The read-only web dashboard (mi_worker/dashboard, issue 16). SELECTs only; run it with a
-- login in mi_dashboard_role (sql/mssql/security.sql: SELECT on the tables it reads and
-- EXECUTE on the monitor procedure, nothing else). Times are UTC text 'yyyy-mm-dd hh:mi:ss'
-- (style 121 whatever the session's DATEFORMAT or LANGUAGE).

-- name: dash_session_read_only
-- SQL Server has no read-only session switch: mi_dashboard_role is what keeps it read-only.
SELECT 1 AS read_only_by_role;

-- name: dash_session_plans
-- Nothing to do: dash_requests_page plans each call with OPTION (RECOMPILE).
SELECT 1 AS plans;

-- name: dash_requests_page
-- One page of the request list, newest first, keyset-paged on the primary key (request_id <
-- :before_id, never OFFSET); every filter is an indexed column (migration 008). OPTION
-- (RECOMPILE) plans each call for the filters actually given, so a filter seeks its index.
SET NOCOUNT ON;
DECLARE @status NVARCHAR(20) = :status;
DECLARE @interface_code VARCHAR(10) = :interface_code;
DECLARE @psn_no VARCHAR(30) = :psn_no;
DECLARE @msgid VARCHAR(30) = :msgid;
DECLARE @his_fee_id VARCHAR(64) = :his_fee_id;
DECLARE @from_text VARCHAR(30) = :from_utc;
DECLARE @to_text VARCHAR(30) = :to_utc;
DECLARE @before_id BIGINT = :before_id;
DECLARE @limit_rows INT = :limit_rows;
DECLARE @from_utc DATETIME2(3) = CONVERT(DATETIME2(3), @from_text, 121);
DECLARE @to_utc DATETIME2(3) = CONVERT(DATETIME2(3), @to_text, 121);
SELECT TOP (@limit_rows)
    r.request_id,
    r.interface_code,
    r.status,
    r.psn_no,
    r.msgid,
    r.his_fee_id,
    r.attempts,
    r.request_time,
    r.response_time,
    r.error_code,
    r.error_message,
    r.parent_request_id,
    r.needs_reversal,
    r.resolved_at
FROM dbo.medical_insurance_requests AS r
WHERE
    (@status IS NULL OR r.status = @status)
    AND (@interface_code IS NULL OR r.interface_code = @interface_code)
    AND (@psn_no IS NULL OR r.psn_no = @psn_no)
    AND (@msgid IS NULL OR r.msgid = @msgid)
    AND (@his_fee_id IS NULL OR r.his_fee_id = @his_fee_id)
    AND (@from_utc IS NULL OR r.request_time >= @from_utc)
    AND (@to_utc IS NULL OR r.request_time < @to_utc)
    AND (@before_id IS NULL OR r.request_id < @before_id)
ORDER BY r.request_id DESC
OPTION (RECOMPILE);

-- name: dash_throughput
-- Calls per time bucket and outcome over the last :hours (bucket 0 = the newest), for the
-- overview's throughput chart; the same view and window as monitor_performance.
SET NOCOUNT ON;
DECLARE @hours INT = :hours;
DECLARE @bucket_seconds INT = :bucket_seconds;
DECLARE @now DATETIME2(3) = SYSUTCDATETIME();
DECLARE @since DATETIME2(3) = DATEADD(HOUR, -@hours, @now);
SELECT
    b.bucket,
    b.result_status,
    COUNT_BIG(*) AS n
FROM (
    SELECT
        DATEDIFF(SECOND, v.request_time, @now) / @bucket_seconds AS bucket,
        v.result_status
    FROM dbo.v_medical_insurance_result AS v
    WHERE v.request_time >= @since
) AS b
GROUP BY b.bucket, b.result_status
ORDER BY b.bucket, b.result_status;

-- name: dash_latency
-- p50 and p95 latency (nearest rank, as monitor_interfaces: the CEILING(p * n)-th latency in
-- ascending order) per interface over the last :hours, for the overview's latency chart.
SET NOCOUNT ON;
DECLARE @hours INT = :hours;
DECLARE @since DATETIME2(3) = DATEADD(HOUR, -@hours, SYSUTCDATETIME());
SELECT
    a.interface_code,
    a.total_calls,
    MAX(CASE WHEN q.rn = CEILING(0.5 * q.n) THEN q.latency_ms END) AS p50_ms,
    MAX(CASE WHEN q.rn = CEILING(0.95 * q.n) THEN q.latency_ms END) AS p95_ms
FROM (
    SELECT
        v.interface_code,
        COUNT_BIG(*) AS total_calls
    FROM dbo.v_medical_insurance_result AS v
    WHERE v.request_time >= @since
    GROUP BY v.interface_code
) AS a
LEFT JOIN (
    SELECT
        l.interface_code,
        l.latency_ms,
        ROW_NUMBER() OVER (PARTITION BY l.interface_code ORDER BY l.latency_ms) AS rn,
        COUNT(*) OVER (PARTITION BY l.interface_code) AS n
    FROM dbo.v_medical_insurance_result AS l
    WHERE l.request_time >= @since AND l.latency_ms IS NOT NULL
) AS q ON a.interface_code = q.interface_code
GROUP BY a.interface_code, a.total_calls
ORDER BY a.total_calls DESC, a.interface_code;

-- name: dash_doubtful
-- Rows a person must look at: UNCERTAIN or NEEDS_MANUAL and not resolved, or COMPLETED but
-- to be reversed, oldest first, with their 2601 reversal rows counted.
SET NOCOUNT ON;
SELECT TOP (500)
    r.request_id,
    r.interface_code,
    r.status,
    r.psn_no,
    r.msgid,
    r.his_fee_id,
    r.attempts,
    r.needs_reversal,
    r.request_time,
    r.response_time,
    r.error_code,
    r.error_message,
    (SELECT COUNT(*) FROM dbo.medical_insurance_requests AS c
        WHERE c.parent_request_id = r.request_id) AS rev_count,
    (SELECT MAX(c.request_id) FROM dbo.medical_insurance_requests AS c
        WHERE c.parent_request_id = r.request_id) AS rev_id
FROM dbo.medical_insurance_requests AS r
WHERE
    (r.status IN (N'UNCERTAIN', N'NEEDS_MANUAL') AND r.resolved_at IS NULL)
    OR r.needs_reversal = 1
ORDER BY r.request_id;

-- name: dash_reconciliation
-- The latest reconciliation (3201) results, newest day first, for the reconciliation page.
SET NOCOUNT ON;
SELECT TOP (200)
    recon_id,
    stmt_date,
    insutype,
    clr_type,
    setl_optins,
    medfee_sumamt,
    fund_pay_sumamt,
    acct_pay,
    setl_cnt,
    stmt_rslt,
    stmt_rslt_dscr,
    request_id,
    created_at
FROM dbo.medical_insurance_reconciliation
ORDER BY stmt_date DESC, recon_id DESC;

-- == worker-managed codes (issue 12) ==

-- name: his_refusal
-- Why the HIS may not call this code (the worker manages it itself), or no row / NULL.
SET NOCOUNT ON;
DECLARE @interface_code VARCHAR(10) = :interface_code;
SELECT his_refused
FROM dbo.medical_insurance_interfaces
WHERE interface_code = @interface_code;

-- == gateway kind (issue 11: never settle against a fake centre by accident) ==

-- name: live_gateway_kinds
-- Live workers with their gateway.kind and TLS verification: FAKE_GATEWAY, MIXED_GATEWAY_KINDS
-- and TLS_VERIFY_OFF alerts, `status` and `doctor` read it.
SET NOCOUNT ON;
DECLARE @down_seconds INT = :down_seconds;
SELECT worker_id, host, gateway_kind, gateway_tls_verified
FROM dbo.sdk_heartbeat
WHERE status = N'RUNNING'
  AND last_heartbeat > DATEADD(SECOND, -@down_seconds, SYSUTCDATETIME())
ORDER BY worker_id;

-- == doctor (issue 11: the go-live preflight) ==

-- name: doctor_db_time
-- The database clock as Unix seconds: `mi-worker doctor` compares it with the host's.
-- (DATEDIFF in seconds from 1970 fits INT until 2038; DATEDIFF_BIG needs 2016.)
SET NOCOUNT ON;
DECLARE @now DATETIME2(3) = SYSUTCDATETIME();
SELECT CAST(DATEDIFF(SECOND, '19700101', @now) AS FLOAT)
       + DATEPART(MILLISECOND, @now) / 1000.0 AS epoch;

-- name: doctor_procedure
-- Is the HIS procedure there and may the HIS role (:his_role, empty = mi_his_caller_role of
-- sql/mssql/security.sql) run it (EXECUTE on the procedure or on schema dbo)? The procedure
-- reaches the tables by ownership chaining, so table_rights is 3 (nothing more needed).
SET NOCOUNT ON;
DECLARE @his_role SYSNAME = :his_role;
IF @his_role IS NULL OR @his_role = N''
    SET @his_role = N'mi_his_caller_role';
SELECT
    CASE WHEN OBJECT_ID(N'dbo.sp_medical_insurance_call_v2', N'P') IS NULL THEN 0 ELSE 1 END
        AS present,
    CASE WHEN DATABASE_PRINCIPAL_ID(@his_role) IS NULL THEN 0 ELSE 1 END AS role_exists,
    (
        SELECT COUNT(*)
        FROM sys.database_permissions AS dp
        WHERE
            dp.grantee_principal_id = DATABASE_PRINCIPAL_ID(@his_role)
            AND dp.permission_name = N'EXECUTE'
            AND dp.state IN ('G', 'W')
            AND (
                (dp.class = 1 AND dp.major_id = OBJECT_ID(N'dbo.sp_medical_insurance_call_v2'))
                OR (dp.class = 3 AND dp.major_id = SCHEMA_ID(N'dbo'))
            )
    ) AS executable,
    3 AS table_rights,
    @his_role AS role_name;

-- == day-two operations: metrics counters, retention ==
-- (retention: a row is moved only when it is terminal (COMPLETED, ERROR, TIMEOUT, REVERSED),
-- not flagged for reversal, older than jobs.retention_days, has no open child (a reversal in
-- progress) and is not evidence of a reconciliation day still unbalanced. UNCERTAIN and
-- NEEDS_MANUAL rows stay, resolved or not.)
-- name: heartbeat_counters
-- This worker's monotonic totals by outcome (metrics read them here, never from the history).
SET NOCOUNT ON;
DECLARE @completed_total BIGINT = :completed_total;
DECLARE @error_total BIGINT = :error_total;
DECLARE @uncertain_total BIGINT = :uncertain_total;
DECLARE @requeued_total BIGINT = :requeued_total;
DECLARE @counters_json NVARCHAR(MAX) = :counters_json;
DECLARE @service_name NVARCHAR(100) = :service_name;
DECLARE @worker_id NVARCHAR(100) = :worker_id;
UPDATE dbo.sdk_heartbeat
SET
    completed_total = @completed_total,
    error_total = @error_total,
    uncertain_total = @uncertain_total,
    requeued_total = @requeued_total,
    counters_json = @counters_json
WHERE service_name = @service_name AND worker_id = @worker_id;

-- name: metrics_workers
-- Every worker's heartbeat row with its counters: the scrape reads one row per process.
SET NOCOUNT ON;
SELECT
    service_name, worker_id, host, status, in_flight, processed_total, completed_total,
    error_total, uncertain_total, requeued_total, counters_json,
    CAST(DATEDIFF(MILLISECOND, last_heartbeat, SYSUTCDATETIME()) AS FLOAT) / 1000.0
        AS age_seconds
FROM dbo.sdk_heartbeat
ORDER BY service_name, worker_id;

-- name: retention_batch
-- The next batch of rows past the retention window, oldest first (ix_mir_request_time keeps
-- this a range read of old rows, however long the history): its request_id bounds.
SET NOCOUNT ON;
DECLARE @retention_days INT = :retention_days;
DECLARE @batch_rows INT = :batch_rows;
SELECT MIN(t.request_id) AS lo, MAX(t.request_id) AS hi, COUNT(*) AS n
FROM (SELECT TOP (@batch_rows) r.request_id FROM dbo.medical_insurance_requests AS r
      WHERE r.status IN (N'COMPLETED', N'ERROR', N'TIMEOUT', N'REVERSED')
  AND r.needs_reversal = 0
  AND r.request_time < DATEADD(day, -@retention_days, SYSUTCDATETIME())
  AND (r.response_time IS NULL OR r.response_time < DATEADD(day, -@retention_days, SYSUTCDATETIME()))
  AND NOT EXISTS (SELECT 1 FROM dbo.medical_insurance_requests c
                  WHERE c.parent_request_id = r.request_id AND c.status IN (N'PENDING', N'PROCESSING', N'UNCERTAIN', N'NEEDS_MANUAL'))
  AND NOT EXISTS (
      SELECT 1 FROM dbo.medical_insurance_reconciliation m
      WHERE (m.stmt_rslt IS NULL OR m.stmt_rslt <> '0')
        AND NOT EXISTS (SELECT 1 FROM dbo.medical_insurance_reconciliation ok
                        WHERE ok.stmt_date = m.stmt_date AND ok.insutype = m.insutype
                          AND ok.clr_type = m.clr_type AND ok.stmt_rslt = '0'
                          AND ok.recon_id > m.recon_id)
        AND (m.request_id = r.request_id
             OR (r.interface_code IN ('2102', '2207', '2207A', '2304', '2103', '2208', '2305')
                 AND r.response_time >= DATEADD(hour, -8, CAST(m.stmt_date AS DATETIME2(3)))
                 AND r.response_time < DATEADD(hour, 16, CAST(m.stmt_date AS DATETIME2(3))))))
      ORDER BY r.request_time, r.request_id) AS t;

-- name: retention_archive
-- Copy a batch into the archive (rows already there are skipped, so a batch interrupted
-- between copy and delete is simply finished by the next run).
SET NOCOUNT ON;
DECLARE @retention_days INT = :retention_days;
DECLARE @lo BIGINT = :lo;
DECLARE @hi BIGINT = :hi;
INSERT INTO dbo.medical_insurance_requests_archive (request_id, interface_code, input_data, status, priority, timeout_seconds, max_retry_count, attempts, psn_no, insuplc_admdvs, idempotency_key, his_fee_id, msgid, worker_id, claim_token, limit_slot, request_time, deadline_at, next_attempt_at, claimed_at, lease_expires_at, response_time, infcode, response_data, error_code, error_message, attempt_log, needs_reversal, parent_request_id, resolved_at, resolved_by, resolution_note, archived_at)
SELECT r.request_id, r.interface_code, r.input_data, r.status, r.priority, r.timeout_seconds, r.max_retry_count, r.attempts, r.psn_no, r.insuplc_admdvs, r.idempotency_key, r.his_fee_id, r.msgid, r.worker_id, r.claim_token, r.limit_slot, r.request_time, r.deadline_at, r.next_attempt_at, r.claimed_at, r.lease_expires_at, r.response_time, r.infcode, r.response_data, r.error_code, r.error_message, r.attempt_log, r.needs_reversal, r.parent_request_id, r.resolved_at, r.resolved_by, r.resolution_note, SYSUTCDATETIME()
FROM dbo.medical_insurance_requests AS r
WHERE r.request_id BETWEEN @lo AND @hi
  AND r.status IN (N'COMPLETED', N'ERROR', N'TIMEOUT', N'REVERSED')
  AND r.needs_reversal = 0
  AND r.request_time < DATEADD(day, -@retention_days, SYSUTCDATETIME())
  AND (r.response_time IS NULL OR r.response_time < DATEADD(day, -@retention_days, SYSUTCDATETIME()))
  AND NOT EXISTS (SELECT 1 FROM dbo.medical_insurance_requests c
                  WHERE c.parent_request_id = r.request_id AND c.status IN (N'PENDING', N'PROCESSING', N'UNCERTAIN', N'NEEDS_MANUAL'))
  AND NOT EXISTS (
      SELECT 1 FROM dbo.medical_insurance_reconciliation m
      WHERE (m.stmt_rslt IS NULL OR m.stmt_rslt <> '0')
        AND NOT EXISTS (SELECT 1 FROM dbo.medical_insurance_reconciliation ok
                        WHERE ok.stmt_date = m.stmt_date AND ok.insutype = m.insutype
                          AND ok.clr_type = m.clr_type AND ok.stmt_rslt = '0'
                          AND ok.recon_id > m.recon_id)
        AND (m.request_id = r.request_id
             OR (r.interface_code IN ('2102', '2207', '2207A', '2304', '2103', '2208', '2305')
                 AND r.response_time >= DATEADD(hour, -8, CAST(m.stmt_date AS DATETIME2(3)))
                 AND r.response_time < DATEADD(hour, 16, CAST(m.stmt_date AS DATETIME2(3))))))
  AND NOT EXISTS (SELECT 1 FROM dbo.medical_insurance_requests_archive AS a
                  WHERE a.request_id = r.request_id);

-- name: retention_delete
-- Remove a batch from the live table: with :archived = 1 only rows whose archive copy exists.
SET NOCOUNT ON;
DECLARE @retention_days INT = :retention_days;
DECLARE @lo BIGINT = :lo;
DECLARE @hi BIGINT = :hi;
DECLARE @archived INT = :archived;
DELETE FROM dbo.medical_insurance_requests
OUTPUT deleted.request_id
WHERE request_id IN (
    SELECT r.request_id FROM dbo.medical_insurance_requests AS r
    WHERE r.request_id BETWEEN @lo AND @hi
  AND r.status IN (N'COMPLETED', N'ERROR', N'TIMEOUT', N'REVERSED')
  AND r.needs_reversal = 0
  AND r.request_time < DATEADD(day, -@retention_days, SYSUTCDATETIME())
  AND (r.response_time IS NULL OR r.response_time < DATEADD(day, -@retention_days, SYSUTCDATETIME()))
  AND NOT EXISTS (SELECT 1 FROM dbo.medical_insurance_requests c
                  WHERE c.parent_request_id = r.request_id AND c.status IN (N'PENDING', N'PROCESSING', N'UNCERTAIN', N'NEEDS_MANUAL'))
  AND NOT EXISTS (
      SELECT 1 FROM dbo.medical_insurance_reconciliation m
      WHERE (m.stmt_rslt IS NULL OR m.stmt_rslt <> '0')
        AND NOT EXISTS (SELECT 1 FROM dbo.medical_insurance_reconciliation ok
                        WHERE ok.stmt_date = m.stmt_date AND ok.insutype = m.insutype
                          AND ok.clr_type = m.clr_type AND ok.stmt_rslt = '0'
                          AND ok.recon_id > m.recon_id)
        AND (m.request_id = r.request_id
             OR (r.interface_code IN ('2102', '2207', '2207A', '2304', '2103', '2208', '2305')
                 AND r.response_time >= DATEADD(hour, -8, CAST(m.stmt_date AS DATETIME2(3)))
                 AND r.response_time < DATEADD(hour, 16, CAST(m.stmt_date AS DATETIME2(3))))))
  AND (@archived = 0 OR EXISTS (SELECT 1 FROM dbo.medical_insurance_requests_archive AS a
                                WHERE a.request_id = r.request_id)));

-- name: reconciliation_days
-- China days from :since_date on with at least one 3201 the centre answered ('ERROR' rows are
-- calls that failed): the catch-up of a missed daily reconciliation runs the other days.
SET NOCOUNT ON;
DECLARE @since_date DATE = :since_date;
SELECT DISTINCT stmt_date FROM dbo.medical_insurance_reconciliation
WHERE stmt_date >= @since_date AND stmt_rslt <> N'ERROR'
ORDER BY stmt_date;

-- ===== async calls =====
-- sp_medical_insurance_submit_v2 / _result_v2 (submit_procedure, result_procedure) or, on
-- SQLite, their steps run by mi_worker/his_async.py

-- name: submit_procedure
-- `mi-worker submit` goes through the HIS procedure itself, exactly as the HIS does; pyodbc
-- cannot read OUTPUT parameters, so the batch SELECTs them.
SET NOCOUNT ON;
DECLARE @interface_code VARCHAR(10) = :interface_code;
DECLARE @input_data NVARCHAR(MAX) = :input_data;
DECLARE @timeout INT = :timeout;
DECLARE @retry_count INT = :retry_count;
DECLARE @priority INT = :priority;
DECLARE @idempotency_key NVARCHAR(100) = :idempotency_key;
DECLARE @his_fee_id NVARCHAR(64) = :his_fee_id;
DECLARE @psn_no NVARCHAR(30) = :psn_no;
DECLARE @insuplc_admdvs NVARCHAR(6) = :insuplc_admdvs;
DECLARE @rid BIGINT;
DECLARE @res NVARCHAR(MAX);
DECLARE @ec INT;
DECLARE @em NVARCHAR(500);
EXEC dbo.sp_medical_insurance_submit_v2
    @interface_code = @interface_code,
    @input_data = @input_data,
    @timeout = @timeout,
    @retry_count = @retry_count,
    @request_id = @rid OUTPUT,
    @result = @res OUTPUT,
    @error_code = @ec OUTPUT,
    @error_message = @em OUTPUT,
    @priority = @priority,
    @idempotency_key = @idempotency_key,
    @his_fee_id = @his_fee_id,
    @psn_no = @psn_no,
    @insuplc_admdvs = @insuplc_admdvs;
SELECT
    @rid AS request_id,
    @res AS result,
    @ec AS error_code,
    @em AS error_message;

-- name: result_procedure
-- `mi-worker result` goes through the HIS procedure itself, exactly as the HIS does.
SET NOCOUNT ON;
DECLARE @request_id BIGINT = :request_id;
DECLARE @wait_ms INT = :wait_ms;
DECLARE @poll_ms INT = :poll_ms;
DECLARE @st NVARCHAR(20);
DECLARE @res NVARCHAR(MAX);
DECLARE @ec INT;
DECLARE @em NVARCHAR(500);
EXEC dbo.sp_medical_insurance_result_v2
    @request_id = @request_id,
    @wait_ms = @wait_ms,
    @status = @st OUTPUT,
    @result = @res OUTPUT,
    @error_code = @ec OUTPUT,
    @error_message = @em OUTPUT,
    @poll_ms = @poll_ms;
SELECT
    @st AS status,
    @res AS result,
    @ec AS error_code,
    @em AS error_message;

-- name: enqueue_async
-- What the submit procedure inserts: a PENDING row nobody waits on, with its own deadline.
SET NOCOUNT ON;
DECLARE @interface_code VARCHAR(10) = :interface_code;
DECLARE @input_data NVARCHAR(MAX) = :input_data;
DECLARE @priority INT = :priority;
DECLARE @timeout_seconds INT = :timeout_seconds;
DECLARE @max_retry_count INT = :max_retry_count;
DECLARE @psn_no NVARCHAR(30) = :psn_no;
DECLARE @insuplc_admdvs NVARCHAR(6) = :insuplc_admdvs;
DECLARE @idempotency_key NVARCHAR(100) = :idempotency_key;
DECLARE @his_fee_id NVARCHAR(64) = :his_fee_id;
DECLARE @u TABLE (request_id BIGINT NOT NULL);
INSERT INTO dbo.medical_insurance_requests (
    interface_code, input_data, status, priority, timeout_seconds, max_retry_count, psn_no,
    insuplc_admdvs, idempotency_key, his_fee_id, deadline_at, async_call
)
OUTPUT inserted.request_id INTO @u (request_id)
VALUES (
    @interface_code, @input_data, N'PENDING', @priority, @timeout_seconds, @max_retry_count,
    @psn_no, @insuplc_admdvs, @idempotency_key, @his_fee_id,
    DATEADD(SECOND, @timeout_seconds, SYSUTCDATETIME()), 1
);
SELECT request_id FROM @u;

-- name: poll_async
-- What the result procedure polls: the caller-facing state of a submitted request only.
SET NOCOUNT ON;
DECLARE @request_id BIGINT = :request_id;
SELECT
    v.request_id,
    v.status,
    v.result_status,
    v.response_data,
    v.error_code,
    v.error_message,
    CASE WHEN SYSUTCDATETIME() >= v.deadline_at THEN 1 ELSE 0 END AS past_deadline
FROM dbo.v_medical_insurance_result AS v
INNER JOIN dbo.medical_insurance_requests AS r ON v.request_id = r.request_id
WHERE v.request_id = @request_id AND r.async_call = 1;

-- ===== files and catalogue sync =====
-- 9101 / 9102 files (mi_worker/files/transfer.py) and the 1301-1319 loads (catalog_sync.py)

-- name: record_file
-- One file exchanged with the centre: where it is and its sha256.
SET NOCOUNT ON;
DECLARE @direction VARCHAR(4) = :direction;
DECLARE @purpose VARCHAR(10) = :purpose;
DECLARE @file_qury_no NVARCHAR(100) = :file_qury_no;
DECLARE @filename NVARCHAR(200) = :filename;
DECLARE @local_path NVARCHAR(1000) = :local_path;
DECLARE @size_bytes BIGINT = :size_bytes;
DECLARE @sha256 CHAR(64) = :sha256;
DECLARE @dld_endtime NVARCHAR(30) = :dld_endtime;
DECLARE @u TABLE (file_id BIGINT NOT NULL);
INSERT INTO dbo.medical_insurance_files (
    direction, purpose, file_qury_no, filename, local_path, size_bytes, sha256, dld_endtime
)
OUTPUT inserted.file_id INTO @u (file_id)
VALUES (
    @direction, @purpose, @file_qury_no, @filename, @local_path, @size_bytes, @sha256,
    @dld_endtime
);
SELECT file_id FROM @u;

-- name: catalog_hashes
-- Every loaded row's hash of one catalogue: a rerun writes only new or changed rows.
SET NOCOUNT ON;
DECLARE @catalog_code VARCHAR(4) = :catalog_code;
SELECT
    item_code,
    row_hash
FROM dbo.medical_insurance_catalog
WHERE catalog_code = @catalog_code;

-- name: catalog_upsert_row
-- One catalogue row inserted or, when its hash changed, rewritten.
SET NOCOUNT ON;
DECLARE @catalog_code VARCHAR(4) = :catalog_code;
DECLARE @item_code NVARCHAR(100) = :item_code;
DECLARE @item_name NVARCHAR(MAX) = :item_name;
DECLARE @ver NVARCHAR(60) = :ver;
DECLARE @updt_time NVARCHAR(30) = :updt_time;
DECLARE @row_hash CHAR(64) = :row_hash;
DECLARE @row_data NVARCHAR(MAX) = :row_data;
UPDATE dbo.medical_insurance_catalog
SET
    item_name = @item_name,
    ver = @ver,
    updt_time = @updt_time,
    row_hash = @row_hash,
    row_data = @row_data,
    loaded_at = SYSUTCDATETIME()
WHERE catalog_code = @catalog_code AND item_code = @item_code AND row_hash <> @row_hash;
IF NOT EXISTS (
    SELECT 1 FROM dbo.medical_insurance_catalog
    WHERE catalog_code = @catalog_code AND item_code = @item_code
)
    INSERT INTO dbo.medical_insurance_catalog (
        catalog_code, item_code, item_name, ver, updt_time, row_hash, row_data
    )
    VALUES (@catalog_code, @item_code, @item_name, @ver, @updt_time, @row_hash, @row_data);

-- name: catalog_upsert_batch
-- Many catalogue rows in one statement (:rows: a JSON array of catalog_upsert_row's fields);
-- needs OPENJSON (2016+, compatibility level 130+): elsewhere it throws 50021 before touching
-- any row and the loader writes with catalog_upsert_row.
SET NOCOUNT ON;
DECLARE @rows NVARCHAR(MAX) = :rows;
DECLARE @compat INT;
SELECT @compat = compatibility_level
FROM sys.databases
WHERE database_id = DB_ID();
IF COALESCE(@compat, 0) < 130
    THROW 50021, N'mi-worker: catalog_upsert_batch needs OPENJSON (SQL Server 2016+, database compatibility level 130+); write rows with catalog_upsert_row', 1;
EXEC sp_executesql
    N'SET NOCOUNT ON;
    DECLARE @x TABLE (catalog_code VARCHAR(4), item_code NVARCHAR(100), item_name NVARCHAR(MAX),
        ver NVARCHAR(60), updt_time NVARCHAR(30), row_hash CHAR(64), row_data NVARCHAR(MAX));
    INSERT INTO @x SELECT * FROM OPENJSON(@rows) WITH (catalog_code VARCHAR(4),
        item_code NVARCHAR(100), item_name NVARCHAR(MAX), ver NVARCHAR(60),
        updt_time NVARCHAR(30), row_hash CHAR(64), row_data NVARCHAR(MAX));
    UPDATE t SET item_name = x.item_name, ver = x.ver, updt_time = x.updt_time,
        row_hash = x.row_hash, row_data = x.row_data, loaded_at = SYSUTCDATETIME()
    FROM dbo.medical_insurance_catalog AS t
    INNER JOIN @x AS x ON t.catalog_code = x.catalog_code AND t.item_code = x.item_code
    WHERE t.row_hash <> x.row_hash;
    INSERT INTO dbo.medical_insurance_catalog (catalog_code, item_code, item_name, ver,
        updt_time, row_hash, row_data)
    SELECT x.catalog_code, x.item_code, x.item_name, x.ver, x.updt_time, x.row_hash, x.row_data
    FROM @x AS x
    WHERE NOT EXISTS (SELECT 1 FROM dbo.medical_insurance_catalog AS t
                      WHERE t.catalog_code = x.catalog_code AND t.item_code = x.item_code);',
    N'@rows NVARCHAR(MAX)',
    @rows = @rows;

-- name: catalog_last_version
-- The version the last successful sync of a catalogue reached (the next asks from there).
SET NOCOUNT ON;
DECLARE @catalog_code VARCHAR(4) = :catalog_code;
SELECT TOP (1) ver_to
FROM dbo.medical_insurance_catalog_sync
WHERE catalog_code = @catalog_code AND outcome = 'OK'
ORDER BY sync_id DESC;

-- name: catalog_sync_start
-- A sync run begins (RUNNING until finished; a crashed run stays RUNNING, the next asks again).
SET NOCOUNT ON;
DECLARE @catalog_code VARCHAR(4) = :catalog_code;
DECLARE @ver_from NVARCHAR(60) = :ver_from;
DECLARE @u TABLE (sync_id BIGINT NOT NULL);
INSERT INTO dbo.medical_insurance_catalog_sync (catalog_code, ver_from)
OUTPUT inserted.sync_id INTO @u (sync_id)
VALUES (@catalog_code, @ver_from);
SELECT sync_id FROM @u;

-- name: catalog_sync_finish
-- A sync run ends OK or FAILED with its counts.
SET NOCOUNT ON;
DECLARE @sync_id BIGINT = :sync_id;
DECLARE @outcome VARCHAR(10) = :outcome;
DECLARE @ver_to NVARCHAR(60) = :ver_to;
DECLARE @file_qury_no NVARCHAR(100) = :file_qury_no;
DECLARE @file_sha256 CHAR(64) = :file_sha256;
DECLARE @bytes BIGINT = :bytes;
DECLARE @rows_read INT = :rows_read;
DECLARE @rows_inserted INT = :rows_inserted;
DECLARE @rows_updated INT = :rows_updated;
DECLARE @rows_unchanged INT = :rows_unchanged;
DECLARE @duration_ms INT = :duration_ms;
DECLARE @error_message NVARCHAR(MAX) = :error_message;
UPDATE dbo.medical_insurance_catalog_sync
SET
    finished_at = SYSUTCDATETIME(),
    outcome = @outcome,
    ver_to = @ver_to,
    file_qury_no = @file_qury_no,
    file_sha256 = @file_sha256,
    bytes = @bytes,
    rows_read = @rows_read,
    rows_inserted = @rows_inserted,
    rows_updated = @rows_updated,
    rows_unchanged = @rows_unchanged,
    duration_ms = @duration_ms,
    error_message = @error_message
WHERE sync_id = @sync_id;

-- name: catalog_sync_history
-- The latest sync runs, newest first (monitoring data type 'catalog', `mi-worker catalog status`).
SET NOCOUNT ON;
DECLARE @limit INT = :limit;
SELECT TOP (@limit)
    sync_id,
    catalog_code,
    started_at,
    finished_at,
    outcome,
    ver_from,
    ver_to,
    bytes,
    rows_read,
    rows_inserted,
    rows_updated,
    rows_unchanged,
    duration_ms,
    error_message
FROM dbo.medical_insurance_catalog_sync
ORDER BY sync_id DESC;

-- ===== detail reconciliation (对明细账) =====
-- 3202 after a 3201 mismatch (mi_worker/reconcile_detail.py), `mi-worker reconcile --fix`

-- name: insert_recon_detail
-- One settlement the 3202 result says the centre and the hospital disagree on.
SET NOCOUNT ON;
DECLARE @stmt_date DATE = :stmt_date;
DECLARE @insutype VARCHAR(6) = :insutype;
DECLARE @clr_type VARCHAR(6) = :clr_type;
DECLARE @setl_id NVARCHAR(50) = :setl_id;
DECLARE @mdtrt_id NVARCHAR(50) = :mdtrt_id;
DECLARE @psn_no NVARCHAR(50) = :psn_no;
DECLARE @msgid VARCHAR(30) = :msgid;
DECLARE @stmt_rslt VARCHAR(6) = :stmt_rslt;
DECLARE @memo NVARCHAR(MAX) = :memo;
DECLARE @medfee_sumamt DECIMAL(16, 2) = :medfee_sumamt;
DECLARE @fund_pay_sumamt DECIMAL(16, 2) = :fund_pay_sumamt;
DECLARE @acct_pay DECIMAL(16, 2) = :acct_pay;
DECLARE @request_id BIGINT = :request_id;
DECLARE @u TABLE (detail_id BIGINT NOT NULL);
INSERT INTO dbo.medical_insurance_recon_detail (
    stmt_date, insutype, clr_type, setl_id, mdtrt_id, psn_no, msgid, stmt_rslt, memo,
    medfee_sumamt, fund_pay_sumamt, acct_pay, request_id
)
OUTPUT inserted.detail_id INTO @u (detail_id)
VALUES (
    @stmt_date, @insutype, @clr_type, @setl_id, @mdtrt_id, @psn_no, @msgid, @stmt_rslt, @memo,
    @medfee_sumamt, @fund_pay_sumamt, @acct_pay, @request_id
);
SELECT detail_id FROM @u;

-- name: recon_detail_for_day
-- A day's mismatched settlements (reconcile --date, --fix).
SET NOCOUNT ON;
DECLARE @stmt_date DATE = :stmt_date;
SELECT
    detail_id,
    stmt_date,
    insutype,
    clr_type,
    setl_id,
    mdtrt_id,
    psn_no,
    msgid,
    stmt_rslt,
    memo,
    medfee_sumamt,
    fund_pay_sumamt,
    acct_pay,
    request_id,
    fix_request_id
FROM dbo.medical_insurance_recon_detail
WHERE stmt_date = @stmt_date
ORDER BY detail_id;

-- name: set_recon_fix
-- The 2601 an operator queued for a 中心多 row (asked once: a row with one is not offered again).
SET NOCOUNT ON;
DECLARE @fix_request_id BIGINT = :fix_request_id;
DECLARE @detail_id BIGINT = :detail_id;
UPDATE dbo.medical_insurance_recon_detail
SET fix_request_id = @fix_request_id
WHERE detail_id = @detail_id AND fix_request_id IS NULL;

-- name: request_by_msgid
-- The request row that sent a msgid (is a centre-only settlement ours, and did the HIS get it?).
SET NOCOUNT ON;
DECLARE @msgid VARCHAR(30) = :msgid;
SELECT
    request_id,
    interface_code,
    status,
    psn_no,
    insuplc_admdvs,
    msgid
FROM dbo.medical_insurance_requests
WHERE msgid = @msgid;

-- == workflows (issue 14: a settlement saga on the database) ==

-- name: call_workflow_procedure
-- `mi-worker call --workflow` goes through the HIS procedure itself, exactly as the HIS does;
-- pyodbc cannot read OUTPUT parameters, so the batch SELECTs them.
SET NOCOUNT ON;
DECLARE @workflow NVARCHAR(64) = :workflow;
DECLARE @input_data NVARCHAR(MAX) = :input_data;
DECLARE @timeout INT = :timeout;
DECLARE @idempotency_key NVARCHAR(100) = :idempotency_key;
DECLARE @his_fee_id NVARCHAR(64) = :his_fee_id;
DECLARE @psn_no NVARCHAR(30) = :psn_no;
DECLARE @poll_ms INT = :poll_ms;
DECLARE @rid BIGINT;
DECLARE @res NVARCHAR(MAX);
DECLARE @ec INT;
DECLARE @em NVARCHAR(500);
EXEC dbo.sp_medical_insurance_workflow_v2
    @workflow = @workflow,
    @input_data = @input_data,
    @timeout = @timeout,
    @request_id = @rid OUTPUT,
    @result = @res OUTPUT,
    @error_code = @ec OUTPUT,
    @error_message = @em OUTPUT,
    @idempotency_key = @idempotency_key,
    @his_fee_id = @his_fee_id,
    @psn_no = @psn_no,
    @poll_ms = @poll_ms;
SELECT
    @rid AS request_id,
    @res AS result,
    @ec AS error_code,
    @em AS error_message;

-- name: wf_start
-- What sp_medical_insurance_workflow_v2 inserts; tests seed with it.
SET NOCOUNT ON;
DECLARE @timeout_seconds INT = :timeout_seconds;
DECLARE @workflow NVARCHAR(64) = :workflow;
DECLARE @input_data NVARCHAR(MAX) = :input_data;
DECLARE @idempotency_key NVARCHAR(100) = :idempotency_key;
DECLARE @his_fee_id NVARCHAR(64) = :his_fee_id;
DECLARE @psn_no NVARCHAR(30) = :psn_no;
DECLARE @u TABLE (workflow_id BIGINT NOT NULL);
INSERT INTO dbo.medical_insurance_workflows (
    name, input_data, idempotency_key, his_fee_id, psn_no, timeout_seconds, deadline_at,
    error_code, error_message
)
OUTPUT inserted.workflow_id INTO @u (workflow_id)
VALUES (
    @workflow, @input_data, @idempotency_key, @his_fee_id, @psn_no, @timeout_seconds,
    DATEADD(SECOND, @timeout_seconds, SYSUTCDATETIME()), -1005,
    N'请求超时: workflow not started yet'
);
SELECT workflow_id FROM @u;

-- name: wf_find_key
-- Idempotency: the latest workflow of a key that still stands (COMPENSATED frees the key).
DECLARE @idempotency_key NVARCHAR(100) = :idempotency_key;
SELECT TOP (1) workflow_id, status, wf_result, error_code, error_message
FROM dbo.medical_insurance_workflows
WHERE idempotency_key = @idempotency_key AND status <> N'COMPENSATED'
ORDER BY workflow_id DESC;

-- name: wf_get
-- One workflow with whether its HIS deadline has passed (database clock).
DECLARE @workflow_id BIGINT = :workflow_id;
SELECT w.*, CASE WHEN SYSUTCDATETIME() >= w.deadline_at THEN 1 ELSE 0 END AS past_deadline
FROM dbo.medical_insurance_workflows w
WHERE w.workflow_id = @workflow_id;

-- name: wf_open
-- The advance job's work list: workflows still running or compensating, oldest first.
DECLARE @limit INT = :limit;
SELECT TOP (@limit) w.*,
    CASE WHEN SYSUTCDATETIME() >= w.deadline_at THEN 1 ELSE 0 END AS past_deadline
FROM dbo.medical_insurance_workflows w
WHERE w.status IN (N'RUNNING', N'COMPENSATING')
ORDER BY w.workflow_id;

-- name: wf_steps
-- Every request row of one workflow (steps n > 0, undos -n), what the engine decides from.
DECLARE @workflow_id BIGINT = :workflow_id;
SELECT request_id, workflow_step, interface_code, status, input_data, response_data,
       error_code, error_message, needs_reversal, msgid
FROM dbo.medical_insurance_requests
WHERE workflow_id = @workflow_id
ORDER BY workflow_step;

-- name: wf_enqueue_step
-- One step (or undo) as an ordinary request row; the unique (workflow_id, workflow_step)
-- index makes a second enqueue by a concurrent advancer fail instead of sending twice.
SET NOCOUNT ON;
DECLARE @timeout_seconds INT = :timeout_seconds;
DECLARE @interface_code VARCHAR(10) = :interface_code;
DECLARE @input_data NVARCHAR(MAX) = :input_data;
DECLARE @priority INT = :priority;
DECLARE @max_retry_count INT = :max_retry_count;
DECLARE @psn_no NVARCHAR(30) = :psn_no;
DECLARE @insuplc_admdvs NVARCHAR(6) = :insuplc_admdvs;
DECLARE @his_fee_id NVARCHAR(64) = :his_fee_id;
DECLARE @workflow_id BIGINT = :workflow_id;
DECLARE @workflow_step INT = :workflow_step;
DECLARE @u TABLE (request_id BIGINT NOT NULL);
INSERT INTO dbo.medical_insurance_requests (
    interface_code, input_data, status, priority, timeout_seconds, max_retry_count, psn_no,
    insuplc_admdvs, his_fee_id, workflow_id, workflow_step, deadline_at
)
OUTPUT inserted.request_id INTO @u (request_id)
VALUES (
    @interface_code, @input_data, N'PENDING', @priority, @timeout_seconds, @max_retry_count,
    @psn_no, @insuplc_admdvs, @his_fee_id, @workflow_id, @workflow_step,
    DATEADD(SECOND, @timeout_seconds, SYSUTCDATETIME())
);
SELECT request_id FROM @u;

-- name: wf_update
-- Move a workflow, only from the state the engine saw (a concurrent advancer wins) and never
-- out of a final state; a compensation never goes back to RUNNING or to COMPLETED.
SET NOCOUNT ON;
DECLARE @status NVARCHAR(30) = :status;
DECLARE @current_step INT = :current_step;
DECLARE @wf_definition NVARCHAR(MAX) = :wf_definition;
DECLARE @wf_result NVARCHAR(MAX) = :wf_result;
DECLARE @error_code INT = :error_code;
DECLARE @error_message NVARCHAR(MAX) = :error_message;
DECLARE @reason_code INT = :reason_code;
DECLARE @reason NVARCHAR(MAX) = :reason;
DECLARE @workflow_id BIGINT = :workflow_id;
DECLARE @expected_status NVARCHAR(30) = :expected_status;
UPDATE dbo.medical_insurance_workflows
SET status = @status, current_step = @current_step,
    wf_definition = COALESCE(@wf_definition, wf_definition), wf_result = COALESCE(@wf_result, wf_result),
    error_code = @error_code, error_message = @error_message,
    reason_code = COALESCE(@reason_code, reason_code), reason = COALESCE(@reason, reason),
    updated_at = SYSUTCDATETIME(),
    finished_at = CASE WHEN @status IN (N'COMPLETED', N'COMPENSATED', N'FAILED_NEEDS_MANUAL')
                       THEN SYSUTCDATETIME() END
OUTPUT inserted.workflow_id
WHERE workflow_id = @workflow_id AND status = @expected_status
  AND status IN (N'RUNNING', N'COMPENSATING')
  AND (status = N'RUNNING' OR @status IN (N'COMPENSATING', N'COMPENSATED', N'FAILED_NEEDS_MANUAL'));

-- == wait plan (issue 17: the HIS procedure's first poll timed from the interface's latency) ==
-- name: record_interface_latency
-- A worker's INSERT-to-result median for one interface (mi_worker/wait_plan.py), read by
-- sp_medical_insurance_call_v2. An interface missing from the catalogue table gets no
-- estimate (its callers keep the fixed schedule).
SET NOCOUNT ON;
DECLARE @interface_code VARCHAR(10) = :interface_code;
DECLARE @expected_ms INT = :expected_ms;
UPDATE dbo.medical_insurance_interfaces
SET expected_ms = @expected_ms, expected_at = SYSUTCDATETIME()
WHERE interface_code = @interface_code;

-- name: interface_wait_ms
-- The estimate, as the procedure reads it: NULL when unknown or older than 600 s
-- (wait_plan.STALE_SECONDS).
SET NOCOUNT ON;
DECLARE @interface_code VARCHAR(10) = :interface_code;
SELECT (SELECT i.expected_ms FROM dbo.medical_insurance_interfaces AS i
        WHERE i.interface_code = @interface_code AND i.expected_ms > 0
          AND i.expected_at > DATEADD(SECOND, -600, SYSUTCDATETIME())) AS expected_ms;
