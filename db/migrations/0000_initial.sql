CREATE TYPE "public"."rotation_state" AS ENUM('OK', 'QUEUED', 'PENDING', 'TIMEOUT');--> statement-breakpoint
CREATE TABLE "builtin_clients" (
	"client_id" text PRIMARY KEY NOT NULL,
	"secret_encrypted" text NOT NULL,
	"secret_updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "device_models" (
	"id" serial PRIMARY KEY NOT NULL,
	"code" varchar(50) NOT NULL,
	"name" varchar(255) NOT NULL,
	"config_schema" text,
	"firmware_version" text,
	"firmware_file" text,
	"firmware_sha256" text,
	"firmware_size" bigint,
	"firmware_project_name" text,
	"firmware_idf_version" text,
	"firmware_chip" text,
	"firmware_uploaded_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "device_models_code_unique" UNIQUE("code")
);
--> statement-breakpoint
CREATE TABLE "devices" (
	"id" serial PRIMARY KEY NOT NULL,
	"key" varchar(8) NOT NULL,
	"device_model_id" integer NOT NULL,
	"config" text NOT NULL,
	"device_name" text,
	"device_entity_id" text,
	"enable_ota" boolean,
	"client_id" text NOT NULL,
	"rotation_state" "rotation_state" DEFAULT 'OK' NOT NULL,
	"secret_created_at" timestamp with time zone,
	"last_rotation_attempt_at" timestamp with time zone,
	"last_rotation_completed_at" timestamp with time zone,
	"rotation_started_at" timestamp with time zone,
	"new_secret_issued_at" timestamp with time zone,
	"previous_secret_encrypted" text,
	"rotation_failures" integer DEFAULT 0 NOT NULL,
	"next_retry_at" timestamp with time zone,
	"rotation_error" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "devices_key_unique" UNIQUE("key"),
	CONSTRAINT "devices_client_id_unique" UNIQUE("client_id"),
	CONSTRAINT "devices_key_format" CHECK ("devices"."key" ~ '^[a-z0-9]{8}$')
);
--> statement-breakpoint
CREATE TABLE "settings" (
	"key" text PRIMARY KEY NOT NULL,
	"value" text NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "devices" ADD CONSTRAINT "devices_device_model_id_device_models_id_fk" FOREIGN KEY ("device_model_id") REFERENCES "public"."device_models"("id") ON DELETE restrict ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "devices_single_pending" ON "devices" USING btree ((true)) WHERE "devices"."rotation_state" = 'PENDING';--> statement-breakpoint
CREATE INDEX "devices_model_idx" ON "devices" USING btree ("device_model_id");--> statement-breakpoint
CREATE INDEX "devices_rotation_state_idx" ON "devices" USING btree ("rotation_state");