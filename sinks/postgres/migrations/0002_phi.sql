-- Patient data lifecycle (docs/patient-data.md): the patient_* columns and
-- spakinect_events.payload -> data.patient_details now hold application-side
-- ciphertext ("phi1:<key id>:<base64url>"); `spakinect-pipeline phi rotate-key`
-- seals rows written before this migration.

ALTER TABLE gfe_visits
    ADD COLUMN patient_email_index text,          -- HMAC-SHA256 of the normalized email
    ADD COLUMN phi_redacted_at     timestamptz;   -- set when the patient fields were erased
CREATE INDEX gfe_visits_email_index_idx ON gfe_visits (patient_email_index)
    WHERE patient_email_index IS NOT NULL;
CREATE INDEX gfe_visits_unredacted_idx ON gfe_visits (completed_at) WHERE phi_redacted_at IS NULL;

ALTER TABLE spakinect_events
    ADD COLUMN patient_email_index text,
    ADD COLUMN phi_redacted_at     timestamptz;
CREATE INDEX spakinect_events_email_index_idx ON spakinect_events (patient_email_index)
    WHERE patient_email_index IS NOT NULL;
CREATE INDEX spakinect_events_unredacted_idx ON spakinect_events (occurred_at)
    WHERE phi_redacted_at IS NULL AND event = 'visit.completed';

-- One row per erased subject: a keyed hash of a gfe_id or an email, never the value.
CREATE TABLE phi_erasures (
    marker     text PRIMARY KEY,
    kind       text        NOT NULL CHECK (kind IN ('gfe_id', 'email')),
    erased_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Who did what to patient data, append-only (an operator console writes here too).
CREATE TABLE audit_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor        text        NOT NULL,   -- "os:<user>", "console:<user>", ...
    action       text        NOT NULL,   -- "phi.forget", "phi.rotate-key", "dlq.replay", ...
    target       text        NOT NULL,   -- what it was done to; never plaintext patient data
    reason       text,
    client_addr  inet,
    details      jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_action_idx ON audit_log (action, at);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
