-- db-bootstrap.sql - the bizosaas database, its roles, schemas and rights.
--
-- Run by scripts/stack on every start, as the cluster superuser, connected
-- to database postgres; idempotent. Passwords come in as psql variables
-- pw_<role> (pw_bz_brain, pw_bz_event_bus, ...), which scripts/stack feeds
-- on stdin ahead of this file so they never show on a command line. A role
-- whose variable is unset keeps the password it has. By hand:
--   psql -h DIR/run -p PORT -U postgres -d postgres -f scripts/db-bootstrap.sql
--
-- Layout: one LOGIN role bz_<svc> per service (no superuser, no BYPASSRLS,
-- no CREATEDB/CREATEROLE), all members of the NOLOGIN group bz_services;
-- one schema <svc> per service, owned by its role. Nobody but the owner
-- may use a schema until the owner GRANTs it (brain's migrations grant
-- USAGE on brain and SELECT on brain.tenants/tenant_domains to bz_services).
-- Extensions that need the superuser belong here, not in migrations.

\set ON_ERROR_STOP on
-- This session carries passwords: keep its statements out of the log.
SET log_statement = 'none';
SET log_min_error_statement = 'panic';
SET log_min_duration_statement = -1;
SET client_min_messages = warning;

SELECT 'CREATE DATABASE bizosaas ENCODING ''UTF8'' TEMPLATE template0'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'bizosaas')
\gexec

DO $$
DECLARE
	svc text;
	r text;
BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bz_services') THEN
		CREATE ROLE bz_services NOLOGIN;
	END IF;
	ALTER ROLE bz_services NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB
		NOCREATEROLE NOREPLICATION;
	FOREACH svc IN ARRAY ARRAY['brain', 'cms', 'crm', 'image', 'telegram',
		'temporal_worker', 'vault_client', 'agents', 'event_bus',
		'dashboard_server']
	LOOP
		r := 'bz_' || svc;
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
			EXECUTE format('CREATE ROLE %I LOGIN', r);
		END IF;
		EXECUTE format('ALTER ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS '
			'NOCREATEDB NOCREATEROLE NOREPLICATION INHERIT', r);
		IF NOT pg_has_role(r, 'bz_services', 'MEMBER') THEN
			EXECUTE format('GRANT bz_services TO %I', r);
		END IF;
	END LOOP;
END
$$;

\if :{?pw_bz_brain}
ALTER ROLE bz_brain PASSWORD :'pw_bz_brain';
\endif
\if :{?pw_bz_cms}
ALTER ROLE bz_cms PASSWORD :'pw_bz_cms';
\endif
\if :{?pw_bz_crm}
ALTER ROLE bz_crm PASSWORD :'pw_bz_crm';
\endif
\if :{?pw_bz_image}
ALTER ROLE bz_image PASSWORD :'pw_bz_image';
\endif
\if :{?pw_bz_telegram}
ALTER ROLE bz_telegram PASSWORD :'pw_bz_telegram';
\endif
\if :{?pw_bz_temporal_worker}
ALTER ROLE bz_temporal_worker PASSWORD :'pw_bz_temporal_worker';
\endif
\if :{?pw_bz_vault_client}
ALTER ROLE bz_vault_client PASSWORD :'pw_bz_vault_client';
\endif
\if :{?pw_bz_agents}
ALTER ROLE bz_agents PASSWORD :'pw_bz_agents';
\endif
\if :{?pw_bz_event_bus}
ALTER ROLE bz_event_bus PASSWORD :'pw_bz_event_bus';
\endif
\if :{?pw_bz_dashboard_server}
ALTER ROLE bz_dashboard_server PASSWORD :'pw_bz_dashboard_server';
\endif

-- Any role may connect (tests make roles of their own; pg_hba.conf wants a
-- password anyway), nobody but the superuser creates schemas or temp
-- tables in bizosaas.
REVOKE ALL ON DATABASE bizosaas FROM PUBLIC;
GRANT CONNECT ON DATABASE bizosaas TO PUBLIC;
GRANT CONNECT ON DATABASE bizosaas TO bz_services;

\connect bizosaas
SET log_statement = 'none';
SET log_min_error_statement = 'panic';
SET log_min_duration_statement = -1;
SET client_min_messages = warning;

REVOKE ALL ON SCHEMA public FROM PUBLIC;

DO $$
DECLARE
	svc text;
	r text;
BEGIN
	FOREACH svc IN ARRAY ARRAY['brain', 'cms', 'crm', 'image', 'telegram',
		'temporal_worker', 'vault_client', 'agents', 'event_bus',
		'dashboard_server']
	LOOP
		r := 'bz_' || svc;
		EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I',
			svc, r);
		EXECUTE format('ALTER SCHEMA %I OWNER TO %I', svc, r);
		EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', svc);
	END LOOP;
END
$$;

-- Full-text search under row-level security: `@@` (ts_match_vq) is not
-- marked leakproof, so the planner will not push it below a policy and a
-- GIN index is never used: every search scans all the tenant's rows. It
-- only compares a tsvector with a tsquery (no data-dependent errors), so
-- it is safe to mark leakproof; RLS still filters every row.
ALTER FUNCTION pg_catalog.ts_match_vq(tsvector, tsquery) LEAKPROOF;
