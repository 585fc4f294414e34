-- Trigram indexes for the device list's q (ILIKE '%text%' over key and name): a text few devices match no longer reads
-- the whole fleet. pg_trgm ships with PostgreSQL (contrib) and is a trusted extension, so the database's owner may
-- create it. Where it cannot be created (not installed, or refused by a managed PostgreSQL's allow-list), the
-- migration goes on without these indexes, with a warning, and q works as before, reading the key order.
DO $$
BEGIN
  CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN insufficient_privilege OR undefined_file OR feature_not_supported THEN
  RAISE WARNING 'pg_trgm could not be created (%); device search works without its index, slower on large fleets', SQLERRM;
END $$;
--> statement-breakpoint
-- The operator class is named with its schema: an extension installed earlier may live outside the search path, or in
-- a schema this role may not use (then, as above, no index). IF NOT EXISTS: an operator may have added them by hand.
DO $$
DECLARE trgm_schema text := (SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_trgm');
BEGIN
  IF trgm_schema IS NOT NULL THEN
    EXECUTE format('CREATE INDEX IF NOT EXISTS "devices_key_trgm_idx" ON "devices" USING gin ("key" %s.gin_trgm_ops)', trgm_schema);
    EXECUTE format('CREATE INDEX IF NOT EXISTS "devices_name_trgm_idx" ON "devices" USING gin ("device_name" %s.gin_trgm_ops)', trgm_schema);
  END IF;
EXCEPTION WHEN insufficient_privilege THEN
  RAISE WARNING 'pg_trgm is not usable here (%); device search works without its index, slower on large fleets', SQLERRM;
END $$;
