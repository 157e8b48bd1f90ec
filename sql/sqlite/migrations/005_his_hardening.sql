-- Issue 12: why the HIS may not call a code the worker manages itself (9001, 9002, and 2601
-- unless manual reversal is enabled), written by `mi-worker db upgrade` from the catalogue;
-- blank idempotency keys were real keys and become NULL.
ALTER TABLE medical_insurance_interfaces ADD COLUMN his_refused TEXT;

UPDATE medical_insurance_requests SET idempotency_key = NULL WHERE trim(idempotency_key) = '';
