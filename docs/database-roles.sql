-- The payment service's own role in TiketQ's shared database: it owns the payment schema and
-- nothing else. Run it as a superuser (e.g. postgres), connected to that database:
--
--   psql "postgresql://postgres@db.internal/tiketq_db" -v role=tiketq_payment -v schema=payment \
--        -v password="$(cat /run/secrets/payment_db_password)" -f docs/database-roles.sql
--
-- role and schema default to tiketq_payment and payment (the service's DATABASE_SCHEMA must
-- match); without password the role gets none (set one later with \password). It can be run
-- again: after `flask db upgrade` moved an older deployment out of public as another role, it
-- hands what the move brought over to the role.
\set ON_ERROR_STOP on
\if :{?role}
\else
  \set role tiketq_payment
\endif
\if :{?schema}
\else
  \set schema payment
\endif

SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') AS role_missing,
       current_database() AS database \gset
\if :role_missing
  -- LOGIN only: no superuser, no CREATEDB, no CREATEROLE, no right to bypass row security.
  CREATE ROLE :"role" LOGIN;
\endif
\if :{?password}
  ALTER ROLE :"role" PASSWORD :'password';
\endif

-- Connecting is all it needs of the database: the schema is created here, so the role needs
-- no CREATE on the database, and `flask db upgrade` finds the schema there.
GRANT CONNECT ON DATABASE :"database" TO :"role";
CREATE SCHEMA IF NOT EXISTS :"schema" AUTHORIZATION :"role";
ALTER SCHEMA :"schema" OWNER TO :"role";
-- What a connection that forgets the service's own setting (psql, a pooler) resolves in.
ALTER ROLE :"role" IN DATABASE :"database" SET search_path = :"schema";

-- Everything already in the schema (a deployment moved out of public by its old owner) becomes
-- the role's; owned sequences follow their tables.
SELECT format('ALTER TABLE %I.%I OWNER TO %I', schemaname, tablename, :'role')
  FROM pg_tables WHERE schemaname = :'schema' AND tableowner <> :'role' \gexec
SELECT format('ALTER FUNCTION %s OWNER TO %I', p.oid::regprocedure, :'role')
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = :'schema' AND p.proowner <> (SELECT oid FROM pg_roles WHERE rolname = :'role')
\gexec

-- Nothing is granted on public: the other services' tables there stay theirs (no SELECT, no
-- INSERT). PostgreSQL 15 and later no longer let every role create tables in public; on an
-- older server the platform's DBA decides on REVOKE CREATE ON SCHEMA public FROM PUBLIC, which
-- concerns every service.
