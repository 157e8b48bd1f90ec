-- Review D14 (issue 12): the HIS procedures' psn_no / insuplc_admdvs search on SQL Server
-- versions without JSON_VALUE (dbo.fn_mi_json_text) now picks the same occurrence as
-- PostgreSQL (v_doc #>> '{data,psn_no}', then v_doc ->> 'psn_no', then a nested one): the
-- key directly inside the top-level "data" object first, then a top-level key, then the
-- first other occurrence; and a number is read like a string ("psn_no": 123 gives '123';
-- before, any non-string value gave NULL and the per-patient order was lost).
--
-- Depth is counted with set-based string functions (REPLACE over the text before the key),
-- not a character loop, so a large input costs a few scans, not one statement per character.
-- Braces inside string values before the key can mislead the count; escapes are still not
-- decoded. The HIS that needs exactness passes @psn_no. The worker reads the JSON fully.
-- Re-runnable; ALTER keeps permissions.
SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
SET ANSI_PADDING ON;
SET ANSI_WARNINGS ON;
SET ARITHABORT ON;
SET CONCAT_NULL_YIELDS_NULL ON;
SET NUMERIC_ROUNDABORT OFF;
GO

IF OBJECT_ID(N'dbo.fn_mi_json_text', N'FN') IS NULL
    EXEC (N'CREATE FUNCTION dbo.fn_mi_json_text (@json NVARCHAR(MAX), @key NVARCHAR(100))
        RETURNS NVARCHAR(4000) AS BEGIN RETURN NULL; END;');
GO

SET ANSI_NULLS ON;
SET QUOTED_IDENTIFIER ON;
GO

ALTER FUNCTION dbo.fn_mi_json_text (@json NVARCHAR(MAX), @key NVARCHAR(100))
RETURNS NVARCHAR(4000)
AS
BEGIN
    DECLARE @needle NVARCHAR(102);
    DECLARE @len BIGINT;
    DECLARE @pos BIGINT;
    DECLARE @p BIGINT;
    DECLARE @close BIGINT;
    DECLARE @ch NCHAR(1);
    DECLARE @value NVARCHAR(4000);
    DECLARE @prefix NVARCHAR(MAX);
    DECLARE @depth INT;
    DECLARE @rank INT;
    DECLARE @best NVARCHAR(4000) = NULL;
    DECLARE @best_rank INT = 4;
    DECLARE @back BIGINT;
    DECLARE @data_pos BIGINT;
    DECLARE @before NVARCHAR(MAX);
    DECLARE @slice NVARCHAR(MAX);
    DECLARE @lead NVARCHAR(MAX);

    IF @json IS NULL OR @key IS NULL
        RETURN NULL;
    SET @needle = N'"' + @key + N'"';
    SET @len = DATALENGTH(@json) / 2;
    SET @pos = CHARINDEX(@needle COLLATE Latin1_General_BIN2, @json COLLATE Latin1_General_BIN2);
    WHILE @pos > 0 AND @best_rank > 1
    BEGIN
        SET @p = @pos + DATALENGTH(@needle) / 2;
        WHILE @p <= @len AND UNICODE(SUBSTRING(@json COLLATE Latin1_General_BIN2, @p, 1)) IN (32, 9, 10, 13)
            SET @p = @p + 1;
        -- A key is followed by a colon; anything else was the text inside a value.
        IF SUBSTRING(@json COLLATE Latin1_General_BIN2, @p, 1) = N':'
        BEGIN
            SET @p = @p + 1;
            WHILE @p <= @len AND UNICODE(SUBSTRING(@json COLLATE Latin1_General_BIN2, @p, 1)) IN (32, 9, 10, 13)
                SET @p = @p + 1;
            SET @value = NULL;
            SET @ch = SUBSTRING(@json COLLATE Latin1_General_BIN2, @p, 1);
            IF @ch = N'"'
            BEGIN
                SET @close = CHARINDEX(N'"' COLLATE Latin1_General_BIN2, @json COLLATE Latin1_General_BIN2, @p + 1);
                IF @close > 0
                    SET @value = SUBSTRING(@json COLLATE Latin1_General_BIN2, @p + 1, @close - @p - 1);
            END
            ELSE IF @ch COLLATE Latin1_General_BIN2 LIKE N'[0-9-]'
            BEGIN
                SET @close = @p;
                WHILE @close <= @len
                    AND SUBSTRING(@json COLLATE Latin1_General_BIN2, @close, 1) LIKE N'[0-9.eE+-]'
                    SET @close = @close + 1;
                SET @value = SUBSTRING(@json COLLATE Latin1_General_BIN2, @p, @close - @p);
            END;
            IF @value IS NOT NULL
            BEGIN
                -- depth = unclosed { before the key: 1 at the top level, 2 inside "data"
                SET @prefix = LEFT(@json COLLATE Latin1_General_BIN2, @pos - 1);
                SET @depth = CAST((DATALENGTH(@prefix) - DATALENGTH(REPLACE(@prefix COLLATE Latin1_General_BIN2, N'{', N''))) / 2
                    - (DATALENGTH(@prefix) - DATALENGTH(REPLACE(@prefix COLLATE Latin1_General_BIN2, N'}', N''))) / 2 AS INT);
                SET @rank = CASE WHEN @depth = 1 THEN 2 ELSE 3 END;
                IF @depth = 2
                BEGIN
                    -- the last "data" key before this one: a top-level key whose object,
                    -- opened right after its colon, is still the one open here
                    SET @back = CHARINDEX(REVERSE(N'"data"') COLLATE Latin1_General_BIN2,
                                          REVERSE(@prefix) COLLATE Latin1_General_BIN2);
                    IF @back > 0
                    BEGIN
                        SET @data_pos = DATALENGTH(@prefix) / 2 - @back - 4;
                        SET @before = LEFT(@json COLLATE Latin1_General_BIN2, @data_pos - 1);
                        SET @slice = SUBSTRING(@json COLLATE Latin1_General_BIN2, @data_pos + 6,
                                               @pos - @data_pos - 6);
                        SET @lead = CASE WHEN CHARINDEX(N'{' COLLATE Latin1_General_BIN2, @slice COLLATE Latin1_General_BIN2) > 0
                            THEN LEFT(@slice COLLATE Latin1_General_BIN2, CHARINDEX(N'{' COLLATE Latin1_General_BIN2, @slice COLLATE Latin1_General_BIN2) - 1)
                            ELSE N'?' END;
                        SET @lead = REPLACE(REPLACE(REPLACE(REPLACE(@lead COLLATE Latin1_General_BIN2,
                            N' ', N''), NCHAR(9), N''), NCHAR(10), N''), NCHAR(13), N'');
                        IF @lead = N':'
                            AND (DATALENGTH(@before) - DATALENGTH(REPLACE(@before COLLATE Latin1_General_BIN2, N'{', N''))) / 2
                              - (DATALENGTH(@before) - DATALENGTH(REPLACE(@before COLLATE Latin1_General_BIN2, N'}', N''))) / 2 = 1
                            AND (DATALENGTH(@slice) - DATALENGTH(REPLACE(@slice COLLATE Latin1_General_BIN2, N'{', N''))) / 2
                              - (DATALENGTH(@slice) - DATALENGTH(REPLACE(@slice COLLATE Latin1_General_BIN2, N'}', N''))) / 2 = 1
                            SET @rank = 1;
                    END;
                END;
                IF @rank < @best_rank
                BEGIN
                    SET @best = @value;
                    SET @best_rank = @rank;
                END;
            END;
        END;
        SET @pos = CHARINDEX(@needle COLLATE Latin1_General_BIN2, @json COLLATE Latin1_General_BIN2, @pos + 1);
    END;
    RETURN @best;
END;
GO
