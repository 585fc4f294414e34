ALTER TABLE "devices" ADD COLUMN "last_seen_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "downloaded_version_id" integer;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "downloaded_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "reported_firmware_version" text;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "reported_elf_sha256" text;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "ota_state" text;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "last_state_report" jsonb;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "reported_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "devices" ADD CONSTRAINT "devices_downloaded_version_id_firmware_versions_id_fk" FOREIGN KEY ("downloaded_version_id") REFERENCES "public"."firmware_versions"("id") ON DELETE set null ON UPDATE no action;