-- DBA monitoring on PostgreSQL (DESIGN.md §9). One function per data type gives a plain table
--   SELECT * FROM mi_monitor_performance();
-- and sp_get_medical_insurance_monitor_data('performance') gives the same rows as JSON objects
-- (one entry point whatever the type, as on SQL Server). Latency = response_time - request_time
-- of rows that finished; p95 is percentile_disc (the nearest-rank value), as on SQL Server.

CREATE OR REPLACE FUNCTION mi_monitor_health(p_warn_seconds integer DEFAULT 30,
                                             p_down_seconds integer DEFAULT 60)
RETURNS TABLE (service_name varchar, worker_id varchar, host varchar, status varchar,
               last_heartbeat timestamptz, seconds_since_heartbeat integer,
               in_flight integer, processed_total bigint, check_time timestamptz)
LANGUAGE sql STABLE
AS $$
    WITH w AS (
        SELECT h.service_name, h.worker_id, h.host, h.last_heartbeat, h.in_flight,
               h.processed_total,
               CAST(EXTRACT(EPOCH FROM (clock_timestamp() - h.last_heartbeat)) AS integer) AS age,
               CASE
                   WHEN h.status = 'STOPPED' THEN 'STOPPED'
                   WHEN clock_timestamp() - h.last_heartbeat
                        > make_interval(secs => p_down_seconds) THEN 'DOWN'
                   WHEN clock_timestamp() - h.last_heartbeat
                        > make_interval(secs => p_warn_seconds) THEN 'WARNING'
                   ELSE 'UP'
               END AS state
        FROM sdk_heartbeat h
    )
    SELECT * FROM (
        SELECT CAST('medical_insurance_sdk' AS varchar), CAST('*' AS varchar),
               CAST('(overall)' AS varchar),
               CAST(CASE WHEN bool_or(w.state = 'UP') THEN 'UP'
                         WHEN bool_or(w.state = 'WARNING') THEN 'WARNING'
                         ELSE 'DOWN' END AS varchar),
               max(w.last_heartbeat), CAST(min(w.age) AS integer),
               CAST(COALESCE(sum(w.in_flight), 0) AS integer), COALESCE(sum(w.processed_total), 0),
               clock_timestamp()
        FROM w
        UNION ALL
        SELECT w.service_name, w.worker_id, w.host, CAST(w.state AS varchar), w.last_heartbeat,
               w.age, w.in_flight, w.processed_total, clock_timestamp()
        FROM w
    ) t (service_name, worker_id, host, status, last_heartbeat, seconds_since_heartbeat,
         in_flight, processed_total, check_time)
    -- the overall row first: a HIS written for the seed reads the first row's status
    ORDER BY (t.worker_id <> '*'), t.service_name, t.worker_id;
$$;

CREATE OR REPLACE FUNCTION mi_monitor_performance(p_hours integer DEFAULT 1)
RETURNS TABLE (total_requests bigint, success_count bigint, error_count bigint,
               timeout_count bigint, uncertain_count bigint, in_progress_count bigint,
               success_rate numeric, error_rate numeric, avg_response_time_ms numeric,
               p95_response_time_ms bigint, max_response_time_ms bigint, since timestamptz)
LANGUAGE sql STABLE
AS $$
    SELECT count(*),
           count(*) FILTER (WHERE v.result_status = 'SUCCESS'),
           count(*) FILTER (WHERE v.result_status = 'ERROR'),
           count(*) FILTER (WHERE v.result_status = 'TIMEOUT'),
           count(*) FILTER (WHERE v.result_status = 'UNCERTAIN'),
           count(*) FILTER (WHERE v.result_status = 'IN_PROGRESS'),
           round(COALESCE(100.0 * count(*) FILTER (WHERE v.result_status = 'SUCCESS')
                          / NULLIF(count(*), 0), 0), 2),
           round(COALESCE(100.0 * count(*) FILTER (WHERE v.result_status = 'ERROR')
                          / NULLIF(count(*), 0), 0), 2),
           round(COALESCE(avg(v.latency_ms), 0), 2),
           percentile_disc(0.95) WITHIN GROUP (ORDER BY v.latency_ms),
           max(v.latency_ms),
           now() - make_interval(hours => p_hours)
    FROM v_medical_insurance_result v
    WHERE v.request_time >= now() - make_interval(hours => p_hours);
