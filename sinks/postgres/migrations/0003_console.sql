-- The operator console (console/): its users, and where each event was read from.

-- Console users: argon2id hashes only; each role includes the ones before it:
-- viewer < operator (replay) < phi (reveal patient data) < admin (users, audit log).
CREATE TABLE console_users (
    username       text        PRIMARY KEY CHECK (username ~ '^[a-z0-9][a-z0-9_.@-]{0,63}$'),
    password_hash  text        NOT NULL,
    role           text        NOT NULL CHECK (role IN ('viewer', 'operator', 'phi', 'admin')),
    -- Bumped by logout and by a password change: sessions issued before are void.
    session_epoch  integer     NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- The clean (or retry) topic message the writer stored the event from, written by the
-- same INSERT as the event: the console's timeline shows it, and reads Kafka from it.
ALTER TABLE spakinect_events
    ADD COLUMN clean_topic     text,
    ADD COLUMN clean_partition integer,
    ADD COLUMN clean_offset    bigint;
