-- The writer's schema (docs/contract.md, "Postgres tables"). Applied once, under an advisory lock.

CREATE TABLE spakinect_events (
    event_id     text PRIMARY KEY,
    event        text        NOT NULL,
    entity_id    text        NOT NULL,
    occurred_at  timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    success      boolean     NOT NULL,
    disposition  text        NOT NULL CHECK (disposition IN ('apply', 'stale', 'unsuccessful')),
    payload      jsonb       NOT NULL,
    inserted_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX spakinect_events_entity_idx ON spakinect_events (entity_id, occurred_at);

CREATE TABLE gfe_visits (
    gfe_id              text PRIMARY KEY,
    location_id         text,
    status              text,
    pdf_link            text,
    patient_name        text,
    patient_first_name  text,
    patient_last_name   text,
    patient_email       text,
    completed_at        timestamptz NOT NULL,
    event_id            text        NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX gfe_visits_location_idx ON gfe_visits (location_id);

CREATE TABLE gfe_visit_treatments (
    gfe_id          text NOT NULL REFERENCES gfe_visits (gfe_id) ON DELETE CASCADE,
    treatment_name  text NOT NULL,
    decision        text NOT NULL
        CHECK (decision IN ('requested', 'approved', 'conditionally_approved', 'deferred')),
    PRIMARY KEY (gfe_id, treatment_name, decision)
);

CREATE TABLE treatments (
    treatment_id    text PRIMARY KEY,
    treatment_name  text,
    last_action     text        NOT NULL CHECK (last_action IN ('created', 'updated', 'deleted')),
    deleted         boolean     NOT NULL,
    last_event_at   timestamptz NOT NULL,
    event_id        text        NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
