DROP INDEX "devices_model_idx";--> statement-breakpoint
DROP INDEX "devices_rotation_state_idx";--> statement-breakpoint
CREATE INDEX "devices_model_key_idx" ON "devices" USING btree ("device_model_id","key");--> statement-breakpoint
CREATE INDEX "devices_rotation_state_key_idx" ON "devices" USING btree ("rotation_state","key");--> statement-breakpoint
CREATE INDEX "devices_queued_order_idx" ON "devices" USING btree ("secret_created_at" asc nulls first,"id") WHERE "devices"."rotation_state" = 'QUEUED';--> statement-breakpoint
CREATE INDEX "devices_retry_order_idx" ON "devices" USING btree ("next_retry_at" asc nulls first,"id") WHERE "devices"."rotation_state" = 'TIMEOUT';--> statement-breakpoint
CREATE INDEX "devices_previous_secret_idx" ON "devices" USING btree ("id") WHERE "devices"."previous_secret_expires_at" is not null;--> statement-breakpoint
CREATE INDEX "devices_unconfirmed_idx" ON "devices" USING btree ("id") WHERE "devices"."rotation_unconfirmed";--> statement-breakpoint
CREATE INDEX "devices_last_rotation_completed_idx" ON "devices" USING btree ("last_rotation_completed_at");