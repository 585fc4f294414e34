CREATE TABLE "rollout_devices" (
	"rollout_id" integer NOT NULL,
	"device_id" integer NOT NULL,
	"wave" integer NOT NULL,
	"position" integer NOT NULL,
	"state" text DEFAULT 'pending' NOT NULL,
	"previous_version_id" integer,
	"admitted_at" timestamp with time zone,
	"first_download_at" timestamp with time zone,
	"last_download_at" timestamp with time zone,
	"downloads" integer DEFAULT 0 NOT NULL,
	"restarts_after_download" integer DEFAULT 0 NOT NULL,
	"config_at" timestamp with time zone,
	"settled_at" timestamp with time zone,
	"failure_reason" text
);
--> statement-breakpoint
CREATE TABLE "rollouts" (
	"id" serial PRIMARY KEY NOT NULL,
	"device_model_id" integer NOT NULL,
	"version_id" integer NOT NULL,
	"previous_version_id" integer,
	"state" text DEFAULT 'running' NOT NULL,
	"plan" jsonb NOT NULL,
	"current_wave" integer DEFAULT 0 NOT NULL,
	"wave_started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"wave_done_at" timestamp with time zone,
	"failures_acknowledged" integer DEFAULT 0 NOT NULL,
	"pause_reason" text,
	"created_by" text NOT NULL,
	"completed_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "device_models" ADD COLUMN "firmware_rollout" text DEFAULT 'immediate' NOT NULL;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "firmware_pin_version_id" integer;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "rollout_version_id" integer;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "rollout_id" integer;--> statement-breakpoint
ALTER TABLE "rollout_devices" ADD CONSTRAINT "rollout_devices_rollout_id_rollouts_id_fk" FOREIGN KEY ("rollout_id") REFERENCES "public"."rollouts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "rollout_devices" ADD CONSTRAINT "rollout_devices_device_id_devices_id_fk" FOREIGN KEY ("device_id") REFERENCES "public"."devices"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "rollout_devices" ADD CONSTRAINT "rollout_devices_previous_version_id_firmware_versions_id_fk" FOREIGN KEY ("previous_version_id") REFERENCES "public"."firmware_versions"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "rollouts" ADD CONSTRAINT "rollouts_device_model_id_device_models_id_fk" FOREIGN KEY ("device_model_id") REFERENCES "public"."device_models"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "rollouts" ADD CONSTRAINT "rollouts_version_id_firmware_versions_id_fk" FOREIGN KEY ("version_id") REFERENCES "public"."firmware_versions"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "rollouts" ADD CONSTRAINT "rollouts_previous_version_id_firmware_versions_id_fk" FOREIGN KEY ("previous_version_id") REFERENCES "public"."firmware_versions"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "rollout_devices_pk" ON "rollout_devices" USING btree ("rollout_id","device_id");--> statement-breakpoint
CREATE INDEX "rollout_devices_state_idx" ON "rollout_devices" USING btree ("rollout_id","state","wave","position");--> statement-breakpoint
CREATE INDEX "rollout_devices_device_idx" ON "rollout_devices" USING btree ("device_id");--> statement-breakpoint
CREATE UNIQUE INDEX "rollouts_single_active" ON "rollouts" USING btree ("device_model_id") WHERE "rollouts"."state" in ('running', 'paused');--> statement-breakpoint
ALTER TABLE "devices" ADD CONSTRAINT "devices_firmware_pin_version_id_firmware_versions_id_fk" FOREIGN KEY ("firmware_pin_version_id") REFERENCES "public"."firmware_versions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "devices" ADD CONSTRAINT "devices_rollout_version_id_firmware_versions_id_fk" FOREIGN KEY ("rollout_version_id") REFERENCES "public"."firmware_versions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "devices" ADD CONSTRAINT "devices_rollout_id_rollouts_id_fk" FOREIGN KEY ("rollout_id") REFERENCES "public"."rollouts"("id") ON DELETE set null ON UPDATE no action;