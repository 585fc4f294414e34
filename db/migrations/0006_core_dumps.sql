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