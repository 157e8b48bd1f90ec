-- The dashboard's request list (issue 16) filters the whole history by status, interface code,
-- patient or HIS fee id and pages newest-first by request_id (keyset: request_id < the last
-- one shown, never OFFSET). Each filter gets an index that ends in request_id, so a page is an
-- index range scan of page-size rows however long the history is. msgid already has
-- ux_mir_msgid, a time range ix_mir_request_time. Cost: four more index entries per row
-- written. Filtered indexes need these SET options at creation (and in the sessions that
-- write the table; the worker's sessions have them by default).
SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO
IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE name = N'ix_mir_status_id'
                 AND object_id = OBJECT_ID(N'dbo.medical_insurance_requests'))
BEGIN
    CREATE NONCLUSTERED INDEX ix_mir_status_id
        ON dbo.medical_insurance_requests (status, request_id);
END;
GO
IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE name = N'ix_mir_interface_id'
                 AND object_id = OBJECT_ID(N'dbo.medical_insurance_requests'))
BEGIN
    CREATE NONCLUSTERED INDEX ix_mir_interface_id
        ON dbo.medical_insurance_requests (interface_code, request_id);
END;
GO
IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE name = N'ix_mir_psn_id'
                 AND object_id = OBJECT_ID(N'dbo.medical_insurance_requests'))
BEGIN
    CREATE NONCLUSTERED INDEX ix_mir_psn_id
        ON dbo.medical_insurance_requests (psn_no, request_id)
        WHERE psn_no IS NOT NULL;
END;
GO
IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE name = N'ix_mir_his_fee'
                 AND object_id = OBJECT_ID(N'dbo.medical_insurance_requests'))
BEGIN
    CREATE NONCLUSTERED INDEX ix_mir_his_fee
        ON dbo.medical_insurance_requests (his_fee_id, request_id)
        WHERE his_fee_id IS NOT NULL;
END;
GO
