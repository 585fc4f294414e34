import type { Services } from "../lib/context.ts";
import { alsoUnderApi, type Route } from "../lib/http/route.ts";
import listAuditEvents from "./api/audit/index.get.ts";
import listDocsAssets from "./api/docs/assets/[file].get.ts";
import getDocs from "./api/docs/index.get.ts";
import getOpenApi from "./api/docs/openapi.json.get.ts";
import deleteDeviceModel from "./api/device-models/[id]/index.delete.ts";
import getDeviceModel from "./api/device-models/[id]/index.get.ts";
import putDeviceModel from "./api/device-models/[id]/index.put.ts";
import listDeviceModels from "./api/device-models/index.get.ts";
import createDeviceModel from "./api/device-models/index.post.ts";
import deleteDevice from "./api/devices/[id]/index.delete.ts";
import getDevice from "./api/devices/[id]/index.get.ts";
import putDevice from "./api/devices/[id]/index.put.ts";
import getDeviceClientStatus from "./api/devices/[id]/keycloak-status.get.ts";
import syncDeviceClient from "./api/devices/[id]/keycloak-sync.post.ts";
import getProvisioning from "./api/devices/[id]/provisioning.get.ts";
import listDevices from "./api/devices/index.get.ts";
import createDevice from "./api/devices/index.post.ts";
import authCallback from "./api/auth/callback.get.ts";
import authLogin from "./api/auth/login.get.ts";
import authSignIn from "./api/auth/login.post.ts";
import authLogout from "./api/auth/logout.get.ts";
import authSelf from "./api/auth/self.get.ts";
import getHealth from "./api/health/index.get.ts";
import getLiveness from "./api/health/live.get.ts";
import getMetrics from "./metrics.get.ts";
import getIotConfig from "./iot/config.get.ts";
import getIotFirmwareVersion from "./iot/firmware-version.get.ts";
import getIotFirmware from "./iot/firmware.get.ts";
import getIotProvisioning from "./iot/provisioning.get.ts";
import postIotState from "./iot/state.post.ts";
import postIotLogs from "./iot/logs.post.ts";
import getDeviceLogs from "./api/devices/[id]/logs.get.ts";
import postIotCoreDump from "./iot/coredump.post.ts";
import listCoreDumps from "./api/devices/[id]/coredumps/index.get.ts";
import downloadCoreDump from "./api/devices/[id]/coredumps/[cid].get.ts";
import deleteCoreDump from "./api/devices/[id]/coredumps/[cid].delete.ts";
import getModelCrashes from "./api/device-models/[id]/crashes.get.ts";
import getEvents from "./api/events.get.ts";
import getFleet from "./api/device-models/[id]/fleet.get.ts";
import uploadFirmware from "./api/device-models/[id]/firmware.post.ts";
import downloadFirmware from "./api/device-models/[id]/firmware.get.ts";
import listFirmwareVersions from "./api/device-models/[id]/firmware/versions/index.get.ts";
import getFirmwareVersion from "./api/device-models/[id]/firmware/versions/[vid]/index.get.ts";
import downloadFirmwareVersion from "./api/device-models/[id]/firmware/versions/[vid]/image.get.ts";
import deleteFirmwareVersion from "./api/device-models/[id]/firmware/versions/[vid]/index.delete.ts";
import listRollouts from "./api/device-models/[id]/rollouts/index.get.ts";
import createRollout from "./api/device-models/[id]/rollouts/index.post.ts";
import getRollout from "./api/device-models/[id]/rollouts/[rid]/index.get.ts";
import pauseRollout from "./api/device-models/[id]/rollouts/[rid]/pause.post.ts";
import resumeRollout from "./api/device-models/[id]/rollouts/[rid]/resume.post.ts";
import advanceRollout from "./api/device-models/[id]/rollouts/[rid]/advance.post.ts";
import abortRollout from "./api/device-models/[id]/rollouts/[rid]/abort.post.ts";
import revertRollout from "./api/device-models/[id]/rollouts/[rid]/revert.post.ts";
import retryRolloutDevice from "./api/device-models/[id]/rollouts/[rid]/devices/[device_id]/retry.post.ts";
import pinFirmware from "./api/devices/[id]/firmware-pin.put.ts";
import unpinFirmware from "./api/devices/[id]/firmware-pin.delete.ts";
import getOpenIdConfiguration from "./oauth2/.well-known/openid-configuration.get.ts";
import getJwks from "./oauth2/jwks.get.ts";
import postToken from "./oauth2/token.post.ts";
import rotateDevice from "./api/devices/[id]/rotate.post.ts";
import getRotationDashboard from "./api/rotation/dashboard.get.ts";
import getRotationStatus from "./api/rotation/status.get.ts";
import triggerRotation from "./api/rotation/trigger.post.ts";
import clearTestSession from "./api/testing/auth/clear.post.ts";
import forceSelfError from "./api/testing/auth/force-error.post.ts";
import startTestSession from "./api/testing/auth/session.post.ts";
import cleanUpDeviceClients from "./api/testing/keycloak-cleanup.post.ts";

