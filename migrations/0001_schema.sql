-- 0001_schema: the tables of the map, its change log and its bookkeeping.
--
-- The syntax rules of the contract (kinds, names, sources, edge types, health states)
-- are repeated here as CHECK constraints, so bad data cannot exist even if a bug in the
-- server lets it through. Functions live in later migrations.

CREATE TABLE nodes (
    id            uuid        PRIMARY KEY,
    kind          text        NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_]{0,31}$'),
    name          text        NOT NULL CHECK (octet_length(name) BETWEEN 1 AND 255
                                              AND name !~ '[\x01-\x1f\x7f-\x9f]'),
    attributes    jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(attributes) = 'object'),
    labels        jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(labels) = 'object'),
    health        text        NOT NULL DEFAULT 'unknown'
                              CHECK (health IN ('ok', 'degraded', 'down', 'unknown')),
    health_reason text,
    health_at     timestamptz,
    orphan        boolean     NOT NULL DEFAULT false,
    version       bigint      NOT NULL DEFAULT 1 CHECK (version > 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, name)
);
-- Byte-order listing and prefix search on the ref.
CREATE INDEX nodes_ref_idx ON nodes ((kind || '/' || name) COLLATE "C");
CREATE INDEX nodes_labels_idx ON nodes USING gin (labels jsonb_path_ops);
CREATE INDEX nodes_orphan_idx ON nodes (kind, name) WHERE orphan;
CREATE INDEX nodes_health_idx ON nodes (health);

-- Which sources assert a node. Hand edits assert under 'api:<token name>'.
CREATE TABLE node_sources (
    node_id     uuid        NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    source      text        NOT NULL CHECK (source ~ '^[a-z0-9][a-z0-9_.:-]{0,127}$'),
    asserted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node_id, source)
);
CREATE INDEX node_sources_source_idx ON node_sources (source);

CREATE TABLE edges (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    from_id    uuid        NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    type       text        NOT NULL
                           CHECK (type IN ('depends_on', 'runs_on', 'connects_to', 'part_of', 'owned_by')),
    to_id      uuid        NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    attributes jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(attributes) = 'object'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (from_id <> to_id),
    UNIQUE (from_id, type, to_id)
);
CREATE INDEX edges_to_idx ON edges (to_id);

CREATE TABLE edge_sources (
    edge_id     bigint      NOT NULL REFERENCES edges (id) ON DELETE CASCADE,
    source      text        NOT NULL CHECK (source ~ '^[a-z0-9][a-z0-9_.:-]{0,127}$'),
    asserted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (edge_id, source)
);
CREATE INDEX edge_sources_source_idx ON edge_sources (source);

-- What each manifest source last sent.
CREATE TABLE source_state (
    -- 'api:…' sources belong to hand edits; a manifest may not speak for them.
    source          text        PRIMARY KEY CHECK (source ~ '^[a-z0-9][a-z0-9_.:-]{0,127}$'
                                                   AND source NOT LIKE 'api:%'),
    generation      bigint,
    manifest_hash   text        NOT NULL,
    -- A hand delete removed something this source asserts: the next manifest is
    -- applied in full even when it is the same body (no fast no-op).
    stale           boolean     NOT NULL DEFAULT false,
    last_report     jsonb       NOT NULL,
    last_applied_at timestamptz NOT NULL DEFAULT now()
);

-- The change log. Rows are inserted with seq NULL and numbered by
-- cmdb_commit_changes() as the last step of the writing transaction, from the one
-- counter row below, so that seq order is commit order.
CREATE TABLE changes (
    local_id bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq      bigint      UNIQUE,
    at       timestamptz NOT NULL DEFAULT now(),
    actor    text        NOT NULL,
    source   text        NOT NULL,
    op       text        NOT NULL CHECK (op IN ('node.created', 'node.updated', 'node.deleted',
                                                'edge.created', 'edge.updated', 'edge.deleted')),
    ref      text        NOT NULL,
    before   jsonb,
    after    jsonb,
    CHECK (before IS NOT NULL OR after IS NOT NULL)
);
CREATE INDEX changes_unnumbered_idx ON changes (local_id) WHERE seq IS NULL;

CREATE TABLE change_seq (
    one  boolean PRIMARY KEY DEFAULT true CHECK (one),
    last bigint  NOT NULL DEFAULT 0
);
INSERT INTO change_seq DEFAULT VALUES;

CREATE TABLE deployments (
    id          uuid        PRIMARY KEY,
    source      text        NOT NULL,
    node        text,
    version     text,
    revision    text,
    environment text,
    actor       text,
    status      text,
    started_at  timestamptz,
    finished_at timestamptz,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    seq         bigint,
    generation  bigint,
    report      jsonb       NOT NULL,
    extensions  jsonb
);
CREATE INDEX deployments_node_idx ON deployments (node, applied_at DESC, id);
CREATE INDEX deployments_applied_idx ON deployments (applied_at DESC, id);

CREATE TABLE tokens (
    name        text        PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$'),
    hash        text        NOT NULL UNIQUE CHECK (hash ~ '^[0-9a-f]{64}$'),
    scope       text        NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
    source_glob text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz
);

CREATE TABLE idempotency (
    token_name   text        NOT NULL,
    key          text        NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash text        NOT NULL,
    response     jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (token_name, key)
);
CREATE INDEX idempotency_created_idx ON idempotency (created_at);
