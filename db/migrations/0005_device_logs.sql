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