-- Issue 11: which gateway each worker talks to (sandbox / noop are FAKE centres; see the
-- PostgreSQL file for the why). NULL for rows written by older workers.
ALTER TABLE sdk_heartbeat ADD COLUMN gateway_kind TEXT;
ALTER TABLE sdk_heartbeat ADD COLUMN gateway_tls_verified INTEGER;
