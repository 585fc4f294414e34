import type { Route } from "../lib/http/route.ts";
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
import listDevices from "./api/devices/index.get.ts";
import createDevice from "./api/devices/index.post.ts";
import getHealth from "./api/health/index.get.ts";
import getLiveness from "./api/health/live.get.ts";
import getMetrics from "./metrics.get.ts";

/** Every endpoint, explicitly: the router and the OpenAPI document are built from this list. */
export const routes: Route[] = [
  listDeviceModels,
  createDeviceModel,
  getDeviceModel,
  putDeviceModel,
  deleteDeviceModel,
  listDevices,
  createDevice,
  getDevice,
  putDevice,
  deleteDevice,
  getHealth,
  getLiveness,
  getMetrics,
  getDocs,
  getOpenApi,
  listDocsAssets,
];
