-- 0003_custom_fields: the tenant's typed custom fields per entity. Once a
-- tenant defines any for an entity, that entity's custom_fields object may
-- hold only defined keys, each of its type; required ones must be there.

CREATE TABLE crm.custom_field_defs (
	tenant_id uuid NOT NULL,
	entity text NOT NULL
		CHECK (entity IN ('lead', 'contact', 'company', 'deal')),
	key text NOT NULL CHECK (key ~ '^[a-z][a-z0-9_]{0,39}$'),
	label text NOT NULL CHECK (length(label) BETWEEN 1 AND 100),
	type text NOT NULL
		CHECK (type IN ('text', 'number', 'boolean', 'date', 'select')),
	options text[] NOT NULL DEFAULT '{}'
		CHECK (cardinality(options) <= 50),
	required boolean NOT NULL DEFAULT false,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, entity, key)
);

SELECT crm.protect('crm.custom_field_defs');
