-- Issue 15: calls that do not wait. An async row (`mi-worker submit`) is an ordinary request
-- row with async_call = 1: the same claim, retry, lease and reversal rules, but it carries its
-- own deadline (default 24 h) since nobody waits on it, and `mi-worker result` reads only
-- such rows.
ALTER TABLE medical_insurance_requests ADD COLUMN async_call INTEGER NOT NULL DEFAULT 0;
