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
