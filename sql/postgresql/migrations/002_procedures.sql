-- The HIS contract on PostgreSQL (DESIGN.md §6): same name, same eight leading parameters.
--   CALL sp_medical_insurance_call_v2('1101', '{"data":{…}}', 30, 3, NULL, NULL, NULL, NULL);
-- returns one row (request_id, result, error_code, error_message).

CREATE OR REPLACE FUNCTION sp_check_sdk_service_status(p_stale_seconds integer DEFAULT 30)
RETURNS integer
LANGUAGE sql STABLE
AS $$
    -- 1 when any worker beat within the window (clock_timestamp: a caller's long transaction
    -- must not freeze the comparison).
    SELECT CASE WHEN EXISTS (
        SELECT 1 FROM sdk_heartbeat
        WHERE status = 'RUNNING'
          AND last_heartbeat > clock_timestamp() - make_interval(secs => p_stale_seconds)
    ) THEN 1 ELSE 0 END;
$$;

CREATE OR REPLACE PROCEDURE sp_medical_insurance_call_v2(
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
    p_poll_ms         integer DEFAULT 100,
    p_insuplc_admdvs  varchar DEFAULT NULL
)
LANGUAGE plpgsql
AS $$
DECLARE
    v_doc        jsonb;
    v_timeout    integer := COALESCE(p_timeout, 30);
    v_retry      integer := COALESCE(p_retry_count, 3);
    v_poll       double precision := GREATEST(COALESCE(p_poll_ms, 100), 10) / 1000.0;
    v_step       double precision;
    v_psn        varchar(30);
    v_admdvs     varchar(6);
    v_deadline   timestamptz;
    v_status     varchar(20);
    v_rstatus    varchar(20);
    v_code       integer;
    v_msg        text;
    v_existing   record;
