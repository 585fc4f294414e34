CREATE TABLE "device_log_volume" (
	"device_id" integer NOT NULL,
	"day" date NOT NULL,
	"lines" integer NOT NULL,
	CONSTRAINT "device_log_volume_device_id_day_pk" PRIMARY KEY("device_id","day")
);
--> statement-breakpoint
CREATE TABLE "device_logs" (
	"device_id" integer NOT NULL,
	"ts" timestamp with time zone NOT NULL,
	"message" text NOT NULL,
	"attributes" jsonb
) PARTITION BY RANGE ("ts");
--> statement-breakpoint
CREATE INDEX "device_logs_device_ts" ON "device_logs" USING btree ("device_id","ts");
--> statement-breakpoint
CREATE TABLE "core_dumps" (
	"id" serial PRIMARY KEY NOT NULL,
	"device_id" integer NOT NULL,
	"device_model_id" integer NOT NULL,
	"chip" text,
	"firmware_version" text,
	"size" integer NOT NULL,
	"sha256" text NOT NULL,
	"content" "bytea" NOT NULL,
	"received_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "core_dumps" ADD CONSTRAINT "core_dumps_device_id_devices_id_fk" FOREIGN KEY ("device_id") REFERENCES "public"."devices"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "core_dumps_device_received" ON "core_dumps" USING btree ("device_id","received_at");--> statement-breakpoint
CREATE INDEX "core_dumps_model_version" ON "core_dumps" USING btree ("device_model_id","firmware_version");
--> statement-breakpoint
CREATE TABLE "events" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	"type" text NOT NULL,
	"payload" jsonb NOT NULL
);
--> statement-breakpoint
CREATE INDEX "events_at" ON "events" USING btree ("at");--> statement-breakpoint
CREATE FUNCTION "iot_record_event"() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  subject jsonb;
BEGIN
  IF TG_TABLE_NAME = 'devices' THEN
    IF TG_OP = 'DELETE' THEN
      INSERT INTO events (type, payload) VALUES ('device.deleted', jsonb_build_object('device_id', OLD.id, 'key', OLD.key, 'device_model_id', OLD.device_model_id));
    ELSE
      subject := jsonb_build_object('device_id', NEW.id, 'key', NEW.key, 'device_model_id', NEW.device_model_id);
      IF TG_OP = 'INSERT' THEN
        INSERT INTO events (type, payload) VALUES ('device.created', subject);
      ELSE
        IF NEW.rotation_state IS DISTINCT FROM OLD.rotation_state THEN
          INSERT INTO events (type, payload) VALUES ('rotation.state', subject || jsonb_build_object('from', OLD.rotation_state, 'to', NEW.rotation_state));
        END IF;
        IF NEW.config IS DISTINCT FROM OLD.config THEN
          INSERT INTO events (type, payload) VALUES ('device.updated', subject);
        END IF;
        IF NEW.last_seen_at IS DISTINCT FROM OLD.last_seen_at AND NEW.last_seen_at IS NOT NULL THEN
          INSERT INTO events (type, payload) VALUES ('device.checkin', subject || jsonb_build_object('last_seen_at', NEW.last_seen_at));
        END IF;
      END IF;
    END IF;
  ELSE
    IF TG_OP = 'DELETE' THEN
      INSERT INTO events (type, payload) VALUES ('model.deleted', jsonb_build_object('device_model_id', OLD.id, 'code', OLD.code));
    ELSIF TG_OP = 'INSERT' THEN
      INSERT INTO events (type, payload) VALUES ('model.created', jsonb_build_object('device_model_id', NEW.id, 'code', NEW.code));
    ELSIF ROW(NEW.name, NEW.config_schema, NEW.firmware_version) IS DISTINCT FROM ROW(OLD.name, OLD.config_schema, OLD.firmware_version) THEN
      INSERT INTO events (type, payload) VALUES ('model.updated', jsonb_build_object('device_model_id', NEW.id, 'code', NEW.code));
    END IF;
  END IF;
  PERFORM pg_notify('iot_events', '');
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER "devices_events" AFTER INSERT OR UPDATE OR DELETE ON "devices" FOR EACH ROW EXECUTE FUNCTION "iot_record_event"();
--> statement-breakpoint
CREATE TRIGGER "device_models_events" AFTER INSERT OR UPDATE OR DELETE ON "device_models" FOR EACH ROW EXECUTE FUNCTION "iot_record_event"();
