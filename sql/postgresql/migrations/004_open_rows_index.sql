-- Open rows (what the queue monitor, the alert scan and `mi-worker status` read every minute)
-- in a small partial index, so those reads never scan the request history.
CREATE INDEX IF NOT EXISTS ix_mir_open_rows ON medical_insurance_requests (status, priority, request_time)
    WHERE status IN ('PENDING', 'PROCESSING', 'UNCERTAIN', 'NEEDS_MANUAL') AND resolved_at IS NULL;
