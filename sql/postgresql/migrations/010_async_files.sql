-- Issue 15: calls that do not wait (sp_medical_insurance_submit_v2 / _result_v2).
--
-- An async row is an ordinary request row with async_call = 1: the same claim, retry, lease
-- and reversal rules, but nobody waits on it, so it carries its own deadline (the submit's
-- p_timeout, default 86400 s = 24 h, at most 7 days) instead of a counter caller's 30 s. It
-- ends TIMEOUT only when that deadline passes before a worker sent it (the expire sweep, or
-- a result call that finds it so).
--
-- As in 005, the procedures stay SECURITY INVOKER (submit COMMITs so the row is visible to
-- the workers) and touch no table; the SECURITY DEFINER functions below do (search_path
-- pinned), and security.sql grants the HIS role EXECUTE on them only:
--   mi_his_enqueue_async  INSERT the PENDING async row; returns its id
--   mi_his_result         the view's row of an async request (a sync request's id reads as
--                         unknown: the HIS reads submitted rows only, never a counter call's)
--   mi_his_expire_async   TIMEOUT an async row still PENDING past its deadline

ALTER TABLE medical_insurance_requests ADD COLUMN IF NOT EXISTS async_call smallint NOT NULL
    DEFAULT 0;

CREATE OR REPLACE FUNCTION mi_his_enqueue_async(
    p_interface_code  varchar,
    p_input_data      text,
    p_priority        integer,
    p_timeout         integer,
    p_retry_count     integer,
    p_psn_no          varchar,
    p_insuplc_admdvs  varchar,
    p_idempotency_key varchar,
    p_his_fee_id      varchar,
    OUT o_request_id    bigint,
    OUT o_error_code    integer,
    OUT o_error_message text
)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
AS $$
BEGIN
    o_error_code := 0;
    o_error_message := '';
    BEGIN
        INSERT INTO medical_insurance_requests (interface_code, input_data, status, priority,
            timeout_seconds, max_retry_count, psn_no, insuplc_admdvs, idempotency_key,
            his_fee_id, deadline_at, async_call)
        VALUES (p_interface_code, p_input_data, 'PENDING', COALESCE(p_priority, 5), p_timeout,
            p_retry_count, NULLIF(p_psn_no, ''), NULLIF(p_insuplc_admdvs, ''), p_idempotency_key,
            p_his_fee_id, clock_timestamp() + make_interval(secs => p_timeout), 1)
        RETURNING request_id INTO o_request_id;
    EXCEPTION
        WHEN unique_violation THEN
            o_request_id := NULL;
            o_error_code := -1008;
            o_error_message := '重复请求: idempotency key ' || COALESCE(p_idempotency_key, '')
                               || ' is already in flight';
        WHEN OTHERS THEN
            o_request_id := NULL;
            o_error_code := -1003;
            o_error_message := '入队失败: could not enqueue: ' || SQLERRM;
            INSERT INTO medical_insurance_error_log (request_id, error_code, error_message, detail)
            VALUES (NULL, -1003, o_error_message, SQLSTATE);
    END;
END;
$$;

CREATE OR REPLACE FUNCTION mi_his_result(p_request_id bigint)
RETURNS TABLE (o_status text, o_result_status text, o_response_data text, o_error_code integer,
               o_error_message text, o_past_deadline integer)
LANGUAGE sql STABLE SECURITY DEFINER
AS $$
    SELECT v.status::text, v.result_status::text, v.response_data, v.error_code, v.error_message,
           CASE WHEN clock_timestamp() >= v.deadline_at THEN 1 ELSE 0 END
      FROM v_medical_insurance_result v
      JOIN medical_insurance_requests r ON r.request_id = v.request_id
     WHERE v.request_id = p_request_id AND r.async_call = 1;
$$;

CREATE OR REPLACE FUNCTION mi_his_expire_async(p_request_id bigint)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
AS $$
    UPDATE medical_insurance_requests r
       SET status = 'TIMEOUT', response_time = clock_timestamp(), error_code = -1005,
           error_message = '请求超时: no worker sent the submitted request within its deadline'
     WHERE r.request_id = p_request_id AND r.async_call = 1 AND r.status = 'PENDING'
       AND r.deadline_at <= clock_timestamp();
