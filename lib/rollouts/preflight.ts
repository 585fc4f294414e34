/** The checks before a version is rolled out (docs/rollouts.md, "Pre-flight"): each refusal is a 409 saying why. */
import { and, eq, max } from "drizzle-orm";
import type { Executor } from "../../db/client.ts";
import { devices, firmwareVersions, type ModelRow } from "../../db/schema.ts";
import { AppError } from "../errors.ts";

/** The image about to be rolled out: a recorded version, or an upload not recorded yet (no id). */
export type Candidate = { id?: number; version: string; chip: string; projectName: string; secureVersion: number | null };
export type Confirmations = { confirm_downgrade?: boolean; confirm_image_change?: boolean };

const refused = (code: string, message: string, details: Record<string, unknown>) => new AppError(409, code, message, details);

/** Why `candidate` may not be rolled out to `model`'s devices, or null. `runningSecureVersion`: the highest secure_version devices report running. */
export function refusalOf(model: ModelRow, candidate: Candidate, confirmed: Confirmations, runningSecureVersion: number | null): AppError | null {
  const { stableVersionId, firmwareVersion: stable, firmwareChip, firmwareProjectName } = model;
  if (stableVersionId !== null && !confirmed.confirm_image_change) {
    if (firmwareChip !== null && candidate.chip !== firmwareChip) {
      return refused("IMAGE_CHANGE_NOT_CONFIRMED", `Firmware ${candidate.version} is built for ${candidate.chip}, the stable version ${stable} for ${firmwareChip}; confirm the image change to roll it out.`, {
        chip: candidate.chip,
        stable_chip: firmwareChip,
      });
    }
    if (firmwareProjectName !== null && candidate.projectName !== firmwareProjectName) {
      return refused("IMAGE_CHANGE_NOT_CONFIRMED", `Firmware ${candidate.version} is project "${candidate.projectName}", the stable version ${stable} is "${firmwareProjectName}"; confirm the image change to roll it out.`, {
        project_name: candidate.projectName,
        stable_project_name: firmwareProjectName,
      });
    }
  }
  if (stableVersionId !== null && candidate.id !== undefined && candidate.id < stableVersionId && !confirmed.confirm_downgrade) {
    return refused("DOWNGRADE_NOT_CONFIRMED", `Firmware ${candidate.version} was uploaded before the stable version ${stable}; confirm the downgrade to roll it out.`, {
      version: candidate.version,
      stable_version: stable,
    });
  }
  // Anti-rollback: a device burns the secure version of what it runs into eFuses and refuses anything lower.
  if (runningSecureVersion !== null && (candidate.secureVersion ?? 0) < runningSecureVersion) {
    return refused("SECURE_VERSION_TOO_LOW", `Firmware ${candidate.version} has secure_version ${candidate.secureVersion ?? 0}, lower than ${runningSecureVersion} of a version devices report running: their anti-rollback would refuse it.`, {
      secure_version: candidate.secureVersion,
      running_secure_version: runningSecureVersion,
    });
  }
  return null;
}

export async function preflight(tx: Executor, model: ModelRow, candidate: Candidate, confirmed: Confirmations): Promise<void> {
  const [running] = await tx
    .select({ secureVersion: max(firmwareVersions.secureVersion) })
    .from(devices)
    .innerJoin(firmwareVersions, and(eq(firmwareVersions.deviceModelId, devices.deviceModelId), eq(firmwareVersions.version, devices.reportedFirmwareVersion)))
    .where(eq(devices.deviceModelId, model.id));
  const refusal = refusalOf(model, candidate, confirmed, running?.secureVersion ?? null);
  if (refusal) throw refusal;
}
