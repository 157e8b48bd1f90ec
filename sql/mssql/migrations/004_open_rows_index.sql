-- Open rows (what the queue monitor, the alert scan and `mi-worker status` read every minute)
-- in a small filtered index, so those reads never scan the request history.
SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO
IF NOT EXISTS (SELECT 1 FROM sys.indexes
               WHERE name = N'ix_mir_open_rows'
                 AND object_id = OBJECT_ID(N'dbo.medical_insurance_requests'))
BEGIN
    CREATE NONCLUSTERED INDEX ix_mir_open_rows
        ON dbo.medical_insurance_requests (status, priority, request_time)
        WHERE status IN (N'PENDING', N'PROCESSING', N'UNCERTAIN', N'NEEDS_MANUAL')
          AND resolved_at IS NULL;
END;
GO
