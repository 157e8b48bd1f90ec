-- The dashboard's request list (issue 16) filters the whole history by status, interface code,
-- patient or HIS fee id and pages newest-first by request_id (keyset: request_id < the last
-- one shown, never OFFSET). Each filter gets an index that ends in request_id, so a page is an
-- index range scan of page-size rows however long the history is. msgid already has
-- ux_mir_msgid, a time range ix_mir_request_time. Cost: four more index entries per row
-- written (measured by the benchmark; the claim/complete path is unchanged otherwise).
CREATE INDEX IF NOT EXISTS ix_mir_status_id ON medical_insurance_requests (status, request_id);
CREATE INDEX IF NOT EXISTS ix_mir_interface_id
    ON medical_insurance_requests (interface_code, request_id);
CREATE INDEX IF NOT EXISTS ix_mir_psn_id ON medical_insurance_requests (psn_no, request_id)
    WHERE psn_no IS NOT NULL;
CREATE INDEX IF NOT EXISTS ix_mir_his_fee ON medical_insurance_requests (his_fee_id, request_id)
    WHERE his_fee_id IS NOT NULL;
