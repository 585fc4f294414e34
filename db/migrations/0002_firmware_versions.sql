CREATE TABLE "firmware_versions" (
	"id" serial PRIMARY KEY NOT NULL,
	"device_model_id" integer NOT NULL,
	"version" text NOT NULL,
	"file" text NOT NULL,
	"sha256" text NOT NULL,
	"size" bigint NOT NULL,
	"elf_sha256" text,
	"secure_version" bigint,
	"project_name" text NOT NULL,
	"chip" text NOT NULL,
	"idf_version" text NOT NULL,
	"notes" text,
	"uploaded_at" timestamp with time zone DEFAULT now() NOT NULL,
	"uploaded_by" text
);
--> statement-breakpoint
ALTER TABLE "device_models" ADD COLUMN "stable_version_id" integer;--> statement-breakpoint
ALTER TABLE "firmware_versions" ADD CONSTRAINT "firmware_versions_device_model_id_device_models_id_fk" FOREIGN KEY ("device_model_id") REFERENCES "public"."device_models"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "firmware_versions_model_version" ON "firmware_versions" USING btree ("device_model_id","version");--> statement-breakpoint
CREATE UNIQUE INDEX "firmware_versions_model_sha256" ON "firmware_versions" USING btree ("device_model_id","sha256");--> statement-breakpoint
ALTER TABLE "device_models" ADD CONSTRAINT "device_models_stable_version_id_firmware_versions_id_fk" FOREIGN KEY ("stable_version_id") REFERENCES "public"."firmware_versions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
-- Added to the generated migration before its release: the image each model already has becomes its first version,
-- the stable one (the descriptor fields not read before, app_elf_sha256 and secure_version, stay null).
INSERT INTO "firmware_versions" ("device_model_id", "version", "file", "sha256", "size", "project_name", "chip", "idf_version", "uploaded_at")
SELECT "id", "firmware_version", "firmware_file", "firmware_sha256", "firmware_size",
	coalesce("firmware_project_name", ''), coalesce("firmware_chip", ''), coalesce("firmware_idf_version", ''),
	coalesce("firmware_uploaded_at", "updated_at")
FROM "device_models"
WHERE "firmware_file" IS NOT NULL AND "firmware_sha256" IS NOT NULL AND "firmware_version" IS NOT NULL AND "firmware_size" IS NOT NULL;--> statement-breakpoint
UPDATE "device_models" SET "stable_version_id" = "firmware_versions"."id"
FROM "firmware_versions" WHERE "firmware_versions"."device_model_id" = "device_models"."id";