$$;

CREATE OR REPLACE FUNCTION mi_monitor_interfaces(p_hours integer DEFAULT 24)
RETURNS TABLE (interface_code varchar, interface_name varchar, total_calls bigint,
               success_calls bigint, error_calls bigint, timeout_calls bigint,
               uncertain_calls bigint, success_rate numeric, avg_response_time_ms numeric,
               p95_response_time_ms bigint, max_response_time_ms bigint)
LANGUAGE sql STABLE
AS $$
    SELECT v.interface_code,
           CAST(COALESCE(max(i.interface_name), '接口' || v.interface_code) AS varchar),
           count(*),
           count(*) FILTER (WHERE v.result_status = 'SUCCESS'),
           count(*) FILTER (WHERE v.result_status = 'ERROR'),
           count(*) FILTER (WHERE v.result_status = 'TIMEOUT'),
           count(*) FILTER (WHERE v.result_status = 'UNCERTAIN'),
           round(100.0 * count(*) FILTER (WHERE v.result_status = 'SUCCESS') / count(*), 2),
           round(COALESCE(avg(v.latency_ms), 0), 2),
           percentile_disc(0.95) WITHIN GROUP (ORDER BY v.latency_ms),
           max(v.latency_ms)
    FROM v_medical_insurance_result v
    LEFT JOIN medical_insurance_interfaces i ON i.interface_code = v.interface_code
    WHERE v.request_time >= now() - make_interval(hours => p_hours)
    GROUP BY v.interface_code
    ORDER BY count(*) DESC, v.interface_code;
$$;

CREATE OR REPLACE FUNCTION mi_monitor_queue()
RETURNS TABLE (status varchar, priority integer, depth bigint, oldest_request_time timestamptz,
               oldest_age_seconds integer)
LANGUAGE sql STABLE
AS $$
    SELECT r.status, r.priority, count(*), min(r.request_time),
           CAST(EXTRACT(EPOCH FROM (clock_timestamp() - min(r.request_time))) AS integer)
    FROM medical_insurance_requests r
    WHERE r.status IN ('PENDING', 'PROCESSING', 'UNCERTAIN', 'NEEDS_MANUAL')
      AND r.resolved_at IS NULL
    GROUP BY r.status, r.priority
    ORDER BY r.status, r.priority;
$$;

CREATE OR REPLACE FUNCTION mi_monitor_workers()
RETURNS TABLE (service_name varchar, worker_id varchar, host varchar, pid integer,
               version varchar, status varchar, started_at timestamptz,
               last_heartbeat timestamptz, seconds_since_heartbeat integer,
               uptime_seconds integer, in_flight integer, processed_total bigint)
LANGUAGE sql STABLE
AS $$
    SELECT h.service_name, h.worker_id, h.host, h.pid, h.version, h.status, h.started_at,
           h.last_heartbeat,
           CAST(EXTRACT(EPOCH FROM (clock_timestamp() - h.last_heartbeat)) AS integer),
           CAST(EXTRACT(EPOCH FROM (h.last_heartbeat - h.started_at)) AS integer),
           h.in_flight, h.processed_total
    FROM sdk_heartbeat h
    ORDER BY h.service_name, h.worker_id;
$$;

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
        ELSE
            RAISE EXCEPTION 'unknown @data_type %: use health, performance, interfaces, queue or workers',
                quote_literal(p_data_type) USING ERRCODE = '22023';
    END CASE;
END;
$$;

