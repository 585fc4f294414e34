-- The rotation queue becomes a table (lib/rotation/queue.ts): queueing the whole fleet rewrote every device row and its
-- seven index entries (seconds for 100,000 devices); it now inserts a narrow row per device. A device with a row in
-- rotation_queue is QUEUED; its rotation_state column keeps OK (or TIMEOUT) and never says QUEUED again.
CREATE TABLE "rotation_queue" (
	"device_id" integer PRIMARY KEY NOT NULL,
	"secret_created_at" timestamp with time zone,
	"queued_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
DROP INDEX "devices_queued_order_idx";--> statement-breakpoint
ALTER TABLE "rotation_queue" ADD CONSTRAINT "rotation_queue_device_id_devices_id_fk" FOREIGN KEY ("device_id") REFERENCES "public"."devices"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "rotation_queue_order_idx" ON "rotation_queue" USING btree ("secret_created_at" asc nulls first,"device_id");--> statement-breakpoint
-- Not from the schema from here on (drizzle-kit does not model triggers or data). The devices already QUEUED move.
INSERT INTO "rotation_queue" ("device_id", "secret_created_at") SELECT "id", "secret_created_at" FROM "devices" WHERE "rotation_state" = 'QUEUED';
--> statement-breakpoint
-- rotation.state events name the state a device shows: QUEUED while it has a queue row, unless it is PENDING (a device
-- leaves the queue in the transaction that makes it PENDING, after that update). So a device's update says QUEUED → PENDING
-- when it starts, PENDING → QUEUED when its notice failed (its queue row is written first), and nothing when only its
-- column changes while it waits (its queue row is removed after: the queue's own trigger then says QUEUED → its state).
CREATE OR REPLACE FUNCTION "iot_record_device_events"() RETURNS trigger LANGUAGE plpgsql SET jit = off SET work_mem = '64MB' AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO events (type, payload)
      SELECT 'device.created', jsonb_build_object('device_id', n.id, 'key', n.key, 'device_model_id', n.device_model_id)
      FROM new_rows n ORDER BY n.id;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO events (type, payload)
      SELECT 'device.deleted', jsonb_build_object('device_id', o.id, 'key', o.key, 'device_model_id', o.device_model_id)
      FROM old_rows o ORDER BY o.id;
  ELSE
    INSERT INTO events (type, payload)
      SELECT e.type, e.payload FROM new_rows n JOIN old_rows o ON o.id = n.id
      -- Looked up only where the column changed: else both sides show the same state, queued or not.
      CROSS JOIN LATERAL (
        SELECT n.rotation_state IS DISTINCT FROM o.rotation_state AND EXISTS (SELECT 1 FROM rotation_queue q WHERE q.device_id = n.id) AS queued
      ) w
      CROSS JOIN LATERAL (
        SELECT CASE WHEN w.queued AND o.rotation_state <> 'PENDING' THEN 'QUEUED' ELSE o.rotation_state::text END AS old_state,
               CASE WHEN w.queued AND n.rotation_state <> 'PENDING' THEN 'QUEUED' ELSE n.rotation_state::text END AS new_state
      ) s
      CROSS JOIN LATERAL (
        SELECT 1 AS kind, 'rotation.state' AS type,
               jsonb_build_object('device_id', n.id, 'key', n.key, 'device_model_id', n.device_model_id, 'from', s.old_state, 'to', s.new_state) AS payload
        WHERE s.new_state IS DISTINCT FROM s.old_state
        UNION ALL
        SELECT 2, 'device.updated', jsonb_build_object('device_id', n.id, 'key', n.key, 'device_model_id', n.device_model_id)
        WHERE n.config IS DISTINCT FROM o.config
        UNION ALL
        SELECT 3, 'device.checkin', jsonb_build_object('device_id', n.id, 'key', n.key, 'device_model_id', n.device_model_id, 'last_seen_at', n.last_seen_at)
        WHERE n.last_seen_at IS DISTINCT FROM o.last_seen_at AND n.last_seen_at IS NOT NULL
      ) e
      ORDER BY n.id, e.kind;
  END IF;
  IF FOUND THEN
    PERFORM pg_notify('iot_events', '');
  END IF;
  RETURN NULL;
END
$$;
--> statement-breakpoint
UPDATE "devices" SET "rotation_state" = 'OK' WHERE "rotation_state" = 'QUEUED';
--> statement-breakpoint
-- Joining and leaving the queue, once per statement. A PENDING device's queue row is its own update's business (above).
CREATE FUNCTION "iot_record_queue_events"() RETURNS trigger LANGUAGE plpgsql SET jit = off SET work_mem = '64MB' AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO events (type, payload)
      SELECT 'rotation.state', jsonb_build_object('device_id', d.id, 'key', d.key, 'device_model_id', d.device_model_id, 'from', d.rotation_state, 'to', 'QUEUED')
      FROM new_rows r JOIN devices d ON d.id = r.device_id WHERE d.rotation_state <> 'PENDING' ORDER BY d.id;
  ELSE
    INSERT INTO events (type, payload)
      SELECT 'rotation.state', jsonb_build_object('device_id', d.id, 'key', d.key, 'device_model_id', d.device_model_id, 'from', 'QUEUED', 'to', d.rotation_state)
      FROM old_rows r JOIN devices d ON d.id = r.device_id WHERE d.rotation_state <> 'PENDING' ORDER BY d.id;
  END IF;
  IF FOUND THEN
    PERFORM pg_notify('iot_events', '');
  END IF;
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER "rotation_queue_events_insert" AFTER INSERT ON "rotation_queue" REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION "iot_record_queue_events"();
--> statement-breakpoint
CREATE TRIGGER "rotation_queue_events_delete" AFTER DELETE ON "rotation_queue" REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION "iot_record_queue_events"();
--> statement-breakpoint
ALTER TABLE "devices" ADD CONSTRAINT "devices_rotation_state_not_queued" CHECK ("devices"."rotation_state" <> 'QUEUED');
