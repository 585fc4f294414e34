CREATE TABLE "audit_events" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"actor" text NOT NULL,
	"kind" text NOT NULL,
	"device_id" integer,
	"model_id" integer,
	"details" jsonb DEFAULT '{}'::jsonb NOT NULL
);
--> statement-breakpoint
CREATE INDEX "audit_events_at_idx" ON "audit_events" USING btree ("at","id");--> statement-breakpoint
CREATE INDEX "audit_events_device_idx" ON "audit_events" USING btree ("device_id","at","id");--> statement-breakpoint
CREATE INDEX "audit_events_model_idx" ON "audit_events" USING btree ("model_id","at","id");--> statement-breakpoint
-- Not from the schema (drizzle-kit does not model triggers): events are never changed. Deleting old ones stays possible (retention).
CREATE FUNCTION "audit_events_refuse_update"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'audit events are append-only: an event is never changed';
END;
$$;--> statement-breakpoint
CREATE TRIGGER "audit_events_append_only" BEFORE UPDATE ON "audit_events" FOR EACH STATEMENT EXECUTE FUNCTION "audit_events_refuse_update"();