-- Current alert conditions (the seed's rules done right: the error-rate rule needs at least
-- p_min_calls finished calls in the hour, a HAVING, not a WHERE; calls still in progress are
-- not in the rate). The alert scan job stores, de-duplicates
-- and resolves them; this function only answers "what is wrong now".
CREATE OR REPLACE FUNCTION sp_check_medical_insurance_alerts(
    p_error_rate_percent numeric DEFAULT 10,
    p_min_calls integer DEFAULT 10,
    p_slow_avg_ms integer DEFAULT 5000,
    p_backlog_pending integer DEFAULT 100,
    p_backlog_age_seconds integer DEFAULT 60,
    p_down_seconds integer DEFAULT 60)
RETURNS TABLE (alert_type varchar, alert_level varchar, alert_message text,
               alert_time timestamptz)
LANGUAGE sql STABLE
AS $$
    SELECT CAST('SERVICE_DOWN' AS varchar), CAST('CRITICAL' AS varchar),
           '医保SDK服务已停止响应: no mi-worker heartbeat in the last ' || p_down_seconds || ' s',
           clock_timestamp()
    WHERE NOT EXISTS (SELECT 1 FROM sdk_heartbeat
                      WHERE status = 'RUNNING'
                        AND last_heartbeat > clock_timestamp() - make_interval(secs => p_down_seconds))
    UNION ALL
    SELECT CAST('HIGH_ERROR_RATE' AS varchar), CAST('WARNING' AS varchar),
           '医保接口错误率过高: ' || round(100.0 * count(*) FILTER (WHERE v.result_status = 'ERROR')
                                     / count(*), 2) || '% of ' || count(*) || ' calls in the last hour',
           clock_timestamp()
    FROM v_medical_insurance_result v
    WHERE v.request_time >= now() - interval '1 hour' AND v.result_status <> 'IN_PROGRESS'
    HAVING count(*) >= p_min_calls
       AND 100.0 * count(*) FILTER (WHERE v.result_status = 'ERROR') / count(*) > p_error_rate_percent
    UNION ALL
    SELECT CAST('SLOW_RESPONSE' AS varchar), CAST('WARNING' AS varchar),
           '医保接口响应时间过慢: average ' || round(avg(v.latency_ms)) || ' ms in the last hour',
           clock_timestamp()
    FROM v_medical_insurance_result v
    WHERE v.request_time >= now() - interval '1 hour' AND v.latency_ms IS NOT NULL
    HAVING avg(v.latency_ms) > p_slow_avg_ms
    UNION ALL
    SELECT CAST('QUEUE_BACKLOG' AS varchar), CAST('WARNING' AS varchar),
           '队列积压: ' || count(*) || ' PENDING, oldest '
           || CAST(EXTRACT(EPOCH FROM (clock_timestamp() - min(r.request_time))) AS integer) || ' s',
           clock_timestamp()
    FROM medical_insurance_requests r
    WHERE r.status = 'PENDING'
    HAVING count(*) > p_backlog_pending
        OR min(r.request_time) < clock_timestamp() - make_interval(secs => p_backlog_age_seconds)
    UNION ALL
    SELECT CAST('UNCERTAIN_REQUESTS' AS varchar), CAST('WARNING' AS varchar),
           '结果不确定: ' || count(*) || ' request(s) UNCERTAIN, reversal (冲正) under way',
           clock_timestamp()
    FROM medical_insurance_requests r
    WHERE r.status = 'UNCERTAIN' OR r.needs_reversal = 1
    HAVING count(*) > 0
    UNION ALL
    SELECT CAST('NEEDS_MANUAL' AS varchar), CAST('CRITICAL' AS varchar),
           '需人工处理: ' || count(*) || ' request(s) NEEDS_MANUAL (mi-worker requests list --status NEEDS_MANUAL)',
           clock_timestamp()
    FROM medical_insurance_requests r
    WHERE r.status = 'NEEDS_MANUAL' AND r.resolved_at IS NULL
    HAVING count(*) > 0;
$$;
