import { Counter, Gauge, Histogram, type Registry } from "prom-client";

/** The metrics of device logs, core dumps and the live event stream (docs/device-logs.md), on the process's registry. */
export function createDeviceLogMetrics(registry: Registry) {
  const registers = [registry];
  return {
    received: new Counter({
      name: "iot_device_log_lines_received_total",
      help: "Device log lines accepted for storing, by where they came from (mqtt, http)",
      labelNames: ["source"],
      registers,
    }),
    rejected: new Counter({
      name: "iot_device_log_lines_rejected_total",
      help: "Device log lines skipped as bad: not_json, no_message, oversized, unknown_entity, too_many_lines",
      labelNames: ["source", "reason"],
      registers,
    }),
    dropped: new Counter({
      name: "iot_device_log_lines_dropped_total",
      help: "Accepted device log lines not stored: buffer_full (HTTP answered 503), write_failed (the database refused the batch)",
      labelNames: ["reason"],
      registers,
    }),
    written: new Counter({ name: "iot_device_log_lines_written_total", help: "Device log lines stored", registers }),
    buffered: new Gauge({ name: "iot_device_log_buffer_lines", help: "Device log lines waiting in memory to be written", registers }),
    writeDuration: new Histogram({
      name: "iot_device_log_write_duration_seconds",
      help: "Time to store one batch of device log lines",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers,
    }),
    retentionDeleted: new Counter({
      name: "iot_device_log_retention_total",
      help: "Retention work: day partitions dropped (reason age) and lines deleted (reason size)",
      labelNames: ["reason"],
      registers,
    }),
    eventClients: new Gauge({ name: "iot_event_stream_clients", help: "Clients connected to GET /api/events", registers }),
    eventClientsDropped: new Counter({
      name: "iot_event_stream_clients_dropped_total",
      help: "GET /api/events clients cut off because EVENTS_CLIENT_BUFFER_BYTES waited unread for them",
      registers,
    }),
    crashes: new Counter({
      name: "iot_device_crashes_total",
      help: "Core dumps received, by model code and firmware version (\"unknown\" for a version the model does not have)",
      labelNames: ["model", "firmware_version"],
      registers,
    }),
  };
}

export type DeviceLogMetrics = ReturnType<typeof createDeviceLogMetrics>;
