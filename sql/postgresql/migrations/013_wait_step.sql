-- Issue 17: after its first look (timed from the interface's published latency, migration
-- 012), a waiting caller looks again after 5 ms instead of 10, growing by half as before
-- (5, 7, 10, 15, 22 ... ms up to p_poll_ms). The answers that miss the first look mostly
-- arrive within a few ms of it: at 100 calls/s the time from the written result to the
-- caller having it fell from 5.1-5.7 to 2.5-2.6 ms p50 with the worker's quicker claims
-- (bench latency, paired runs; mi_worker/wait_plan.py ESTIMATE_STEP_MS). wait_plan.py
-- holds the same rule for the embedded path.
-- Without a fresh estimate the fixed schedule (at once, then 10 ms doubling) is unchanged.
-- Parameters, codes, answers and grants are unchanged (CREATE OR REPLACE keeps them).

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
    v_key        varchar := NULLIF(btrim(p_idempotency_key), '');
    v_fee_id     varchar := NULLIF(btrim(p_his_fee_id), '');
    v_psn_in     varchar := NULLIF(btrim(p_psn_no), '');
    v_admdvs_in  varchar := NULLIF(btrim(p_insuplc_admdvs), '');
    v_refused    text;
    v_psn        varchar(30);
    v_admdvs     varchar(6);
    v_deadline   timestamptz;
    v_token      text;
    v_ec         integer;
    v_em         text;
    v_status     varchar(20);
    v_rstatus    varchar(20);
    v_code       integer;
    v_msg        text;
    v_existing   record;
    v_expect     integer;
    v_fixed      boolean;
    v_t0         timestamptz := now();  -- the INSERT's request_time (this transaction's start)
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
    -- -1001: codes mi-worker manages itself (sign-in 9001 / sign-out 9002; 2601 reversal
    -- unless the hospital enabled manual reversal), as the catalogue says.
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
    -- A blank key is no key.
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

    SELECT e.o_request_id, e.o_deadline_at, e.o_his_token, e.o_error_code, e.o_error_message
      INTO request_id, v_deadline, v_token, v_ec, v_em
      FROM mi_his_enqueue(p_interface_code, p_input_data, p_priority, v_timeout, v_retry, v_psn,
                          v_admdvs, v_key, v_fee_id) e;
    IF v_ec <> 0 THEN
        error_code := v_ec;
        error_message := v_em;
        COMMIT;  -- keeps the -1003 error-log row
        RETURN;
    END IF;
    -- The row must be visible to the workers now, not when the caller's statement ends.
    COMMIT;

    -- When to look (mi_worker/wait_plan.py, issue 17). With the interface's recent
    -- INSERT-to-result median from the workers (mi_his_wait_ms): sleep until that long after
    -- request_time (the estimate is measured from there), look, then look every 5 ms growing
    -- by half (5, 7, 10, 15, 22 ...) up to p_poll_ms. Without one (new interface, no fresh
    -- estimate, or the function not executable by this login): look at once, then 10 ms
    -- doubling up to p_poll_ms, as before. Each sleep is capped by the time left before the
    -- deadline. The estimate only moves when the caller looks, never what it is told.
    BEGIN
        v_expect := mi_his_wait_ms(p_interface_code);
    EXCEPTION WHEN OTHERS THEN
        v_expect := NULL;
    END;
    v_fixed := v_expect IS NULL OR v_expect <= 0;
    v_step := LEAST(CASE WHEN v_fixed THEN 0.01 ELSE 0.005 END, v_poll);
    IF NOT v_fixed THEN
        PERFORM pg_sleep(GREATEST(LEAST(
            LEAST(v_expect, 600000) / 1000.0
                - extract(epoch FROM clock_timestamp() - v_t0)::double precision,
            extract(epoch FROM v_deadline - clock_timestamp())::double precision), 0));
    END IF;
    LOOP
        SELECT p.o_status, p.o_result_status, p.o_response_data, p.o_error_code, p.o_error_message
          INTO v_status, v_rstatus, result, v_code, v_msg
          FROM mi_his_poll(request_id, v_token) p;
        EXIT WHEN v_rstatus <> 'IN_PROGRESS' OR clock_timestamp() >= v_deadline;
        PERFORM pg_sleep(LEAST(v_step, GREATEST(
            extract(epoch FROM v_deadline - clock_timestamp())::double precision, 0.01)));
        IF v_fixed THEN
            v_step := LEAST(v_step * 2, v_poll);
        ELSE
            -- whole milliseconds, as wait_plan.poll_delays and the T-SQL compute it
            v_step := LEAST((round(v_step * 1000)::integer * 3 / 2) / 1000.0, v_poll);
        END IF;
    END LOOP;

    IF v_rstatus = 'IN_PROGRESS' AND v_status = 'PENDING' THEN
        -- Never claimed: end it here, unless a worker took it this very instant.
        PERFORM mi_his_timeout(request_id, v_token, v_timeout);
        COMMIT;
        SELECT p.o_status, p.o_result_status, p.o_response_data, p.o_error_code, p.o_error_message
          INTO v_status, v_rstatus, result, v_code, v_msg
          FROM mi_his_poll(request_id, v_token) p;
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
