ALTER TABLE "builtin_clients" ADD COLUMN "secret_generation" integer DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE "builtin_clients" ADD COLUMN "previous_secret_encrypted" text;--> statement-breakpoint
ALTER TABLE "builtin_clients" ADD COLUMN "previous_secret_expires_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "new_secret_generation" integer;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "rotation_unconfirmed" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "devices" ADD COLUMN "previous_secret_expires_at" timestamp with time zone;