$$;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'mi_his_enqueue_async(varchar, text, integer, integer, integer, varchar, varchar, '
            || 'varchar, varchar)',
        'mi_his_result(bigint)', 'mi_his_expire_async(bigint)'
    ] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_temp', f, current_schema());
    END LOOP;
END;
$$;

-- The call procedure's inputs and checks; p_timeout is the row's own deadline in seconds
-- (NULL: 86400), 1..604800. Returns at once: request_id with error_code 0, or the codes of
-- the call procedure (-1001, -1002, -1003, -1006, -1007/-1008 for a repeated key; a key whose
-- call completed answers 0 with that request's id and result).
CREATE OR REPLACE PROCEDURE sp_medical_insurance_submit_v2(
    p_interface_code  varchar,
    p_input_data      text,
    p_timeout         integer,
    p_retry_count     integer,
    INOUT request_id    bigint,
    INOUT result        text,
    INOUT error_code    integer,
    INOUT error_message text,
    p_priority        integer DEFAULT 5,
    p_idempotency_key varchar DEFAULT NULL,
    p_his_fee_id      varchar DEFAULT NULL,
    p_psn_no          varchar DEFAULT NULL,
    p_insuplc_admdvs  varchar DEFAULT NULL
)
LANGUAGE plpgsql
AS $$
DECLARE
    v_doc        jsonb;
    v_timeout    integer := COALESCE(p_timeout, 86400);
    v_retry      integer := COALESCE(p_retry_count, 3);
    v_key        varchar := NULLIF(btrim(p_idempotency_key), '');
    v_fee_id     varchar := NULLIF(btrim(p_his_fee_id), '');
    v_psn_in     varchar := NULLIF(btrim(p_psn_no), '');
    v_admdvs_in  varchar := NULLIF(btrim(p_insuplc_admdvs), '');
    v_refused    text;
    v_psn        varchar(30);
    v_admdvs     varchar(6);
    v_ec         integer;
    v_em         text;
    v_existing   record;
BEGIN
    request_id := NULL;
    result := NULL;
    error_code := 0;
    error_message := '';

    -- -1006: as in the call procedure (the COMMIT below needs autocommit).
    IF txid_current_if_assigned() IS NOT NULL
       OR statement_timestamp() - transaction_timestamp() > interval '1 second'
       OR current_setting('transaction_isolation') <> 'read committed' THEN
        error_code := -1006;
        error_message := '不能在事务中调用: call sp_medical_insurance_submit_v2 outside any open '
                         'transaction (autocommit), the request would be invisible to workers';
        RETURN;
    END IF;

    IF p_interface_code IS NULL OR p_interface_code !~ '^[0-9]{4,5}[A-Z]?$' THEN
        error_code := -1001;
        error_message := '参数错误: interface_code must look like 1101, 2207A or 90100, got '
                         || COALESCE('''' || left(p_interface_code, 20) || '''', 'NULL');
        RETURN;
    END IF;
    v_refused := mi_his_refusal(p_interface_code);
    IF v_refused IS NOT NULL THEN
        error_code := -1001;
        error_message := left('参数错误: interface ' || p_interface_code
                              || ' is managed by mi-worker itself, the HIS must not call it: '
                              || v_refused, 500);
        RETURN;
    END IF;
    IF p_input_data IS NULL OR length(p_input_data) = 0 THEN
        error_code := -1001;
        error_message := '参数错误: input_data is empty';
        RETURN;
    END IF;
    IF length(p_input_data) > 1048576 THEN
        error_code := -1001;
        error_message := '参数错误: input_data is ' || length(p_input_data)
                         || ' characters, more than the 1048576 allowed';
        RETURN;
    END IF;
    BEGIN
        v_doc := p_input_data::jsonb;
    EXCEPTION WHEN OTHERS THEN
        v_doc := NULL;
    END;
    IF v_doc IS NULL OR jsonb_typeof(v_doc) <> 'object' THEN
        error_code := -1001;
        error_message := '参数错误: input_data is not a JSON object';
        RETURN;
    END IF;
    IF v_timeout < 1 OR v_timeout > 604800 OR v_retry < 0 OR v_retry > 20 THEN
        error_code := -1001;
        error_message := '参数错误: timeout must be 1..604800 seconds and retry_count 0..20';
        RETURN;
    END IF;

    IF sp_check_sdk_service_status() <> 1 THEN
        error_code := -1002;
        error_message := 'SDK服务未运行: no mi-worker heartbeat in the last 30 seconds';
        RETURN;
    END IF;

    IF v_key IS NOT NULL THEN
        SELECT * INTO v_existing FROM mi_his_find_key(v_key);
        IF FOUND THEN
            request_id := v_existing.o_request_id;
            IF v_existing.o_status = 'COMPLETED' AND v_existing.o_needs_reversal = 0 THEN
                result := v_existing.o_response_data;
                RETURN;
            ELSIF v_existing.o_status IN ('PENDING', 'PROCESSING') THEN
                error_code := -1008;
                error_message := '重复请求: idempotency key ' || v_key
                                 || ' is already in flight as request ' || v_existing.o_request_id;
            ELSE
                error_code := -1007;
                error_message := '结果不确定: idempotency key ' || v_key
                                 || ' belongs to request ' || v_existing.o_request_id
                                 || ' in state ' || v_existing.o_status;
            END IF;
            RETURN;
        END IF;
    END IF;

    v_psn := left(COALESCE(v_psn_in, v_doc #>> '{data,psn_no}', v_doc ->> 'psn_no',
                           jsonb_path_query_first(v_doc, 'strict $.**.psn_no') #>> '{}'), 30);
    v_admdvs := left(COALESCE(v_admdvs_in, v_doc #>> '{data,insuplc_admdvs}',
                              v_doc ->> 'insuplc_admdvs'), 6);

    SELECT e.o_request_id, e.o_error_code, e.o_error_message
      INTO request_id, v_ec, v_em
      FROM mi_his_enqueue_async(p_interface_code, p_input_data, p_priority, v_timeout, v_retry,
                                v_psn, v_admdvs, v_key, v_fee_id) e;
    IF v_ec <> 0 THEN
        error_code := v_ec;
        error_message := v_em;
    END IF;
    COMMIT;  -- the row is visible to the workers now (or the -1003 error-log row is kept)
END;
$$;

-- The state of a submitted request now (p_wait_ms 0) or after waiting up to p_wait_ms
-- (0..3600000) for a final state, polling every 10 ms doubling up to p_poll_ms. The codes
-- are the call procedure's; a request still open after the wait is -1005 with status PENDING
-- or PROCESSING (ask again: nothing times out because a caller stopped waiting). No COMMIT,
-- so it may run inside the caller's transaction (a PENDING row past its deadline is then
-- ended TIMEOUT when that transaction commits).
CREATE OR REPLACE PROCEDURE sp_medical_insurance_result_v2(
    p_request_id bigint,
    p_wait_ms    integer,
    INOUT status        text,
    INOUT result        text,
    INOUT error_code    integer,
    INOUT error_message text,
    p_poll_ms    integer DEFAULT 100
)
LANGUAGE plpgsql
AS $$
DECLARE
    v_wait     integer := COALESCE(p_wait_ms, 0);
    v_poll     double precision := GREATEST(COALESCE(p_poll_ms, 100), 10) / 1000.0;
    v_step     double precision;
    v_until    timestamptz;
    v_rstatus  text;
    v_code     integer;
    v_msg      text;
    v_past     integer;
BEGIN
    status := NULL;
    result := NULL;
    error_code := 0;
    error_message := '';
    IF p_request_id IS NULL OR v_wait < 0 OR v_wait > 3600000 THEN
        error_code := -1001;
        error_message := '参数错误: request_id is required and wait_ms must be 0..3600000';
        RETURN;
    END IF;
    v_until := clock_timestamp() + make_interval(secs => v_wait / 1000.0);
    v_step := LEAST(0.01, v_poll);
    LOOP
        SELECT p.o_status, p.o_result_status, p.o_response_data, p.o_error_code,
               p.o_error_message, p.o_past_deadline
          INTO status, v_rstatus, result, v_code, v_msg, v_past
          FROM mi_his_result(p_request_id) p;
        IF NOT FOUND THEN
            status := NULL;
            result := NULL;
            error_code := -1001;
            error_message := '参数错误: no submitted request ' || p_request_id;
            RETURN;
        END IF;
        IF v_rstatus = 'IN_PROGRESS' AND status = 'PENDING' AND v_past = 1 THEN
            PERFORM mi_his_expire_async(p_request_id);
            CONTINUE;
        END IF;
        EXIT WHEN v_rstatus <> 'IN_PROGRESS' OR clock_timestamp() >= v_until;
        PERFORM pg_sleep(LEAST(v_step, GREATEST(
            extract(epoch FROM v_until - clock_timestamp())::double precision, 0.01)));
        v_step := LEAST(v_step * 2, v_poll);
    END LOOP;

    IF v_rstatus = 'SUCCESS' THEN
        error_code := 0;
        error_message := '';
    ELSIF v_rstatus = 'ERROR' THEN
        result := NULL;
        error_code := CASE WHEN v_code IN (-1001, -1004, -1999) THEN v_code ELSE -1004 END;
        error_message := COALESCE(v_msg, 'error');
    ELSIF v_rstatus = 'TIMEOUT' THEN
        result := NULL;
        error_code := -1005;
        error_message := COALESCE(v_msg, '请求超时');
    ELSIF v_rstatus = 'IN_PROGRESS' THEN
        result := NULL;
        error_code := -1005;
        error_message := '处理中: request ' || p_request_id || ' is ' || status
            || '; ask again later (it keeps its own deadline)';
    ELSE
        result := NULL;
        error_code := -1007;
        error_message := '结果不确定: request ' || p_request_id || ' is ' || status
            || COALESCE(': ' || v_msg, '');
    END IF;
END;
$$;

-- ===== files with the centre, catalogue sync (目录下载) =====
-- medical_insurance_files: every file exchanged with the centre (9101 up, 9102 down), its
-- sha256 and where it is kept. medical_insurance_catalog: the national catalogues 1301-1319,
-- one row per (catalogue, item code), the centre's fields as a JSON object in row_data and
-- their sha256 in row_hash (a rerun rewrites nothing that did not change); one view per
-- catalogue (v_mi_catalog_1301 ...) is the "table per catalogue" hospital SQL reads.
-- medical_insurance_catalog_sync: one row per sync run (counts, bytes, duration, outcome).
CREATE TABLE IF NOT EXISTS medical_insurance_files (
    file_id       bigserial    PRIMARY KEY,
    direction     varchar(4)   NOT NULL CHECK (direction IN ('UP', 'DOWN')),
    purpose       varchar(10)  NOT NULL,
    file_qury_no  varchar(100),
    filename      varchar(200) NOT NULL,
    local_path    text         NOT NULL,
    size_bytes    bigint       NOT NULL,
    sha256        char(64)     NOT NULL,
    dld_endtime   varchar(30),
    created_at    timestamptz  NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS medical_insurance_catalog (
    catalog_code  varchar(4)   NOT NULL,
    item_code     varchar(100) NOT NULL,
    item_name     text,
    ver           varchar(60),
    updt_time     varchar(30),
    row_hash      char(64)     NOT NULL,
    row_data      text         NOT NULL,
    loaded_at     timestamptz  NOT NULL DEFAULT now(),
    PRIMARY KEY (catalog_code, item_code)
);

CREATE TABLE IF NOT EXISTS medical_insurance_catalog_sync (
    sync_id         bigserial    PRIMARY KEY,
    catalog_code    varchar(4)   NOT NULL,
    started_at      timestamptz  NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    outcome         varchar(10)  NOT NULL DEFAULT 'RUNNING'
                    CHECK (outcome IN ('RUNNING', 'OK', 'FAILED')),
    ver_from        varchar(60),
    ver_to          varchar(60),
    file_qury_no    varchar(100),
    file_sha256     char(64),
    bytes           bigint       NOT NULL DEFAULT 0,
    rows_read       integer      NOT NULL DEFAULT 0,
    rows_inserted   integer      NOT NULL DEFAULT 0,
    rows_updated    integer      NOT NULL DEFAULT 0,
    rows_unchanged  integer      NOT NULL DEFAULT 0,
    duration_ms     integer,
    error_message   text
);
CREATE INDEX IF NOT EXISTS ix_mics_code ON medical_insurance_catalog_sync (catalog_code, sync_id);

CREATE OR REPLACE VIEW v_mi_catalog_1301 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1301';

CREATE OR REPLACE VIEW v_mi_catalog_1302 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1302';

CREATE OR REPLACE VIEW v_mi_catalog_1303 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1303';

CREATE OR REPLACE VIEW v_mi_catalog_1304 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1304';

CREATE OR REPLACE VIEW v_mi_catalog_1305 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1305';

CREATE OR REPLACE VIEW v_mi_catalog_1306 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1306';

CREATE OR REPLACE VIEW v_mi_catalog_1307 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1307';

CREATE OR REPLACE VIEW v_mi_catalog_1308 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1308';

CREATE OR REPLACE VIEW v_mi_catalog_1309 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1309';

CREATE OR REPLACE VIEW v_mi_catalog_1310 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1310';

CREATE OR REPLACE VIEW v_mi_catalog_1311 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1311';

CREATE OR REPLACE VIEW v_mi_catalog_1312 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1312';

CREATE OR REPLACE VIEW v_mi_catalog_1313 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1313';

CREATE OR REPLACE VIEW v_mi_catalog_1314 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1314';

CREATE OR REPLACE VIEW v_mi_catalog_1315 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1315';

CREATE OR REPLACE VIEW v_mi_catalog_1316 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1316';

CREATE OR REPLACE VIEW v_mi_catalog_1317 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1317';

CREATE OR REPLACE VIEW v_mi_catalog_1318 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1318';

CREATE OR REPLACE VIEW v_mi_catalog_1319 AS
SELECT item_code, item_name, ver, updt_time, row_data, loaded_at
FROM medical_insurance_catalog WHERE catalog_code = '1319';

-- The monitoring entry point gains the data type 'catalog': the latest 50 catalogue sync runs.
CREATE OR REPLACE FUNCTION sp_get_medical_insurance_monitor_data(p_data_type varchar DEFAULT 'health')
RETURNS SETOF jsonb
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    CASE lower(COALESCE(p_data_type, ''))
        WHEN 'health' THEN RETURN QUERY SELECT to_jsonb(t) FROM mi_monitor_health() t;
        WHEN 'performance' THEN RETURN QUERY SELECT to_jsonb(t) FROM mi_monitor_performance() t;
        WHEN 'interfaces' THEN RETURN QUERY SELECT to_jsonb(t) FROM mi_monitor_interfaces() t;
        WHEN 'queue' THEN RETURN QUERY SELECT to_jsonb(t) FROM mi_monitor_queue() t;
        WHEN 'workers' THEN RETURN QUERY SELECT to_jsonb(t) FROM mi_monitor_workers() t;
        WHEN 'catalog' THEN RETURN QUERY SELECT to_jsonb(t) FROM (
            SELECT sync_id, catalog_code, started_at, finished_at, outcome, ver_from, ver_to,
                   bytes, rows_read, rows_inserted, rows_updated, rows_unchanged, duration_ms,
                   error_message
            FROM medical_insurance_catalog_sync ORDER BY sync_id DESC LIMIT 50) t;
        ELSE
            RAISE EXCEPTION 'unknown @data_type %: use health, performance, interfaces, queue, workers or catalog',
                quote_literal(p_data_type) USING ERRCODE = '22023';
    END CASE;
END;
$$;

-- 3202 对明细账 results (issue 15): one row per settlement the centre and the hospital disagree
-- on (stmt_rslt 1 中心多, 2 医药机构多, 3 不一致), from the automated detail reconciliation of a
-- 3201 group that did not balance. fix_request_id: the 2601 an operator had queued for it.
CREATE TABLE IF NOT EXISTS medical_insurance_recon_detail (
    detail_id       bigserial    PRIMARY KEY,
    stmt_date       date         NOT NULL,
    insutype        varchar(6),
    clr_type        varchar(6),
    setl_id         varchar(50),
    mdtrt_id        varchar(50),
    psn_no          varchar(50),
    msgid           varchar(30),
    stmt_rslt       varchar(6)   NOT NULL,
    memo            text,
    medfee_sumamt   numeric(16, 2),
    fund_pay_sumamt numeric(16, 2),
    acct_pay        numeric(16, 2),
    request_id      bigint,
    fix_request_id  bigint,
    created_at      timestamptz  NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ix_mird_date ON medical_insurance_recon_detail (stmt_date, detail_id);
