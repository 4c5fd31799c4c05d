-- 0001_crm: companies, contacts, leads, pipelines and stages, deals and
-- their stage history, activities, notes, per-tenant scoring rules,
-- idempotency keys and the event outbox.
--
-- Every table is tenant data: tenant_id NOT NULL, row-level security
-- enabled AND forced (the owner, bz_crm, is subject to it too), one policy
-- on app.tenant_id (set by cm_db_tx_tenant). References between tenant
-- tables are composite foreign keys (tenant_id, x_id) -> (tenant_id, id),
-- so naming another tenant's row fails exactly like naming a missing one
-- (a plain key would let the referential check, which ignores row-level
-- security, reveal that the row exists). Soft delete: deleted_at.
-- version counts writes and is the ETag. search is a generated tsvector
-- (the 'simple' configuration: names and emails are not stemmed) with a
-- GIN index. The schema is owned by bz_crm, so no grants are needed.

CREATE FUNCTION crm.protect(t regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
	EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', t);
	EXECUTE format('CREATE POLICY tenant_isolation ON %s '
		'USING (tenant_id = NULLIF(current_setting('
		'''app.tenant_id'', true), '''')::uuid) '
		'WITH CHECK (tenant_id = NULLIF(current_setting('
		'''app.tenant_id'', true), '''')::uuid)', t);
END
$$;

CREATE TABLE crm.companies (
	id uuid NOT NULL DEFAULT gen_random_uuid(),
	tenant_id uuid NOT NULL,
	name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
	domain text CHECK (length(domain) <= 253),
	website text CHECK (length(website) <= 2048),
	industry text CHECK (length(industry) <= 100),
	size text CHECK (size IN ('startup', 'small', 'medium', 'large',
				  'enterprise')),
	annual_revenue numeric(15, 2) CHECK (annual_revenue >= 0),
	phone text CHECK (length(phone) <= 40),
	address text CHECK (length(address) <= 500),
	description text CHECK (length(description) <= 5000),
	owner_id uuid,
	tags text[] NOT NULL DEFAULT '{}',
	custom_fields jsonb NOT NULL DEFAULT '{}'
		CHECK (jsonb_typeof(custom_fields) = 'object'),
	version integer NOT NULL DEFAULT 1,
	created_by text,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	deleted_at timestamptz,
	search tsvector GENERATED ALWAYS AS (to_tsvector('simple',
		coalesce(name, '') || ' ' || coalesce(domain, '') || ' ' ||
		coalesce(industry, '') || ' ' || coalesce(description, '')))
		STORED,
	PRIMARY KEY (id),
	UNIQUE (tenant_id, id)
);
CREATE INDEX companies_created_idx ON crm.companies
	(tenant_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX companies_name_idx ON crm.companies (tenant_id, lower(name))
	WHERE deleted_at IS NULL;
CREATE INDEX companies_search_idx ON crm.companies USING gin (search);

CREATE TABLE crm.contacts (
	id uuid NOT NULL DEFAULT gen_random_uuid(),
	tenant_id uuid NOT NULL,
	name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
	email text CHECK (length(email) <= 254),
	phone text CHECK (length(phone) <= 40),
	job_title text CHECK (length(job_title) <= 200),
	company_id uuid,
	owner_id uuid,
	source text CHECK (length(source) <= 64),
	tags text[] NOT NULL DEFAULT '{}',
	custom_fields jsonb NOT NULL DEFAULT '{}'
		CHECK (jsonb_typeof(custom_fields) = 'object'),
	version integer NOT NULL DEFAULT 1,
	created_by text,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	deleted_at timestamptz,
	search tsvector GENERATED ALWAYS AS (to_tsvector('simple',
		coalesce(name, '') || ' ' || coalesce(email, '') || ' ' ||
		coalesce(phone, '') || ' ' || coalesce(job_title, '')))
		STORED,
	PRIMARY KEY (id),
	UNIQUE (tenant_id, id),
	CONSTRAINT fk_company_id FOREIGN KEY (tenant_id, company_id)
		REFERENCES crm.companies (tenant_id, id)
);
CREATE INDEX contacts_created_idx ON crm.contacts
	(tenant_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX contacts_email_idx ON crm.contacts (tenant_id, lower(email))
	WHERE deleted_at IS NULL;
CREATE INDEX contacts_company_idx ON crm.contacts (tenant_id, company_id);
CREATE INDEX contacts_search_idx ON crm.contacts USING gin (search);

CREATE TABLE crm.pipelines (
	id uuid NOT NULL DEFAULT gen_random_uuid(),
	tenant_id uuid NOT NULL,
	name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
	is_default boolean NOT NULL DEFAULT false,
	version integer NOT NULL DEFAULT 1,
	created_by text,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	deleted_at timestamptz,
	PRIMARY KEY (id),
	UNIQUE (tenant_id, id)
);
-- One default pipeline per tenant: two first uses racing collide here.
CREATE UNIQUE INDEX pipelines_default_idx ON crm.pipelines (tenant_id)
	WHERE is_default AND deleted_at IS NULL;

CREATE TABLE crm.pipeline_stages (
	id uuid NOT NULL DEFAULT gen_random_uuid(),
	tenant_id uuid NOT NULL,
	pipeline_id uuid NOT NULL,
	name text NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
	position integer NOT NULL CHECK (position >= 0),
	probability integer NOT NULL DEFAULT 0
		CHECK (probability BETWEEN 0 AND 100),
	is_won boolean NOT NULL DEFAULT false,
	is_lost boolean NOT NULL DEFAULT false CHECK (NOT (is_won AND is_lost)),
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (id),
	UNIQUE (tenant_id, id),
	UNIQUE (tenant_id, pipeline_id, position),
	CONSTRAINT fk_pipeline_id FOREIGN KEY (tenant_id, pipeline_id)
		REFERENCES crm.pipelines (tenant_id, id)
);

CREATE TABLE crm.leads (
	id uuid NOT NULL DEFAULT gen_random_uuid(),
	tenant_id uuid NOT NULL,
	name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
	email text CHECK (length(email) <= 254),
	phone text CHECK (length(phone) <= 40),
	company text CHECK (length(company) <= 200),
	job_title text CHECK (length(job_title) <= 200),
	company_website text CHECK (length(company_website) <= 2048),
	company_size text CHECK (company_size IN ('startup', 'small', 'medium',
						  'large', 'enterprise')),
	industry text CHECK (length(industry) <= 100),
	annual_revenue numeric(15, 2) CHECK (annual_revenue >= 0),
	status text NOT NULL DEFAULT 'new'
		CHECK (status IN ('new', 'contacted', 'qualified', 'proposal',
				  'negotiation', 'converted', 'lost',
				  'unresponsive')),
	priority text NOT NULL DEFAULT 'medium'
		CHECK (priority IN ('low', 'medium', 'high', 'urgent')),
	source text CHECK (length(source) <= 64),
	owner_id uuid,
	score integer NOT NULL DEFAULT 0 CHECK (score BETWEEN 0 AND 100),
	score_factors jsonb NOT NULL DEFAULT '[]'
		CHECK (jsonb_typeof(score_factors) = 'array'),
	scored_at timestamptz,
	tags text[] NOT NULL DEFAULT '{}',
	budget numeric(15, 2) CHECK (budget >= 0),
	timeline text CHECK (length(timeline) <= 64),
	decision_maker boolean NOT NULL DEFAULT false,
	pain_points text CHECK (length(pain_points) <= 5000),
	requirements text CHECK (length(requirements) <= 5000),
	utm_source text CHECK (length(utm_source) <= 200),
	utm_medium text CHECK (length(utm_medium) <= 200),
	utm_campaign text CHECK (length(utm_campaign) <= 200),
	utm_term text CHECK (length(utm_term) <= 200),
	utm_content text CHECK (length(utm_content) <= 200),
	referrer text CHECK (length(referrer) <= 2048),
	first_contact_at timestamptz,
	last_contact_at timestamptz,
	next_follow_up_at timestamptz,
	converted_at timestamptz,
	conversion_value numeric(15, 2) CHECK (conversion_value >= 0),
	lost_reason text CHECK (length(lost_reason) <= 500),
	contact_id uuid,
	company_id uuid,
	deal_id uuid,
	custom_fields jsonb NOT NULL DEFAULT '{}'
		CHECK (jsonb_typeof(custom_fields) = 'object'),
	version integer NOT NULL DEFAULT 1,
	created_by text,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	deleted_at timestamptz,
	search tsvector GENERATED ALWAYS AS (
		setweight(to_tsvector('simple', coalesce(name, '')), 'A') ||
		setweight(to_tsvector('simple', coalesce(email, '') || ' ' ||
				      coalesce(company, '')), 'B') ||
		setweight(to_tsvector('simple', coalesce(phone, '') || ' ' ||
				      coalesce(job_title, '') || ' ' ||
				      coalesce(industry, '')), 'C') ||
		setweight(to_tsvector('simple', coalesce(pain_points, '') ||
				      ' ' || coalesce(requirements, '')), 'D'))
		STORED,
	PRIMARY KEY (id),
	UNIQUE (tenant_id, id),
	CONSTRAINT fk_contact_id FOREIGN KEY (tenant_id, contact_id)
		REFERENCES crm.contacts (tenant_id, id),
	CONSTRAINT fk_company_id FOREIGN KEY (tenant_id, company_id)
		REFERENCES crm.companies (tenant_id, id)
);
CREATE INDEX leads_created_idx ON crm.leads
	(tenant_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX leads_updated_idx ON crm.leads
	(tenant_id, updated_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX leads_score_idx ON crm.leads
	(tenant_id, score DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX leads_status_idx ON crm.leads (tenant_id, status)
	WHERE deleted_at IS NULL;
CREATE INDEX leads_follow_up_idx ON crm.leads (tenant_id, next_follow_up_at)
	WHERE deleted_at IS NULL AND next_follow_up_at IS NOT NULL;
CREATE INDEX leads_email_idx ON crm.leads (tenant_id, lower(email))
	WHERE deleted_at IS NULL;
CREATE INDEX leads_phone_idx ON crm.leads
	(tenant_id, regexp_replace(phone, '[^0-9+]', '', 'g'))
	WHERE deleted_at IS NULL;
CREATE INDEX leads_search_idx ON crm.leads USING gin (search);

CREATE TABLE crm.deals (
	id uuid NOT NULL DEFAULT gen_random_uuid(),
	tenant_id uuid NOT NULL,
	title text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
	value numeric(15, 2) NOT NULL DEFAULT 0 CHECK (value >= 0),
	currency text NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
	expected_close_date date,
	pipeline_id uuid NOT NULL,
	stage_id uuid NOT NULL,
	status text NOT NULL DEFAULT 'open'
		CHECK (status IN ('open', 'won', 'lost')),
	owner_id uuid,
	contact_id uuid,
	company_id uuid,
	lead_id uuid,
	lost_reason text CHECK (length(lost_reason) <= 500),
	closed_at timestamptz,
	description text CHECK (length(description) <= 5000),
	tags text[] NOT NULL DEFAULT '{}',
	custom_fields jsonb NOT NULL DEFAULT '{}'
		CHECK (jsonb_typeof(custom_fields) = 'object'),
	version integer NOT NULL DEFAULT 1,
	created_by text,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	deleted_at timestamptz,
	search tsvector GENERATED ALWAYS AS (to_tsvector('simple',
		coalesce(title, '') || ' ' || coalesce(description, '')))
		STORED,
	PRIMARY KEY (id),
	UNIQUE (tenant_id, id),
	CONSTRAINT fk_pipeline_id FOREIGN KEY (tenant_id, pipeline_id)
		REFERENCES crm.pipelines (tenant_id, id),
	CONSTRAINT fk_stage_id FOREIGN KEY (tenant_id, stage_id)
		REFERENCES crm.pipeline_stages (tenant_id, id),
	CONSTRAINT fk_contact_id FOREIGN KEY (tenant_id, contact_id)
		REFERENCES crm.contacts (tenant_id, id),
	CONSTRAINT fk_company_id FOREIGN KEY (tenant_id, company_id)
		REFERENCES crm.companies (tenant_id, id),
	CONSTRAINT fk_lead_id FOREIGN KEY (tenant_id, lead_id)
		REFERENCES crm.leads (tenant_id, id)
);
CREATE INDEX deals_created_idx ON crm.deals
	(tenant_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX deals_stage_idx ON crm.deals (tenant_id, stage_id)
	WHERE deleted_at IS NULL;
CREATE INDEX deals_search_idx ON crm.deals USING gin (search);

ALTER TABLE crm.leads ADD CONSTRAINT fk_deal_id
	FOREIGN KEY (tenant_id, deal_id) REFERENCES crm.deals (tenant_id, id);

CREATE TABLE crm.deal_stage_history (
	id bigserial PRIMARY KEY,
	tenant_id uuid NOT NULL,
	deal_id uuid NOT NULL,
	from_stage_id uuid,
	to_stage_id uuid NOT NULL,
	changed_by text,
	changed_at timestamptz NOT NULL DEFAULT now(),
	FOREIGN KEY (tenant_id, deal_id) REFERENCES crm.deals (tenant_id, id)
);
CREATE INDEX deal_stage_history_deal_idx
	ON crm.deal_stage_history (tenant_id, deal_id, changed_at);

-- Activities: the manual kinds plus status_change and assignment, which the
-- service writes itself (the automatic timeline).
CREATE TABLE crm.activities (
	id uuid NOT NULL DEFAULT gen_random_uuid(),
	tenant_id uuid NOT NULL,
	type text NOT NULL
		CHECK (type IN ('note', 'email', 'call', 'meeting', 'task',
				'follow_up', 'status_change', 'assignment')),
	subject text NOT NULL CHECK (length(subject) BETWEEN 1 AND 200),
	body text CHECK (length(body) <= 10000),
	due_at timestamptz,
	completed_at timestamptz,
	owner_id uuid,
	lead_id uuid,
	contact_id uuid,
	company_id uuid,
	deal_id uuid,
	version integer NOT NULL DEFAULT 1,
	created_by text,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	deleted_at timestamptz,
	PRIMARY KEY (id),
	UNIQUE (tenant_id, id),
	CONSTRAINT fk_lead_id FOREIGN KEY (tenant_id, lead_id)
		REFERENCES crm.leads (tenant_id, id),
	CONSTRAINT fk_contact_id FOREIGN KEY (tenant_id, contact_id)
		REFERENCES crm.contacts (tenant_id, id),
	CONSTRAINT fk_company_id FOREIGN KEY (tenant_id, company_id)
		REFERENCES crm.companies (tenant_id, id),
	CONSTRAINT fk_deal_id FOREIGN KEY (tenant_id, deal_id)
		REFERENCES crm.deals (tenant_id, id)
);
CREATE INDEX activities_created_idx ON crm.activities
	(tenant_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX activities_due_idx ON crm.activities (tenant_id, due_at)
	WHERE deleted_at IS NULL AND completed_at IS NULL;
CREATE INDEX activities_lead_idx ON crm.activities (tenant_id, lead_id);
CREATE INDEX activities_deal_idx ON crm.activities (tenant_id, deal_id);

-- Notes: a private note is visible to its author only.
CREATE TABLE crm.notes (
	id uuid NOT NULL DEFAULT gen_random_uuid(),
	tenant_id uuid NOT NULL,
	body text NOT NULL CHECK (length(body) BETWEEN 1 AND 10000),
	is_private boolean NOT NULL DEFAULT false,
	lead_id uuid,
	contact_id uuid,
	company_id uuid,
	deal_id uuid,
	version integer NOT NULL DEFAULT 1,
	created_by text,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	deleted_at timestamptz,
	PRIMARY KEY (id),
	UNIQUE (tenant_id, id),
	CONSTRAINT fk_lead_id FOREIGN KEY (tenant_id, lead_id)
		REFERENCES crm.leads (tenant_id, id),
	CONSTRAINT fk_contact_id FOREIGN KEY (tenant_id, contact_id)
		REFERENCES crm.contacts (tenant_id, id),
	CONSTRAINT fk_company_id FOREIGN KEY (tenant_id, company_id)
		REFERENCES crm.companies (tenant_id, id),
	CONSTRAINT fk_deal_id FOREIGN KEY (tenant_id, deal_id)
		REFERENCES crm.deals (tenant_id, id)
);
CREATE INDEX notes_created_idx ON crm.notes
	(tenant_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;

-- The tenant's scoring rule table (docs/crm.md has the shape); no row means
-- the defaults compiled into the service.
CREATE TABLE crm.scoring_rules (
	tenant_id uuid PRIMARY KEY,
	rules jsonb NOT NULL CHECK (jsonb_typeof(rules) = 'object'),
	version integer NOT NULL DEFAULT 1,
	updated_by text,
	updated_at timestamptz NOT NULL DEFAULT now()
);

-- A create's answer, kept per tenant and key: the same key and body get
-- the same answer; the same key with another body is a conflict.
CREATE TABLE crm.idempotency_keys (
	tenant_id uuid NOT NULL,
	key text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
	scope text NOT NULL,
	request_hash text NOT NULL,
	status integer NOT NULL,
	response text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_created_idx
	ON crm.idempotency_keys (created_at);

-- The transactional outbox (common/bus.h): the relay alone sets
-- app.bus_relay, for its own transaction, to publish every tenant's rows.
CREATE TABLE crm.outbox (
	id bigserial PRIMARY KEY,
	tenant_id uuid NOT NULL,
	event_id uuid NOT NULL UNIQUE,
	event text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	published_at timestamptz
);
CREATE INDEX outbox_unpublished_idx ON crm.outbox (id)
	WHERE published_at IS NULL;

SELECT crm.protect('crm.companies');
SELECT crm.protect('crm.contacts');
SELECT crm.protect('crm.pipelines');
SELECT crm.protect('crm.pipeline_stages');
SELECT crm.protect('crm.leads');
SELECT crm.protect('crm.deals');
SELECT crm.protect('crm.deal_stage_history');
SELECT crm.protect('crm.activities');
SELECT crm.protect('crm.notes');
SELECT crm.protect('crm.scoring_rules');
SELECT crm.protect('crm.idempotency_keys');

ALTER TABLE crm.outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE crm.outbox FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON crm.outbox
	USING (tenant_id = NULLIF(current_setting('app.tenant_id', true),
				  '')::uuid
	       OR current_setting('app.bus_relay', true) = 'on')
	WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true),
				       '')::uuid
		    OR current_setting('app.bus_relay', true) = 'on');
