import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { ConfigError, loadConfig } from "../lib/config.ts";
import { generateFernetKey } from "../lib/secrets.ts";
import { bareEnv, runEntry } from "./support/process.ts";

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    return error.problems;
  }
  assert.fail("the configuration was accepted");
}

const names = (problems: string[]) => problems.map((problem) => problem.split(":")[0]).sort();

describe("configuration", () => {
  const cwd = mkdtempSync(join(tmpdir(), "iot-config-test-"));
  after(() => rmSync(cwd, { recursive: true, force: true }));

  test("URLs lose their trailing slashes once, so every use can append a path", () => {
    const config = loadConfig({ BASEURL: "https://iot.lan/", KEYCLOAK_BASE_URL: "https://kc.lan//", KEYCLOAK_REALM: "r", KEYCLOAK_ADMIN_CLIENT_ID: "c", KEYCLOAK_ADMIN_CLIENT_SECRET: "s", OIDC_ISSUER_URL: "https://kc.lan/realms/r/" });
    assert.equal(config.BASEURL, "https://iot.lan");
    assert.equal(config.KEYCLOAK_BASE_URL, "https://kc.lan");
    assert.equal(config.OIDC_ISSUER_URL, "https://kc.lan/realms/r");
  });

  test("nothing set: the embedded defaults", () => {
    const config = loadConfig({});
    assert.equal(config.PORT, 3201);
    assert.equal(config.HOST, "0.0.0.0");
    assert.equal(config.DATA_DIR, "./data");
    assert.equal(config.embeddedDatabase, true);
    assert.equal(config.identity, "builtin");
    assert.equal(config.assetsDir, "./data/firmware");
    assert.equal(config.production, false);
    assert.equal(config.AUTH_DISABLED, false);
    assert.equal(config.MQTT_URL, undefined);
  });

  test("every problem is listed at once, including checks across settings", () => {
    const problems = problemsOf({
      PORT: "not-a-port",
      DATABASE_URL: "mysql://user:dbpass999@db.test/iot",
      KEYCLOAK_BASE_URL: "http://keycloak.test",
      KEYCLOAK_ADMIN_CLIENT_SECRET: "supersecret123",
    });
    assert.deepEqual(names(problems), ["DATABASE_URL", "KEYCLOAK_ADMIN_CLIENT_ID", "KEYCLOAK_REALM", "PORT"]);
    const message = new ConfigError(problems).message;
    assert.ok(!message.includes("dbpass999") && !message.includes("supersecret123"), message);
  });

  test("AUTH_DISABLED=true is refused in production, allowed in development", () => {
    const key = generateFernetKey();
    assert.deepEqual(names(problemsOf({ NODE_ENV: "production", AUTH_DISABLED: "true", SECRET_ENCRYPTION_KEY: key })), ["AUTH_DISABLED"]);
    assert.equal(loadConfig({ AUTH_DISABLED: "true" }).AUTH_DISABLED, true);
  });

  test("TESTING_MODE=true is refused in production, allowed in development, off by default", () => {
    const key = generateFernetKey();
    for (const on of ["true", "1"]) {
      assert.deepEqual(names(problemsOf({ NODE_ENV: "production", TESTING_MODE: on, SECRET_ENCRYPTION_KEY: key })), ["TESTING_MODE"]);
    }
    assert.equal(loadConfig({ NODE_ENV: "production", TESTING_MODE: "false", SECRET_ENCRYPTION_KEY: key }).TESTING_MODE, false);
    assert.equal(loadConfig({ TESTING_MODE: "true" }).TESTING_MODE, true);
    assert.equal(loadConfig({}).TESTING_MODE, false);
  });

  test("SECRET_ENCRYPTION_KEY is required in production", () => {
    assert.deepEqual(names(problemsOf({ NODE_ENV: "production" })), ["SECRET_ENCRYPTION_KEY"]);
    const config = loadConfig({ NODE_ENV: "production", SECRET_ENCRYPTION_KEY: generateFernetKey() });
    assert.equal(config.production, true);
  });

  test("CSRF_TRUSTED_ORIGINS: origins as browsers send them; anything with a path, a wildcard or another scheme is refused", () => {
    assert.deepEqual(loadConfig({}).CSRF_TRUSTED_ORIGINS, []);
    assert.deepEqual(loadConfig({ CSRF_TRUSTED_ORIGINS: " HTTPS://UI.Example.lan:443/ , http://localhost:5173," }).CSRF_TRUSTED_ORIGINS, [
      "https://ui.example.lan",
      "http://localhost:5173",
    ]);
    const problems = problemsOf({ CSRF_TRUSTED_ORIGINS: "https://ui.example.lan/app, *, ftp://files.lan, https://ok.lan" });
    assert.deepEqual(names(problems), ["CSRF_TRUSTED_ORIGINS", "CSRF_TRUSTED_ORIGINS", "CSRF_TRUSTED_ORIGINS"]);
    for (const bad of ["https://ui.example.lan/app", "*", "ftp://files.lan"]) assert.ok(problems.some((problem) => problem.includes(`"${bad}"`)), bad);
  });

  test("the server exits non-zero, prints every problem and no secret value", async () => {
    const server = runEntry("server.ts", [], {
      cwd,
      env: bareEnv({
        PORT: "70000",
        LOG_LEVEL: "loud",
        DATABASE_URL: "postgres://iot:dbpass999@127.0.0.1:5432/iot",
        KEYCLOAK_BASE_URL: "http://keycloak.test",
        KEYCLOAK_ADMIN_CLIENT_SECRET: "supersecret123",
        OIDC_CLIENT_SECRET: "oidcsecret456",
      }),
    });
    try {
      const code = await server.exited(30_000);
      assert.notEqual(code, 0);
      assert.notEqual(code, null, "exited by itself, not by a signal");
      const output = server.stdout() + server.stderr();
      for (const name of ["PORT", "LOG_LEVEL", "KEYCLOAK_REALM", "KEYCLOAK_ADMIN_CLIENT_ID"]) {
        assert.match(server.stderr(), new RegExp(`^\\s*- ${name}:`, "m"), `${name} is listed\n${output}`);
      }
      for (const secret of ["supersecret123", "dbpass999", "oidcsecret456"]) assert.ok(!output.includes(secret), `${secret} leaked:\n${output}`);
      assert.doesNotMatch(output, /\n\s+at /, "no stack trace");
      assert.deepEqual(readdirSync(cwd), [], "nothing was created before the configuration was checked");
    } finally {
      server.kill();
    }
  });
});
