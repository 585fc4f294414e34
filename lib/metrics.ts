import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { DEFAULT_STALE_HOURS } from "./device-state/fleet.ts";
import type { Fleet } from "./schemas.ts";

/** The Prometheus metrics of CONTRACT §8. One registry per process (tests build their own). */
export function createMetrics(options: { processMetrics?: boolean } = {}) {
  const registry = new Registry();
  // The process's own (CPU, memory, event loop); a CLI command, which nobody scrapes, skips them and their set-up.
  if (options.processMetrics !== false) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  return {
    registry,
    httpRequests: new Counter({
      name: "iot_http_requests_total",
      help: "HTTP requests by route pattern, method and status",
      labelNames: ["route", "method", "status"],
      registers,
    }),
    httpDuration: new Histogram({
      name: "iot_http_request_duration_seconds",
      help: "HTTP request duration by route pattern",
      labelNames: ["route", "method"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers,
    }),
    configOperations: new Counter({
      name: "iot_config_operations_total",
      help: "Device and model operations by operation and status",
      labelNames: ["operation", "status"],
      registers,
    }),
    configOperationDuration: new Histogram({
      name: "iot_config_operation_duration_seconds",
      help: "Device and model operation duration",
      labelNames: ["operation"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    authValidations: new Counter({
      name: "iot_auth_validation_total",
      help: "Token validations by result",
      labelNames: ["status"],
      registers,
    }),
    mqttPublishes: new Counter({
      name: "iot_mqtt_publish_total",
      help: "MQTT notices by topic kind and result",
      labelNames: ["topic", "status"],
      registers,
    }),
    mqttConnectionState: new Gauge({
      name: "iot_mqtt_connection_state",
      help: "1 while connected to the MQTT broker, 0 otherwise (absent when MQTT is disabled)",
      registers,
    }),
    rotationJobRuns: new Counter({
      name: "iot_rotation_job_runs_total",
      help: "Rotation cycles by result",
      labelNames: ["result"],
      registers,
    }),
    rotationDuration: new Histogram({
      name: "iot_rotation_duration_seconds",
      help: "Time from a device becoming PENDING to its rotation completing",
      buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 900],
      registers,
    }),
    deviceStateWrites: new Counter({
      name: "iot_device_state_writes_total",
      help: "Device rows written with last_seen_at, header reports and full downloads (coalesced: at most one per device per minute, or per flush for downloads)",
      registers,
    }),
    deviceSightingsDropped: new Counter({
      name: "iot_device_sightings_dropped_total",
      help: "Device sightings and full-download records not written (the database refused them, or too many were waiting)",
      registers,
    }),
    deviceReportHeadersIgnored: new Counter({
      name: "iot_device_report_headers_ignored_total",
      help: "Malformed X-Firmware-Version, X-Firmware-Elf-Sha256 or X-Ota-State headers, ignored",
      labelNames: ["header"],
      registers,
    }),
    keycloakOperations: new Counter({
      name: "iot_keycloak_operations_total",
      help: "Identity provider operations by operation and status",
      labelNames: ["operation", "status"],
      registers,
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/** The gauges of what services hold, read from them each time /metrics is scraped. */
export function observeServices(
  metrics: Metrics,
  sources: {
    devicesByState(): Promise<Record<string, number>>;
    unconfirmedDevices(): Promise<number>;
    firmwareCacheBytes(): number;
    fleets(staleHours: number): Promise<Map<string, Fleet>>;
  },
) {
  const registers = [metrics.registry];
  // Both fleet gauges come from one read per scrape.
  let fleets: Promise<Map<string, Fleet>> | null = null;
  const readFleets = () => (fleets ??= sources.fleets(DEFAULT_STALE_HOURS).finally(() => setTimeout(() => (fleets = null), 1000).unref()));
  new Gauge({
    name: "iot_devices_running_firmware",
    help: "Devices per model and running firmware version (version \"unknown\": neither reported nor inferred)",
    labelNames: ["model", "version"],
    registers,
    async collect() {
      this.reset();
      for (const [model, fleet] of await readFleets()) {
        for (const { version, running } of fleet.versions) if (running > 0) this.set({ model, version: version ?? "unknown" }, running);
      }
    },
  });
  new Gauge({
    name: "iot_devices_stale",
    help: `Devices per model not seen for ${DEFAULT_STALE_HOURS} hours (or never)`,
    labelNames: ["model"],
    registers,
    async collect() {
      this.reset();
      for (const [model, fleet] of await readFleets()) this.set({ model }, fleet.stale);
    },
  });
  new Gauge({
    name: "iot_firmware_cache_bytes",
    help: "Bytes of firmware images held in memory for downloads (at most FIRMWARE_CACHE_BYTES)",
    registers,
    collect() {
      this.set(sources.firmwareCacheBytes());
    },
  });
  new Gauge({
    name: "iot_devices",
    help: "Devices per rotation state",
    labelNames: ["rotation_state"],
    registers,
    async collect() {
      for (const [state, n] of Object.entries(await sources.devicesByState())) this.set({ rotation_state: state }, n);
    },
  });
  new Gauge({
    name: "iot_rotation_unconfirmed_devices",
    help: "Devices that may hold a new secret they have not used yet (both secrets work until the grace period ends)",
    registers,
    async collect() {
      this.set(await sources.unconfirmedDevices());
    },
  });
}

/** Counts and times one device or model operation (iot_config_operations_total, iot_config_operation_duration_seconds). */
async function measure<T>(metrics: Metrics, operation: string, work: () => Promise<T>): Promise<T> {
  const stopTimer = metrics.configOperationDuration.startTimer({ operation });
  try {
    const result = await work();
    metrics.configOperations.inc({ operation, status: "success" });
    return result;
  } catch (error) {
    metrics.configOperations.inc({ operation, status: "error" });
    throw error;
  } finally {
    stopTimer();
  }
}

type AsyncMethods<S> = { [K in keyof S]: S[K] extends (...args: any[]) => Promise<unknown> ? K : never }[keyof S];

/** The same service with the named methods measured under the given operation names. */
export function instrument<S extends object>(service: S, metrics: Metrics, operations: Partial<Record<AsyncMethods<S>, string>>): S {
  const wrapped = { ...service } as Record<string, unknown>;
  for (const [method, operation] of Object.entries(operations) as [string, string][]) {
    const original = (service as Record<string, (...args: unknown[]) => Promise<unknown>>)[method]!;
    wrapped[method] = (...args: unknown[]) => measure(metrics, operation, () => original.apply(service, args));
  }
  return wrapped as S;
}