/** Every endpoint there is, explicitly (test/route-files.test.ts holds the files in functions/ to this list). */
export const allRoutes: Route[] = [
  listDeviceModels,
  createDeviceModel,
  getDeviceModel,
  putDeviceModel,
  deleteDeviceModel,
  uploadFirmware,
  downloadFirmware,
  listFirmwareVersions,
  getFirmwareVersion,
  downloadFirmwareVersion,
  deleteFirmwareVersion,
  getFleet,
  listRollouts,
  createRollout,
  getRollout,
  pauseRollout,
  resumeRollout,
  advanceRollout,
  abortRollout,
  revertRollout,
  retryRolloutDevice,
  getModelCrashes,
  listDevices,
  createDevice,
  getDevice,
  putDevice,
  deleteDevice,
  getProvisioning,
  getDeviceLogs,
  listCoreDumps,
  downloadCoreDump,
  deleteCoreDump,
  getDeviceClientStatus,
  syncDeviceClient,
  rotateDevice,
  pinFirmware,
  unpinFirmware,
  getRotationStatus,
  triggerRotation,
  getRotationDashboard,
  listAuditEvents,
  getEvents,
  ...alsoUnderApi(getIotConfig),
  ...alsoUnderApi(getIotFirmwareVersion),
  ...alsoUnderApi(getIotFirmware),
  ...alsoUnderApi(getIotProvisioning),
  ...alsoUnderApi(postIotState),
  ...alsoUnderApi(postIotLogs),
  ...alsoUnderApi(postIotCoreDump),
  postToken,
  getJwks,
  getOpenIdConfiguration,
  getHealth,
  getLiveness,
  authSelf,
  authLogin,
  authSignIn,
  authCallback,
  authLogout,
  getMetrics,
  getDocs,
  getOpenApi,
  listDocsAssets,
  startTestSession,
  clearTestSession,
  forceSelfError,
  cleanUpDeviceClients,
];

/** Routes served only by some configurations; every other route is always served. */
type Enabling = Pick<Services, "builtinIssuer" | "browserSession" | "localSignIn" | "testing">;
const inTestingMode = (services: Enabling) => services.testing !== null;
const servedWhen = new Map<Route, (services: Enabling) => boolean>([
  // The built-in token server's keys and discovery; its token endpoint stays with Keycloak, as a pass-through.
  [getJwks, (services) => services.builtinIssuer !== null],
  [getOpenIdConfiguration, (services) => services.builtinIssuer !== null],
  // The browser login: the OIDC provider's, or the sign-in page with the admin API token. /api/auth/self (401 without a
  // session) and logout (a 302 back) stay, because the web UI calls them whether or not it can sign in through us.
  [authLogin, (services) => services.browserSession !== null || services.localSignIn !== null],
  [authCallback, (services) => services.browserSession !== null],
  [authSignIn, (services) => services.localSignIn !== null],
  // The web UI's end-to-end suite's: only with TESTING_MODE, else 404 like any unknown route.
  [startTestSession, inTestingMode],
  [clearTestSession, inTestingMode],
  [forceSelfError, inTestingMode],
  [cleanUpDeviceClients, inTestingMode],
]);

/** The endpoints this server answers: the router and the OpenAPI document are built from this list. */
export function routesFor(services: Enabling): Route[] {
  return allRoutes.filter((route) => servedWhen.get(route)?.(services) ?? true);
}
