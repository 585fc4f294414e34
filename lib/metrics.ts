import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** The Prometheus metrics of CONTRACT §8. One registry per process (tests build their own). */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
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
  sources: { devicesByState(): Promise<Record<string, number>>; unconfirmedDevices(): Promise<number>; firmwareCacheBytes(): number },
) {
  const registers = [metrics.registry];
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
