-- Issue 14: settlement workflows (saga on the database, DESIGN.md §11).
-- One row per workflow (medical_insurance_workflows) and one request row per step or undo,
-- linked by workflow_id + workflow_step (n = step n, -n = the undo of step n). The unique
-- index makes enqueueing a step idempotent: two workers advancing the same workflow cannot
-- both send it. Every state lives here, so any worker continues a workflow whose worker died.

CREATE TABLE IF NOT EXISTS medical_insurance_workflows (
    workflow_id     bigserial PRIMARY KEY,
    name            varchar(64)  NOT NULL,
    input_data      text         NOT NULL,
    wf_definition   text,
    status          varchar(30)  NOT NULL DEFAULT 'RUNNING',
    current_step    integer      NOT NULL DEFAULT 0,
    idempotency_key varchar(100),
    his_fee_id      varchar(64),
    psn_no          varchar(30),
    timeout_seconds integer      NOT NULL DEFAULT 60,
    deadline_at     timestamptz  NOT NULL,
    wf_result       text,
    error_code      integer,
    error_message   text,
    reason_code     integer,
    reason          text,
    his_token       varchar(40),
    created_at      timestamptz  NOT NULL DEFAULT now(),
    updated_at      timestamptz  NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    CONSTRAINT ck_miw_status CHECK (status IN ('RUNNING', 'COMPLETED', 'COMPENSATING',
        'COMPENSATED', 'FAILED_NEEDS_MANUAL'))
);
CREATE INDEX IF NOT EXISTS ix_miw_open ON medical_insurance_workflows (workflow_id)
    WHERE status IN ('RUNNING', 'COMPENSATING');
-- A key names one live workflow; a COMPENSATED one (nothing stands) frees it for a new try.
CREATE UNIQUE INDEX IF NOT EXISTS ux_miw_key ON medical_insurance_workflows (idempotency_key)
    WHERE idempotency_key IS NOT NULL AND status <> 'COMPENSATED';

ALTER TABLE medical_insurance_requests ADD COLUMN IF NOT EXISTS workflow_id bigint;
ALTER TABLE medical_insurance_requests ADD COLUMN IF NOT EXISTS workflow_step integer;
CREATE UNIQUE INDEX IF NOT EXISTS ux_mir_workflow_step
    ON medical_insurance_requests (workflow_id, workflow_step) WHERE workflow_id IS NOT NULL;

-- The HIS side: SECURITY DEFINER helpers as in 005, so a HIS login needs EXECUTE only.
CREATE OR REPLACE FUNCTION mi_wf_find_key(p_idempotency_key varchar)
RETURNS TABLE (o_workflow_id bigint, o_status text, o_result text, o_error_code integer,
               o_error_message text)
LANGUAGE sql STABLE SECURITY DEFINER
AS $$
    SELECT w.workflow_id, w.status::text, w.wf_result, w.error_code, w.error_message
      FROM medical_insurance_workflows w
     WHERE w.idempotency_key = p_idempotency_key AND w.status <> 'COMPENSATED'
     ORDER BY w.workflow_id DESC LIMIT 1;
$$;

