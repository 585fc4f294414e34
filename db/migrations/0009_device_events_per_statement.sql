-- Not from the schema (drizzle-kit does not model triggers). The live events of devices are written once per statement
-- from its transition tables instead of once per row: queueing 100,000 devices (POST /api/rotation/trigger) made
-- 100,000 trigger calls, each a single-row INSERT and a pg_notify, about a third of the statement's time. The events
-- are the same rows as before (one per changed device and kind, in device id order, the kinds of one device in the old
-- order), and one NOTIFY follows a statement that wrote any.
-- iot_record_event (0007) keeps writing the events of device_models, a row at a time; its devices branch is no longer called.
DROP TRIGGER "devices_events" ON "devices";
--> statement-breakpoint
-- Without JIT: the transition tables have no statistics, so a large statement's plan would be JIT-compiled (about a
-- second of compiling for one run); with room to join the two tables in memory.
CREATE FUNCTION "iot_record_device_events"() RETURNS trigger LANGUAGE plpgsql SET jit = off SET work_mem = '64MB' AS $$
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
      CROSS JOIN LATERAL (
        SELECT 1 AS kind, 'rotation.state' AS type,
               jsonb_build_object('device_id', n.id, 'key', n.key, 'device_model_id', n.device_model_id, 'from', o.rotation_state, 'to', n.rotation_state) AS payload
        WHERE n.rotation_state IS DISTINCT FROM o.rotation_state
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
CREATE TRIGGER "devices_events_insert" AFTER INSERT ON "devices" REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION "iot_record_device_events"();
--> statement-breakpoint
CREATE TRIGGER "devices_events_update" AFTER UPDATE ON "devices" REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION "iot_record_device_events"();
--> statement-breakpoint
CREATE TRIGGER "devices_events_delete" AFTER DELETE ON "devices" REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION "iot_record_device_events"();
