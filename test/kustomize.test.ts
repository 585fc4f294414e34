import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import { loadConfig } from "../lib/config.ts";

const KUSTOMIZE_DIR = fileURLToPath(new URL("../kustomize/", import.meta.url));
const KUBECTL = process.env.KUBECTL ?? (existsSync("/usr/bin/kubectl") ? "/usr/bin/kubectl" : "kubectl");

type Manifest = { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string> }; [field: string]: any };
type Container = { name: string; image: string; command?: string[]; securityContext?: any; envFrom?: any[]; env?: any[]; [field: string]: any };

function render(dir: string): Manifest[] {
  let output: string;
  try {
    output = execFileSync(KUBECTL, ["kustomize", dir], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (error) {
    const { code, stderr } = error as NodeJS.ErrnoException & { stderr?: string };
    if (code === "ENOENT") throw new Error(`kubectl is missing (looked for "${KUBECTL}"): install kubectl, or set KUBECTL to its path`);
    throw new Error(`kubectl kustomize ${dir} failed: ${stderr ?? (error as Error).message}`);
  }
  return parseAllDocuments(output).map((doc) => doc.toJS() as Manifest).filter(Boolean);
}

const one = (manifests: Manifest[], kind: string) => {
  const found = manifests.filter((m) => m.kind === kind);
  assert.equal(found.length, 1, `exactly one ${kind}`);
  return found[0]!;
};

const overlays = readdirSync(join(KUSTOMIZE_DIR, "overlays")).map((name) => `overlays/${name}`);
const targets = ["base", ...overlays];

/** Setting names that hold secrets. A token endpoint's URL (OIDC_TOKEN_URL) is not one. */
const isSecretName = (key: string) => /SECRET|PASSWORD|DATABASE_URL/.test(key) || /TOKEN(?!_URL$)/.test(key);
/** A URL with a password in it (scheme://user:password@host). */
const CREDENTIALS_IN_URL = /^[a-z][a-z0-9+.-]*:\/\/[^/@\s:]+:[^/@\s]+@/i;
/** Values that pass lib/config.ts for each secret key (the committed files hold placeholders only). */
const dummySecret = (key: string) =>
  key === "DATABASE_URL"
    ? "postgres://iotsupport:dummy@postgres:5432/iotsupport"
    : key === "SECRET_ENCRYPTION_KEY"
      ? Buffer.alloc(32, 7).toString("base64url")
      : "dummy-secret-value-0123456789";

test("there is at least one overlay besides the base", () => {
  assert.ok(overlays.includes("overlays/homelab"), `overlays found: ${overlays.join(", ")}`);
});

for (const target of targets) {
  describe(`kubectl kustomize kustomize/${target}`, () => {
    const manifests = render(join(KUSTOMIZE_DIR, target));
    const deployment = one(manifests, "Deployment");
    const cronJob = one(manifests, "CronJob");
    const service = one(manifests, "Service");
    const configMaps = manifests.filter((m) => m.kind === "ConfigMap");
    const secrets = manifests.filter((m) => m.kind === "Secret");
    const podSpec = deployment.spec.template.spec;
    const jobPodSpec = cronJob.spec.jobTemplate.spec.template.spec;
    const api = podSpec.containers.find((c: Container) => c.name === "api") as Container;
    const migrate = (podSpec.initContainers ?? []).find((c: Container) => c.command?.join(" ") === "node dist/cli.js migrate") as Container | undefined;
    const rotation = jobPodSpec.containers[0] as Container;
    const allContainers: Container[] = [...podSpec.containers, ...(podSpec.initContainers ?? []), ...jobPodSpec.containers];

    /** The environment a container sees: its envFrom ConfigMaps (data) and Secrets (keys, dummy values) and env. */
    function environmentOf(container: Container): Record<string, string> {
      const env: Record<string, string> = {};
      for (const source of container.envFrom ?? []) {
        if (source.configMapRef) {
          const map = configMaps.find((m) => m.metadata.name === source.configMapRef.name);
          assert.ok(map, `${container.name}: ConfigMap ${source.configMapRef.name} is rendered`);
          Object.assign(env, map.data);
        }
        if (source.secretRef) {
          const secret = secrets.find((m) => m.metadata.name === source.secretRef.name);
          assert.ok(secret, `${container.name}: Secret ${source.secretRef.name} is rendered`);
          for (const key of Object.keys({ ...secret.data, ...secret.stringData })) env[key] = dummySecret(key);
        }
      }
      for (const variable of container.env ?? []) if (typeof variable.value === "string") env[variable.name] = variable.value;
      return env;
    }

    test("the CronJob runs one rotation cycle, never two at once, and keeps a bounded history", () => {
      assert.deepEqual(rotation.command, ["node", "dist/cli.js", "rotation-job"]);
      assert.equal(cronJob.spec.concurrencyPolicy, "Forbid");
      assert.ok(cronJob.spec.successfulJobsHistoryLimit >= 1);
      assert.ok(cronJob.spec.failedJobsHistoryLimit >= 1);
      assert.ok(cronJob.spec.startingDeadlineSeconds > 0);
      assert.equal(jobPodSpec.restartPolicy, "Never");
      assert.equal(rotation.terminationMessagePolicy, "FallbackToLogsOnError", "a failed run's reason shows on the pod");
    });

    test("probes: readiness /api/health, liveness /api/health/live, on the container port", () => {
      assert.equal(api.readinessProbe.httpGet.path, "/api/health");
      assert.equal(api.livenessProbe.httpGet.path, "/api/health/live");
      const port = api.ports.find((p: any) => p.name === api.readinessProbe.httpGet.port || p.containerPort === api.readinessProbe.httpGet.port);
      assert.equal(port?.containerPort, 3201);
      assert.equal(api.livenessProbe.httpGet.port, api.readinessProbe.httpGet.port);
    });

    test("the Service sends port 80 to the API's port 3201", () => {
      const [port] = service.spec.ports;
      assert.equal(port.port, 80);
      assert.ok(port.targetPort === 3201 || api.ports.some((p: any) => p.name === port.targetPort && p.containerPort === 3201));
      for (const [label, value] of Object.entries(service.spec.selector)) {
        assert.equal(deployment.spec.template.metadata.labels[label], value, `the Service selects the API pods (${label})`);
        if (label === "app.kubernetes.io/component") {
          assert.notEqual(cronJob.spec.jobTemplate.spec.template.metadata.labels?.[label], value, "rotation pods are not endpoints");
        }
      }
    });

    test("migrations run in an initContainer before the server starts", () => {
      assert.ok(migrate, "an initContainer runs node dist/cli.js migrate");
      assert.deepEqual(api.command ?? ["node", "dist/server.js"], ["node", "dist/server.js"]);
    });

    test("the server, the migration and the CronJob use the same image", () => {
      const images = new Set(allContainers.map((c) => c.image));
      assert.equal(images.size, 1, `images: ${[...images].join(", ")}`);
    });

    test("the rendered environment is a valid production configuration for every container", () => {
      for (const container of [api, migrate!, rotation]) {
        const env = environmentOf(container);
        assert.equal(env.NODE_ENV, "production", container.name);
        let config;
        try {
          config = loadConfig(env);
        } catch (error) {
          assert.fail(`${container.name}: ${(error as Error).message}`);
        }
        assert.equal(config.embeddedDatabase, false, `${container.name}: uses PostgreSQL (DATABASE_URL), not PGlite`);
        assert.equal(config.ROTATION_SCHEDULER, "external", `${container.name}: the CronJob runs rotation, not the server's timer`);
        assert.equal(config.AUTH_DISABLED, false);
      }
      // The root filesystem is read-only, and starting the services prepares ASSETS_DIR: it must be on a volume.
      const mountFor = (container: Container, path: string) =>
        (container.volumeMounts ?? []).find((m: any) => path === m.mountPath || path.startsWith(`${m.mountPath}/`));
      for (const container of [api, rotation]) {
        const { assetsDir } = loadConfig(environmentOf(container));
        assert.ok(mountFor(container, assetsDir), `${container.name}: ASSETS_DIR ${assetsDir} is on a volume`);
      }
      // With FIRMWARE_STORE=s3 the images are in the bucket, and ASSETS_DIR holds nothing.
      if (loadConfig(environmentOf(api)).FIRMWARE_STORE === "fs") {
        const firmwareMount = mountFor(api, loadConfig(environmentOf(api)).assetsDir)!;
        const firmwareVolume = podSpec.volumes.find((v: any) => v.name === firmwareMount.name);
        assert.ok(firmwareVolume?.persistentVolumeClaim, "the server keeps firmware on a PersistentVolumeClaim");
      }
    });

    test("no ConfigMap holds a secret, and the Secret holds the secrets of CONTRACT §9", () => {
      for (const map of configMaps) {
        const leaked = Object.keys(map.data ?? {}).filter(isSecretName);
        assert.deepEqual(leaked, [], `ConfigMap ${map.metadata.name} must not hold ${leaked.join(", ")}`);
        const withCredentials = Object.entries(map.data ?? {}).filter(([, value]) => CREDENTIALS_IN_URL.test(String(value)));
        assert.deepEqual(withCredentials.map(([key]) => key), [], `ConfigMap ${map.metadata.name}: a URL with a password belongs in the Secret`);
      }
      const keys = secrets.flatMap((s) => Object.keys({ ...s.data, ...s.stringData }));
      for (const key of ["DATABASE_URL", "KEYCLOAK_ADMIN_CLIENT_SECRET", "OIDC_CLIENT_SECRET", "SECRET_ENCRYPTION_KEY", "WIFI_PASSWORD", "MQTT_PASSWORD", "ADMIN_API_TOKEN"]) {
        assert.ok(keys.includes(key), `Secret key ${key}`);
      }
    });

    test("every container runs locked down: non-root, read-only root, no capabilities, no escalation, RuntimeDefault seccomp", () => {
      for (const spec of [podSpec, jobPodSpec]) {
        assert.equal(spec.securityContext.runAsNonRoot, true);
        assert.ok(spec.securityContext.runAsUser > 0);
        assert.equal(spec.securityContext.seccompProfile.type, "RuntimeDefault");
        assert.notEqual(spec.automountServiceAccountToken, true);
      }
      for (const container of allContainers) {
        const context = container.securityContext;
        assert.equal(context?.allowPrivilegeEscalation, false, container.name);
        assert.equal(context.readOnlyRootFilesystem, true, container.name);
        assert.deepEqual(context.capabilities?.drop, ["ALL"], container.name);
        assert.equal(context.privileged ?? false, false, container.name);
        assert.ok(container.volumeMounts?.some((m: any) => m.mountPath === "/tmp"), `${container.name}: writable /tmp`);
        assert.ok(container.resources?.requests?.memory && container.resources?.limits?.memory, `${container.name}: memory request and limit`);
      }
    });

    test("shutdown drains: preStop sleep within a grace period of at least 30 s", () => {
      assert.ok(podSpec.terminationGracePeriodSeconds >= 30);
      const preStop = api.lifecycle?.preStop;
      assert.ok(preStop?.sleep || preStop?.exec?.command?.[0] === "sleep", "a preStop sleep");
      const seconds = Number(preStop.sleep?.seconds ?? preStop.exec.command[1]);
      assert.ok(seconds > 0 && seconds < podSpec.terminationGracePeriodSeconds - 20, "the sleep leaves time for the server's own drain");
    });

    test("the firmware storage can be shared by every replica", () => {
      const replicas = deployment.spec.replicas ?? 1;
      const claims = manifests.filter((m) => m.kind === "PersistentVolumeClaim");
      if (loadConfig(environmentOf(api)).FIRMWARE_STORE === "s3") {
        assert.deepEqual(claims.map((c) => c.metadata.name), [], "firmware in a bucket: no volume claim");
        return;
      }
      const claim = one(manifests, "PersistentVolumeClaim");
      if (replicas > 1) assert.deepEqual(claim.spec.accessModes, ["ReadWriteMany"], `${replicas} replicas need ReadWriteMany`);
    });
  });
}

describe("kubectl kustomize kustomize/overlays/ha: stateless replicas", () => {
  const manifests = render(join(KUSTOMIZE_DIR, "overlays/ha"));
  const deployment = one(manifests, "Deployment");
  const budget = one(manifests, "PodDisruptionBudget");
  const replicas: number = deployment.spec.replicas;
  const config = one(manifests.filter((m) => m.kind === "ConfigMap"), "ConfigMap").data as Record<string, string>;
  const secretKeys = Object.keys(one(manifests, "Secret").data ?? {});

  test("at least two replicas, firmware in an S3 bucket, notices through one broker for all of them", () => {
    assert.ok(replicas >= 2, `replicas: ${replicas}`);
    assert.equal(config.FIRMWARE_STORE, "s3");
    assert.ok(config.S3_BUCKET && config.S3_ENDPOINT, "the bucket and its endpoint are set");
    for (const key of ["S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"]) {
      assert.ok(secretKeys.includes(key), `${key} is in the Secret`);
      assert.ok(!(key in config), `${key} is not in the ConfigMap`);
    }
    assert.ok(config.MQTT_URL, "an external broker (an embedded one would serve one replica's devices only)");
  });

  test("no pod mounts a volume claim (none ReadWriteOnce, none at all)", () => {
    assert.deepEqual(manifests.filter((m) => m.kind === "PersistentVolumeClaim"), []);
    const cronJob = one(manifests, "CronJob");
    for (const spec of [deployment.spec.template.spec, cronJob.spec.jobTemplate.spec.template.spec]) {
      assert.deepEqual(spec.volumes.filter((v: any) => !v.emptyDir).map((v: any) => v.name), [], "only emptyDir volumes");
    }
  });

  test("a rolling update starts a new pod before stopping an old one, so it never drops below the ready replicas", () => {
    assert.equal(deployment.spec.strategy.type, "RollingUpdate");
    assert.equal(deployment.spec.strategy.rollingUpdate.maxUnavailable, 0);
    assert.ok(deployment.spec.strategy.rollingUpdate.maxSurge >= 1);
    assert.ok(deployment.spec.template.spec.containers[0].readinessProbe, "ready means the readiness probe passed");
  });

  test("the PodDisruptionBudget covers the API pods and always leaves at least one of them", () => {
    const labels = deployment.spec.template.metadata.labels;
    for (const [label, value] of Object.entries(budget.spec.selector.matchLabels)) assert.equal(labels[label], value, `selects the API pods (${label})`);
    const { maxUnavailable, minAvailable } = budget.spec;
    if (maxUnavailable !== undefined) assert.ok(maxUnavailable >= 1 && maxUnavailable <= replicas - 1, `maxUnavailable ${maxUnavailable}`);
    else assert.ok(minAvailable >= 1 && minAvailable <= replicas - 1, `minAvailable ${minAvailable}`);
  });
});

test("the ServiceMonitor component renders on top of the base and scrapes /metrics of the Service", () => {
  const dir = mkdtempSync(join(tmpdir(), "kustomize-servicemonitor-"));
  try {
    const base = relative(dir, join(KUSTOMIZE_DIR, "base"));
    const component = relative(dir, join(KUSTOMIZE_DIR, "components/servicemonitor"));
    writeFileSync(join(dir, "kustomization.yaml"), `resources: [${base}]\ncomponents: [${component}]\n`);
    const manifests = render(dir);
    const monitor = one(manifests, "ServiceMonitor");
    const service = one(manifests, "Service");
    const [endpoint] = monitor.spec.endpoints;
    assert.equal(endpoint.path, "/metrics");
    assert.ok(service.spec.ports.some((p: any) => p.name === endpoint.port));
    for (const [label, value] of Object.entries(monitor.spec.selector.matchLabels)) assert.equal(service.metadata.labels?.[label], value);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