CREATE OR REPLACE FUNCTION mi_wf_start(
    p_workflow varchar, p_input_data text, p_timeout integer, p_idempotency_key varchar,
    p_his_fee_id varchar, p_psn_no varchar,
    OUT o_workflow_id bigint, OUT o_deadline_at timestamptz, OUT o_his_token text,
    OUT o_error_code integer, OUT o_error_message text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
AS $$
BEGIN
    o_error_code := 0;
    o_error_message := '';
    o_his_token := gen_random_uuid()::text;
    BEGIN
        INSERT INTO medical_insurance_workflows (name, input_data, idempotency_key, his_fee_id,
            psn_no, timeout_seconds, deadline_at, his_token, error_code, error_message)
        VALUES (p_workflow, p_input_data, p_idempotency_key, p_his_fee_id, NULLIF(p_psn_no, ''),
            p_timeout, clock_timestamp() + make_interval(secs => p_timeout), o_his_token, -1005,
            '请求超时: workflow not started yet')
        RETURNING workflow_id, deadline_at INTO o_workflow_id, o_deadline_at;
    EXCEPTION
        WHEN unique_violation THEN
            o_workflow_id := NULL;
            o_his_token := NULL;
            o_error_code := -1008;
            o_error_message := '重复请求: idempotency key ' || COALESCE(p_idempotency_key, '')
                               || ' is already in flight';
        WHEN OTHERS THEN
            o_workflow_id := NULL;
            o_his_token := NULL;
            o_error_code := -1003;
            o_error_message := '入队失败: could not start the workflow: ' || SQLERRM;
            INSERT INTO medical_insurance_error_log (request_id, error_code, error_message, detail)
            VALUES (NULL, -1003, o_error_message, SQLSTATE);
    END;
END;
$$;

CREATE OR REPLACE FUNCTION mi_wf_poll(p_workflow_id bigint, p_his_token text)
RETURNS TABLE (o_status text, o_result text, o_error_code integer, o_error_message text)
LANGUAGE sql STABLE SECURITY DEFINER
AS $$
    SELECT w.status::text, w.wf_result, w.error_code, w.error_message
      FROM medical_insurance_workflows w
     WHERE w.workflow_id = p_workflow_id AND w.his_token = p_his_token;
$$;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY[
        'mi_wf_find_key(varchar)',
        'mi_wf_start(varchar, text, integer, varchar, varchar, varchar)',
        'mi_wf_poll(bigint, text)'
    ] LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path = %I, pg_temp', f, current_schema());
    END LOOP;
END;
$$;

-- sp_medical_insurance_workflow_v2: one call runs a whole workflow. Same shape and codes as
-- sp_medical_insurance_call_v2; @request_id returns the workflow id, @result every step's
-- output keyed by step name. The workers advance the workflow; this only starts it and polls.
--   CALL sp_medical_insurance_workflow_v2('outpatient_settlement', '{…}', 60, NULL, NULL, NULL, NULL);
CREATE OR REPLACE PROCEDURE sp_medical_insurance_workflow_v2(
    p_workflow        varchar,
    p_input_data      text,
    p_timeout         integer,
    INOUT request_id    bigint,
    INOUT result        text,
    INOUT error_code    integer,
    INOUT error_message text,
    p_idempotency_key varchar DEFAULT NULL,
    p_his_fee_id      varchar DEFAULT NULL,
    p_psn_no          varchar DEFAULT NULL,
    p_poll_ms         integer DEFAULT 100
)
LANGUAGE plpgsql
AS $$
DECLARE
    v_doc      jsonb;
    v_timeout  integer := COALESCE(p_timeout, 60);
    v_poll     double precision := GREATEST(COALESCE(p_poll_ms, 100), 10) / 1000.0;
    v_step     double precision;
    v_key      varchar := NULLIF(btrim(p_idempotency_key), '');
    v_fee_id   varchar := NULLIF(btrim(p_his_fee_id), '');
    v_psn      varchar := NULLIF(btrim(p_psn_no), '');
    v_deadline timestamptz;
    v_token    text;
    v_ec       integer;
    v_em       text;
    v_status   text;
    v_existing record;
BEGIN
    request_id := NULL;
    result := NULL;
    error_code := 0;
    error_message := '';

    IF txid_current_if_assigned() IS NOT NULL
       OR statement_timestamp() - transaction_timestamp() > interval '1 second'
       OR current_setting('transaction_isolation') <> 'read committed' THEN
        error_code := -1006;
        error_message := '不能在事务中调用: call sp_medical_insurance_workflow_v2 outside any '
                         'open transaction (autocommit), the workflow would be invisible to workers';
        RETURN;
    END IF;
    IF p_workflow IS NULL OR p_workflow !~ '^[a-z][a-z0-9_]{0,63}$' THEN
        error_code := -1001;
        error_message := '参数错误: workflow must be a workflow name such as '
                         || 'outpatient_settlement, got '
                         || COALESCE('''' || left(p_workflow, 64) || '''', 'NULL');
        RETURN;
    END IF;
    IF p_input_data IS NULL OR length(p_input_data) = 0 OR length(p_input_data) > 1048576 THEN
        error_code := -1001;
        error_message := '参数错误: input_data must be 1..1048576 characters';
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
    IF v_timeout < 1 OR v_timeout > 3600 THEN
        error_code := -1001;
        error_message := '参数错误: timeout must be 1..3600 seconds';
        RETURN;
    END IF;
    IF sp_check_sdk_service_status() <> 1 THEN
        error_code := -1002;
        error_message := 'SDK服务未运行: no mi-worker heartbeat in the last 30 seconds';
        RETURN;
    END IF;
    IF v_key IS NOT NULL THEN
        SELECT * INTO v_existing FROM mi_wf_find_key(v_key);
        IF FOUND THEN
            request_id := v_existing.o_workflow_id;
            IF v_existing.o_status = 'COMPLETED' THEN
                result := v_existing.o_result;
            ELSIF v_existing.o_status IN ('RUNNING', 'COMPENSATING') THEN
                error_code := -1008;
                error_message := '重复请求: idempotency key ' || v_key
                                 || ' is already in flight as workflow '
                                 || v_existing.o_workflow_id;
            ELSE
                error_code := COALESCE(v_existing.o_error_code, -1007);
                error_message := COALESCE(v_existing.o_error_message, '');
            END IF;
            RETURN;
        END IF;
    END IF;
    v_psn := left(COALESCE(v_psn, jsonb_path_query_first(v_doc, 'strict $.**.psn_no') #>> '{}'),
                  30);

    SELECT s.o_workflow_id, s.o_deadline_at, s.o_his_token, s.o_error_code, s.o_error_message
      INTO request_id, v_deadline, v_token, v_ec, v_em
      FROM mi_wf_start(p_workflow, p_input_data, v_timeout, v_key, v_fee_id, v_psn) s;
    IF v_ec <> 0 THEN
        error_code := v_ec;
        error_message := v_em;
        COMMIT;
        RETURN;
    END IF;
    COMMIT;  -- the workers must see the workflow now

    v_step := LEAST(0.01, v_poll);
    LOOP
        SELECT p.o_status, p.o_result, p.o_error_code, p.o_error_message
          INTO v_status, result, v_ec, v_em
          FROM mi_wf_poll(request_id, v_token) p;
        EXIT WHEN v_status IN ('COMPLETED', 'COMPENSATED', 'FAILED_NEEDS_MANUAL')
               OR clock_timestamp() >= v_deadline;
        PERFORM pg_sleep(LEAST(v_step, GREATEST(
            extract(epoch FROM v_deadline - clock_timestamp())::double precision, 0.01)));
        v_step := LEAST(v_step * 2, v_poll);
    END LOOP;

    IF v_status = 'COMPLETED' THEN
        error_code := 0;
        error_message := '';
    ELSE
        -- The workers keep the answer for "now" on the row: -1005 still running, -1007 in
        -- doubt or compensating, -1009 compensated, -1001 bad input, -1007 needs a person.
        result := NULL;
        error_code := COALESCE(v_ec, -1005);
        error_message := COALESCE(v_em, '');
        IF v_status IN ('RUNNING', 'COMPENSATING') AND error_code NOT IN (-1005, -1007) THEN
            error_code := -1007;
        END IF;
    END IF;
END;
$$;
