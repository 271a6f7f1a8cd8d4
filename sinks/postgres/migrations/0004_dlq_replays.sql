-- Dead letters replayed from the operator console (console/replays.py): which letter, who
-- replayed it, when, and whether Kafka took it. A state of its own: the audit log only
-- grows and is the trail of who did what, not what the console shows as resolved.
CREATE TABLE dlq_replays (
    id            bigserial   PRIMARY KEY,
    dlq_topic     text        NOT NULL,
    dlq_partition integer     NOT NULL,
    dlq_offset    bigint      NOT NULL,
    event_id      text,
    stage         text        NOT NULL,
    actor         text        NOT NULL,
    replayed_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- sent: back on its stage's input; failed: Kafka did not take it (it may have gone);
    -- no stage: the letter names no stage a replay can go to.
    outcome       text        NOT NULL CHECK (outcome IN ('sent', 'failed', 'no stage'))
);
CREATE INDEX dlq_replays_letter ON dlq_replays (dlq_topic, dlq_partition, dlq_offset);
CREATE INDEX dlq_replays_event ON dlq_replays (event_id);