BEGIN
    request_id := NULL;
    result := NULL;
    error_code := 0;
    error_message := '';

    -- -1006: a caller's open transaction would keep the PENDING row invisible to the workers
    -- (and PostgreSQL forbids the COMMIT below inside a transaction block). A transaction that
    -- started well before this statement is a caller's block; the 1 s tolerance is because
    -- the extended query protocol (JDBC, psqlODBC server-side prepare) starts the implicit
    -- transaction at Parse and stamps the statement at Bind, a round trip later. A block
    -- opened just before the CALL escapes these checks; the COMMIT below then fails with
    -- SQLSTATE 2D000 and nothing is enqueued (README, "Calling from PostgreSQL").
    IF txid_current_if_assigned() IS NOT NULL
       OR statement_timestamp() - transaction_timestamp() > interval '1 second'
       OR current_setting('transaction_isolation') <> 'read committed' THEN
        error_code := -1006;
        error_message := '不能在事务中调用: call sp_medical_insurance_call_v2 outside any open '
                         'transaction (autocommit), the request would be invisible to workers';
        RETURN;
    END IF;

    -- -1001: parameters.
    IF p_interface_code IS NULL OR p_interface_code !~ '^[0-9]{4,5}[A-Z]?$' THEN
        error_code := -1001;
        error_message := '参数错误: interface_code must look like 1101, 2207A or 90100, got '
                         || COALESCE('''' || left(p_interface_code, 20) || '''', 'NULL');
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
    IF v_timeout < 1 OR v_timeout > 3600 OR v_retry < 0 OR v_retry > 20 THEN
        error_code := -1001;
        error_message := '参数错误: timeout must be 1..3600 seconds and retry_count 0..20';
        RETURN;
    END IF;

    -- -1002: nobody would take the row.
    IF sp_check_sdk_service_status() <> 1 THEN
        error_code := -1002;
        error_message := 'SDK服务未运行: no mi-worker heartbeat in the last 30 seconds';
        RETURN;
    END IF;

    -- Idempotency: a completed call with the same key answers at once; one in flight is -1008.
    IF p_idempotency_key IS NOT NULL THEN
        SELECT r.request_id AS rid, r.status, r.needs_reversal, r.response_data, r.error_message
          INTO v_existing
          FROM medical_insurance_requests r
         WHERE r.idempotency_key = p_idempotency_key AND r.status NOT IN ('ERROR', 'TIMEOUT')
         ORDER BY r.request_id DESC LIMIT 1;
        IF FOUND THEN
            request_id := v_existing.rid;
            IF v_existing.status = 'COMPLETED' AND v_existing.needs_reversal = 0 THEN
                result := v_existing.response_data;
                RETURN;
            ELSIF v_existing.status IN ('PENDING', 'PROCESSING') THEN
                error_code := -1008;
                error_message := '重复请求: idempotency key ' || p_idempotency_key
                                 || ' is already in flight as request ' || v_existing.rid;
            ELSE
                error_code := -1007;
                error_message := '结果不确定: idempotency key ' || p_idempotency_key
                                 || ' belongs to request ' || v_existing.rid || ' in state '
                                 || v_existing.status;
            END IF;
            RETURN;
        END IF;
    END IF;

    v_psn := left(COALESCE(p_psn_no, v_doc #>> '{data,psn_no}', v_doc ->> 'psn_no',
                           jsonb_path_query_first(v_doc, 'strict $.**.psn_no') #>> '{}'), 30);
    v_admdvs := left(COALESCE(p_insuplc_admdvs, v_doc #>> '{data,insuplc_admdvs}',
                              v_doc ->> 'insuplc_admdvs'), 6);

    BEGIN
        INSERT INTO medical_insurance_requests (interface_code, input_data, status, priority,
            timeout_seconds, max_retry_count, psn_no, insuplc_admdvs, idempotency_key,
            his_fee_id, deadline_at)
        VALUES (p_interface_code, p_input_data, 'PENDING', COALESCE(p_priority, 5), v_timeout,
            v_retry, NULLIF(v_psn, ''), NULLIF(v_admdvs, ''), p_idempotency_key, p_his_fee_id,
            clock_timestamp() + make_interval(secs => v_timeout))
        RETURNING medical_insurance_requests.request_id, deadline_at INTO request_id, v_deadline;
    EXCEPTION
        WHEN unique_violation THEN
            error_code := -1008;
            error_message := '重复请求: idempotency key ' || COALESCE(p_idempotency_key, '')
                             || ' is already in flight';
            RETURN;
        WHEN OTHERS THEN
            error_code := -1003;
            error_message := '入队失败: could not enqueue: ' || SQLERRM;
            INSERT INTO medical_insurance_error_log (request_id, error_code, error_message, detail)
            VALUES (NULL, -1003, error_message, SQLSTATE);
            RETURN;
    END;
    -- The row must be visible to the workers now, not when the caller's statement ends.
    COMMIT;

    -- The poll step starts at 10 ms and doubles up to p_poll_ms: most answers come within a
    -- few tens of milliseconds, so a fixed 100 ms step would add ~50 ms to each call, while a
    -- long wait still costs only one read per p_poll_ms.
    v_step := LEAST(0.01, v_poll);
    LOOP
        SELECT v.status, v.result_status, v.response_data, v.error_code, v.error_message
          INTO v_status, v_rstatus, result, v_code, v_msg
          FROM v_medical_insurance_result v
         WHERE v.request_id = sp_medical_insurance_call_v2.request_id;
        EXIT WHEN v_rstatus <> 'IN_PROGRESS' OR clock_timestamp() >= v_deadline;
        PERFORM pg_sleep(v_step);
        v_step := LEAST(v_step * 2, v_poll);
    END LOOP;

    IF v_rstatus = 'IN_PROGRESS' AND v_status = 'PENDING' THEN
        -- Never claimed: end it here, unless a worker took it this very instant.
        UPDATE medical_insurance_requests r
           SET status = 'TIMEOUT', response_time = clock_timestamp(), error_code = -1005,
               error_message = '请求超时: no worker claimed the request within '
                               || v_timeout || ' s'
         WHERE r.request_id = sp_medical_insurance_call_v2.request_id AND r.status = 'PENDING';
        COMMIT;
        SELECT v.status, v.result_status, v.response_data, v.error_code, v.error_message
          INTO v_status, v_rstatus, result, v_code, v_msg
          FROM v_medical_insurance_result v
         WHERE v.request_id = sp_medical_insurance_call_v2.request_id;
    END IF;

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
        error_message := '请求超时(结果待定): request ' || request_id
            || ' is still being processed by a worker; its outcome is in doubt and will be '
            || 'settled (a state-changing call is reversed) - check v_medical_insurance_result';
    ELSE
        result := NULL;
        error_code := -1007;
        error_message := '结果不确定: request ' || request_id || ' is ' || v_status
            || COALESCE(': ' || v_msg, '');
    END IF;
END;
$$;
