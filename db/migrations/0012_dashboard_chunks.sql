CREATE TABLE "dashboard_chunks" (
	"prefix" text PRIMARY KEY NOT NULL,
	"rendered_by" text,
	"valid_from_ms" bigint,
	"valid_until_ms" bigint,
	"healthy" text DEFAULT '' NOT NULL,
	"warning" text DEFAULT '' NOT NULL,
	"critical" text DEFAULT '' NOT NULL,
	"healthy_count" integer DEFAULT 0 NOT NULL,
	"warning_count" integer DEFAULT 0 NOT NULL,
	"critical_count" integer DEFAULT 0 NOT NULL
);
--> statement-breakpoint
CREATE TABLE "dashboard_dirty" (
	"prefix" text NOT NULL
);
--> statement-breakpoint
CREATE INDEX "dashboard_dirty_prefix_idx" ON "dashboard_dirty" USING btree ("prefix");--> statement-breakpoint
-- Not from the schema from here on (drizzle-kit does not model storage, data or triggers). The rows are read far more
-- often than written, and read whole: kept uncompressed, so reading them costs no decompression.
ALTER TABLE "dashboard_chunks" ALTER COLUMN "healthy" SET STORAGE EXTERNAL, ALTER COLUMN "warning" SET STORAGE EXTERNAL, ALTER COLUMN "critical" SET STORAGE EXTERNAL;
--> statement-breakpoint
-- A chunk for every prefix a key can have (devices_key_format), none rendered yet: the dashboard renders them from the
-- devices until a server has stored them.
INSERT INTO "dashboard_chunks" ("prefix")
  SELECT a || b FROM unnest(string_to_array('0123456789abcdefghijklmnopqrstuvwxyz', NULL)) a, unnest(string_to_array('0123456789abcdefghijklmnopqrstuvwxyz', NULL)) b;
