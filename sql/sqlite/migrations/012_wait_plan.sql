-- Issue 17: the first poll of a waiting caller (mi-worker call) is timed from the interface's
-- recent INSERT-to-result median, which the workers publish here (record_interface_latency);
-- see the PostgreSQL migration 012 and mi_worker/wait_plan.py.
ALTER TABLE medical_insurance_interfaces ADD COLUMN expected_ms INTEGER;
ALTER TABLE medical_insurance_interfaces ADD COLUMN expected_at TEXT;
