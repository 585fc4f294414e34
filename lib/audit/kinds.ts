/**
 * Every kind of audit event, in one place: the recorder accepts only these, and the OpenAPI document lists them with
 * what they mean. Names are stable (`<subject>.<what happened>`, past tense): scripts filter on them, so a kind is
 * added, never renamed.
 */
import { z } from "zod";

const KINDS = {
  "model.created": "An admin created a device model (details: code, name)",
  "model.updated": "An admin changed a model (details: code, the fields changed)",
  "model.deleted": "An admin deleted a model (details: code)",
  "device.created": "An admin created a device and its OAuth2 client (details: key, client_id, model_code)",
  "device.updated": "An admin changed a device's config (details: key, changed_fields: the top-level config fields that changed)",
  "device.deleted": "An admin deleted a device and its OAuth2 client (details: key, client_id)",
  "device.client_recreated": "An admin's repair (keycloak-sync) found the device's OAuth2 client missing and created it with a new secret: the device must be provisioned again (details: key, client_id)",
  "firmware.uploaded": "An admin uploaded an image, recorded as a firmware version of the model; the same bytes again are the same version, new_version false (details: version, version_id, sha256, size, new_version)",
  "firmware.version_deleted": "An admin deleted a firmware version (details: version, version_id, sha256)",
  "rotation.triggered": "An admin queued the fleet (no device_id; details: queued_count) or one device (details: status) for rotation",
  "rotation.scheduled": "The rotation schedule queued every OK device (details: queued_count)",
  "rotation.started": "A device became PENDING and was sent its rotation notice (details: from, the state it left)",
  "rotation.notice_failed": "The broker did not acknowledge a rotation notice; the device is QUEUED again",
  "rotation.secret_issued": "The PENDING device fetched its provisioning package and was issued a new secret",
  "rotation.completed": "The device used its new secret: rotation done, state OK (details: was, the state it left)",
  "rotation.timed_out": "The device did not complete in time: state TIMEOUT (details: reason, failures, next_retry_at, unconfirmed)",
  "rotation.secret_restored": "On a timeout, the device's previous secret was put back in the identity provider",
  "firmware.stable_changed": "A version became the model's stable version: an immediate upload, or a rollout that completed (details: version, version_id, previous_version_id)",
  "firmware.pinned": "An admin pinned the device to a firmware version (details: version_id)",
  "firmware.unpinned": "An admin removed the device's firmware pin",
  "rollout.started": "A staged rollout began (details: rollout_id, version, version_id, source: api, upload or revert, plan)",
  "rollout.paused": "A rollout paused: by an admin, or by itself on failures (details: rollout_id, reason)",
  "rollout.resumed": "An admin resumed a paused rollout (details: rollout_id)",
  "rollout.wave_opened": "A rollout opened its next wave, after the open one soaked or on an admin's advance (details: rollout_id, wave)",
  "rollout.completed": "A rollout finished: its version is the stable one (details: rollout_id, version)",
  "rollout.aborted": "A rollout was stopped: by an admin, a revert, or a newer upload (details: rollout_id, reason)",
  "rollout.device_succeeded": "A rollout judged the device updated (details: rollout_id, version)",
  "rollout.device_failed": "A rollout judged the device failed and gave it its previous version back (details: rollout_id, version, reason)",
  "rollout.device_retried": "An admin offered a rollout's version again to a device it had failed (details: rollout_id)",
  "rotation.restore_failed": "On a timeout, the previous secret could not be restored; the device stays PENDING and the next cycle retries (details: error)",
} as const;

export type AuditKind = keyof typeof KINDS;

const kinds = Object.keys(KINDS) as [AuditKind, ...AuditKind[]];

export const auditKindSchema = z.enum(kinds).meta({
  id: "AuditKind",
  description: `What happened:\n${kinds.map((kind) => `- \`${kind}\`: ${KINDS[kind]}`).join("\n")}`,
});
