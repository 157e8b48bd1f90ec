-- Issue 11: which gateway each worker talks to, so a worker settling against a FAKE centre
-- (gateway.kind sandbox / noop, allowed on a server database only with
-- gateway.allow_fake_centre = true) is visible to DBAs and raises FAKE_GATEWAY, and workers
-- of different kinds on one database raise MIXED_GATEWAY_KINDS. gateway_tls_verified is 0
-- when the worker runs with gateway.verify_tls = false (alert TLS_VERIFY_OFF). Both NULL for
-- rows written by older workers.
--
-- mi_monitor_health gains a gateway_kind column (MIXED on the overall row when live workers
-- differ); its row type changes, so it is dropped and created (sp_get_medical_insurance_
-- monitor_data is PL/pgSQL and picks the new column up by itself).
-- sp_check_medical_insurance_alerts gains FAKE_GATEWAY, MIXED_GATEWAY_KINDS and
-- TLS_VERIFY_OFF (same signature and columns: replaced in place).

ALTER TABLE sdk_heartbeat ADD COLUMN IF NOT EXISTS gateway_kind varchar(16);
ALTER TABLE sdk_heartbeat ADD COLUMN IF NOT EXISTS gateway_tls_verified smallint;

DROP FUNCTION IF EXISTS mi_monitor_health(integer, integer);

CREATE FUNCTION mi_monitor_health(p_warn_seconds integer DEFAULT 30,
                                             p_down_seconds integer DEFAULT 60)
RETURNS TABLE (service_name varchar, worker_id varchar, host varchar, status varchar,
               last_heartbeat timestamptz, seconds_since_heartbeat integer,
               in_flight integer, processed_total bigint, check_time timestamptz,
               gateway_kind varchar)
LANGUAGE sql STABLE
AS $$
    WITH w AS (
        SELECT h.service_name, h.worker_id, h.host, h.last_heartbeat, h.in_flight,
               h.processed_total, h.gateway_kind,
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
               clock_timestamp(),
               -- the one gateway.kind of the live workers, MIXED when they differ
               CAST(CASE WHEN count(DISTINCT w.gateway_kind)
                                  FILTER (WHERE w.state IN ('UP', 'WARNING')) > 1 THEN 'MIXED'
                         ELSE max(w.gateway_kind) FILTER (WHERE w.state IN ('UP', 'WARNING'))
                    END AS varchar)
        FROM w
        UNION ALL
        SELECT w.service_name, w.worker_id, w.host, CAST(w.state AS varchar), w.last_heartbeat,
               w.age, w.in_flight, w.processed_total, clock_timestamp(), w.gateway_kind
        FROM w
    ) t (service_name, worker_id, host, status, last_heartbeat, seconds_since_heartbeat,
         in_flight, processed_total, check_time, gateway_kind)
    -- the overall row first: a HIS written for the seed reads the first row's status
    ORDER BY (t.worker_id <> '*'), t.service_name, t.worker_id;
$$;

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
    HAVING count(*) > 0
    UNION ALL
    -- issue 11: live workers on a FAKE centre, of different kinds, or without TLS checks
    SELECT CAST('FAKE_GATEWAY' AS varchar), CAST('WARNING' AS varchar),
           '假医保中心: ' || count(*) || ' live worker(s) use gateway.kind sandbox/noop (a FAKE '
           || 'centre, nothing reaches the national platform), e.g. ' || min(h.worker_id),
           clock_timestamp()
    FROM sdk_heartbeat h
    WHERE h.status = 'RUNNING' AND h.gateway_kind IN ('sandbox', 'noop')
      AND h.last_heartbeat > clock_timestamp() - make_interval(secs => p_down_seconds)
    HAVING count(*) > 0
    UNION ALL
    SELECT CAST('MIXED_GATEWAY_KINDS' AS varchar), CAST('CRITICAL' AS varchar),
           '网关类型不一致: live workers on this database use gateway.kind ' || min(h.gateway_kind)
           || ' and ' || max(h.gateway_kind) || ' at once',
           clock_timestamp()
    FROM sdk_heartbeat h
    WHERE h.status = 'RUNNING' AND h.gateway_kind IS NOT NULL
      AND h.last_heartbeat > clock_timestamp() - make_interval(secs => p_down_seconds)
    HAVING count(DISTINCT h.gateway_kind) > 1
    UNION ALL
    SELECT CAST('TLS_VERIFY_OFF' AS varchar), CAST('WARNING' AS varchar),
           'TLS证书未校验: gateway.verify_tls = false on ' || count(*) || ' live worker(s), e.g. '
           || min(h.worker_id),
           clock_timestamp()
    FROM sdk_heartbeat h
    WHERE h.status = 'RUNNING' AND h.gateway_tls_verified = 0
      AND h.last_heartbeat > clock_timestamp() - make_interval(secs => p_down_seconds)
    HAVING count(*) > 0;
$$;