--> statement-breakpoint
-- A chunk left out would leave its devices out of the dashboard, and a mark removed by hand would leave a changed
-- chunk fresh: neither table may lose rows but through the rendering (which removes only the marks it has rendered).
CREATE FUNCTION "iot_dashboard_refuse_removal"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is kept by the dashboard''s rendering: its rows are not removed by hand (docs/operations.md, Upgrades, migration 0012)', TG_TABLE_NAME;
END
$$;
--> statement-breakpoint
CREATE TRIGGER "dashboard_chunks_kept" BEFORE DELETE OR TRUNCATE ON "dashboard_chunks" FOR EACH STATEMENT EXECUTE FUNCTION "iot_dashboard_refuse_removal"();
--> statement-breakpoint
CREATE TRIGGER "dashboard_dirty_kept" BEFORE TRUNCATE ON "dashboard_dirty" FOR EACH STATEMENT EXECUTE FUNCTION "iot_dashboard_refuse_removal"();
--> statement-breakpoint
-- A change to anything a dashboard row shows marks its key's prefix, in the changing transaction and once per
-- statement: a device's row, its queue row (QUEUED) and its model's code; a table emptied marks every prefix. A model's
-- code and a device inserted for it cannot pass each other unseen: the code is unique, so its update locks the model
-- row against the foreign-key check of the insert.
CREATE FUNCTION "iot_mark_dashboard_dirty"() RETURNS trigger LANGUAGE plpgsql SET jit = off AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    INSERT INTO dashboard_dirty (prefix) SELECT prefix FROM dashboard_chunks;
  ELSIF TG_TABLE_NAME = 'devices' THEN
    IF TG_OP = 'INSERT' THEN
      INSERT INTO dashboard_dirty (prefix) SELECT DISTINCT left(n.key, 2) FROM new_rows n;
    ELSIF TG_OP = 'DELETE' THEN
      INSERT INTO dashboard_dirty (prefix) SELECT DISTINCT left(o.key, 2) FROM old_rows o;
    ELSE
      -- The rows whose shown columns differ between before and after, whichever changed (the id and key too).
      INSERT INTO dashboard_dirty (prefix)
        SELECT DISTINCT left(changed.key, 2) FROM (
          (SELECT id, key, device_name, device_model_id, rotation_state, rotation_unconfirmed, last_rotation_completed_at FROM new_rows
           EXCEPT ALL SELECT id, key, device_name, device_model_id, rotation_state, rotation_unconfirmed, last_rotation_completed_at FROM old_rows)
          UNION ALL
          (SELECT id, key, device_name, device_model_id, rotation_state, rotation_unconfirmed, last_rotation_completed_at FROM old_rows
           EXCEPT ALL SELECT id, key, device_name, device_model_id, rotation_state, rotation_unconfirmed, last_rotation_completed_at FROM new_rows)
        ) changed;
    END IF;
  ELSIF TG_TABLE_NAME = 'rotation_queue' THEN
    IF TG_OP = 'INSERT' THEN
      IF (SELECT count(*) FROM new_rows) >= 1296 THEN
        -- Queueing the fleet (25,000 rows a statement) reaches about every prefix: marked without looking each device up.
        INSERT INTO dashboard_dirty (prefix) SELECT prefix FROM dashboard_chunks;
      ELSE
        INSERT INTO dashboard_dirty (prefix) SELECT DISTINCT left(d.key, 2) FROM new_rows r JOIN devices d ON d.id = r.device_id;
      END IF;
    ELSIF TG_OP = 'DELETE' THEN
      INSERT INTO dashboard_dirty (prefix) SELECT DISTINCT left(d.key, 2) FROM old_rows r JOIN devices d ON d.id = r.device_id;
    ELSE
      INSERT INTO dashboard_dirty (prefix)
        SELECT DISTINCT left(d.key, 2) FROM devices d WHERE d.id IN (SELECT device_id FROM new_rows UNION SELECT device_id FROM old_rows);
    END IF;
  ELSE
    INSERT INTO dashboard_dirty (prefix)
      SELECT DISTINCT left(d.key, 2) FROM new_rows n JOIN old_rows o ON o.id = n.id JOIN devices d ON d.device_model_id = n.id
      WHERE n.code IS DISTINCT FROM o.code;
  END IF;
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER "devices_dashboard_insert" AFTER INSERT ON "devices" REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION "iot_mark_dashboard_dirty"();
--> statement-breakpoint
CREATE TRIGGER "devices_dashboard_update" AFTER UPDATE ON "devices" REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION "iot_mark_dashboard_dirty"();
--> statement-breakpoint
CREATE TRIGGER "devices_dashboard_delete" AFTER DELETE ON "devices" REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION "iot_mark_dashboard_dirty"();
--> statement-breakpoint
CREATE TRIGGER "rotation_queue_dashboard_insert" AFTER INSERT ON "rotation_queue" REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION "iot_mark_dashboard_dirty"();
--> statement-breakpoint
CREATE TRIGGER "rotation_queue_dashboard_update" AFTER UPDATE ON "rotation_queue" REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION "iot_mark_dashboard_dirty"();
--> statement-breakpoint
CREATE TRIGGER "rotation_queue_dashboard_delete" AFTER DELETE ON "rotation_queue" REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION "iot_mark_dashboard_dirty"();
--> statement-breakpoint
CREATE TRIGGER "device_models_dashboard_update" AFTER UPDATE ON "device_models" REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION "iot_mark_dashboard_dirty"();
--> statement-breakpoint
CREATE TRIGGER "devices_dashboard_truncate" AFTER TRUNCATE ON "devices" FOR EACH STATEMENT EXECUTE FUNCTION "iot_mark_dashboard_dirty"();
--> statement-breakpoint
CREATE TRIGGER "rotation_queue_dashboard_truncate" AFTER TRUNCATE ON "rotation_queue" FOR EACH STATEMENT EXECUTE FUNCTION "iot_mark_dashboard_dirty"();
