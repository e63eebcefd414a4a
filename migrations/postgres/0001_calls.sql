-- deskhook's shared call history: one row per answered call of every PBX, written by each
-- PBX's deskhook, read by every /forward's `history` resolver. Applied by deskhook itself
-- (in order, once, under an advisory lock) and recorded in deskhook_schema.
CREATE TABLE deskhook_calls (
    pbx          text        NOT NULL,   -- [pbx] name of the deskhook that saw the call
    unique_id    text        NOT NULL,   -- the call's Asterisk linkedid
    client       text        NOT NULL,   -- the client's number, normalised (e.g. 79161234567)
    operator     text        NOT NULL,   -- the extension that talked with the client
    direction    text        NOT NULL CHECK (direction IN ('in', 'out')),
    ended_at     timestamptz NOT NULL,
    talk_seconds integer     NOT NULL,
    PRIMARY KEY (pbx, unique_id)
);
CREATE INDEX deskhook_calls_by_client ON deskhook_calls (client, ended_at DESC);
CREATE INDEX deskhook_calls_by_age ON deskhook_calls (ended_at);
