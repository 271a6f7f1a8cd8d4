-- Two roles (docs/patient-data.md, "Two database roles"): the role that runs these
-- migrations owns the tables; the application (writer, email stage, console, CLI) runs as a
-- member of spakinect_app, which may read and write rows but not change the schema. It may
-- only INSERT and SELECT audit_log and phi_erasures: only the owner could drop the
-- append-only trigger, and the owner's credentials are not the application's.
-- Every later migration that creates a table grants spakinect_app what it needs on it.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'spakinect_app') THEN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = current_user
                       AND (rolcreaterole OR rolsuper)) THEN
            RAISE EXCEPTION 'role spakinect_app does not exist and % cannot create it', current_user
                USING HINT = 'CREATE ROLE spakinect_app NOLOGIN as an administrator, then migrate';
        END IF;
        BEGIN
            CREATE ROLE spakinect_app NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- another database of the server created it at the same moment
        END;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO spakinect_app', current_schema());
END
$$;

REVOKE ALL ON audit_log, phi_erasures FROM PUBLIC;
GRANT SELECT, INSERT ON audit_log, phi_erasures TO spakinect_app;
GRANT SELECT, INSERT, UPDATE ON spakinect_events, gfe_visits, treatments TO spakinect_app;
GRANT SELECT, INSERT, DELETE ON gfe_visit_treatments TO spakinect_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON console_users TO spakinect_app;
GRANT SELECT, INSERT ON dlq_replays TO spakinect_app;
GRANT USAGE ON SEQUENCE dlq_replays_id_seq TO spakinect_app;
GRANT SELECT ON spakinect_schema_migrations TO spakinect_app;
