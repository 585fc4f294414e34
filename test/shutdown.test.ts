import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { Agent, request as httpRequest, type IncomingMessage } from "node:http";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { generateFernetKey } from "../lib/secrets.ts";
import { createTestDatabase } from "./support/database.ts";
import { buildImage } from "./support/firmware-image.ts";
import { bareEnv, runEntry, serverProcessEnv, type Child } from "./support/process.ts";
import { ADMIN_TOKEN } from "./support/tokens.ts";
import { freePort } from "./support/server.ts";
import { waitFor } from "./support/wait.ts";

// Larger than loopback's send buffer (up to 4 MiB), so the server is still writing when SIGTERM arrives.
const IMAGE_BYTES = 8 * 1024 * 1024;
const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };

type Running = { child: Child; url: string; port: number; logLines(): Array<Record<string, unknown>> };

/** Resolves "refused" when nothing listens on the port any more, "accepted" when a TCP connection is established. */
const tryConnect = (port: number) =>
  new Promise<"refused" | "accepted" | string>((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => (socket.destroy(), resolve("accepted")));
    socket.once("error", (error: NodeJS.ErrnoException) => resolve(error.code === "ECONNREFUSED" ? "refused" : (error.code ?? error.message)));
  });

/**
 * A download whose consumer takes one chunk every `everyMs` (or none at all with `stall`), on a keep-alive
 * connection as a browser or an ESP-IDF HTTP client would hold it. Call `close()` when done.
 */
function download(url: string, options: { everyMs?: number; stall?: boolean } = {}) {
  const agent = new Agent({ keepAlive: true });
  let received = 0;
  let response: IncomingMessage | undefined;
  let socketClosed = false;
  let stall = options.stall ?? false;
  const body = new Promise<Buffer>((resolve, reject) => {
    const req = httpRequest(url, { agent, headers: auth }, (res) => {
      response = res;
      res.socket.once("close", () => (socketClosed = true));
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => {
        chunks.push(chunk);
        received += chunk.length;
        res.pause();
        if (!stall) setTimeout(() => res.resume(), options.everyMs ?? 30);
      });
      res.on("end", () => resolve(Buffer.concat(chunks)));
      res.on("error", reject);
      res.on("aborted", () => reject(new Error(`download aborted after ${received} bytes`)));
    });
    req.on("error", reject);
    req.end();
  });
  body.catch(() => {});
  // The agent keeps its idle connection open after the download, as a real client would: only the server may close it.
  return { body, received: () => received, response: () => response, socketClosed: () => socketClosed,
    /** Starts reading again (a stalled client sees the end of the connection only behind the bytes it has not read). */
    resume: () => ((stall = false), response?.resume()),
    close: () => agent.destroy(),
  };
}

describe("graceful shutdown of the server process", () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  const dirs: string[] = [];
  const children: Child[] = [];
  before(async () => {
    database = await createTestDatabase();
  });
  after(async () => {
    for (const child of children) child.kill();
    await database.drop();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  async function startProcess(extra: Record<string, string> = {}): Promise<Running> {
    const dir = mkdtempSync(join(tmpdir(), "iot-shutdown-"));
    dirs.push(dir);
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const child = runEntry("server.ts", [], {
      cwd: dir,
      env: bareEnv({
        ...serverProcessEnv({ databaseUrl: database.url, port, baseUrl: url, secretKey: generateFernetKey(), dataDir: join(dir, "data") }),
        MIGRATE_ON_START: "true",
        ASSETS_DIR: join(dir, "assets"),
        LOG_LEVEL: "info",
        ...extra,
      }),
    });
    children.push(child);
    await child.waitForOutput(/listening/);
    const logLines = () =>
      child
        .stdout()
        .split("\n")
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    return { child, url, port, logLines };
  }

  /** A model with a ~4 MiB firmware image; returns the model id and the image. */
  async function modelWithFirmware(server: Running, code: string, size = IMAGE_BYTES) {
    const created = await fetch(`${server.url}/api/device-models`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
      body: JSON.stringify({ code, name: code }),
    });
    assert.equal(created.status, 201, await created.clone().text());
    const id = (await created.json()).id as number;
    const image = buildImage({ version: `${code}-1.0.0`, size });
    const uploaded = await fetch(`${server.url}/api/device-models/${id}/firmware?rollout=immediate`, {
      method: "POST",
      headers: { ...auth, "content-type": "application/octet-stream" },
      body: image,
    });
    assert.ok(uploaded.ok, `upload: ${uploaded.status} ${await uploaded.text()}`);
    return { id, image };
  }

  test("SIGTERM: new connections are refused, the slow download in flight completes, then the process exits 0", async (t) => {
    const server = await startProcess();
    const { id, image } = await modelWithFirmware(server, "shutdown_slow");

    const started = Date.now();
    const slow = download(`${server.url}/api/device-models/${id}/firmware`, { everyMs: 30 });
    t.after(slow.close);
    await waitFor("the first bytes of the download", async () => slow.received() > 0, 10_000, 10);
    assert.equal(slow.response()?.statusCode, 200);
    assert.equal(slow.response()?.headers.connection, "keep-alive", "the download runs on a keep-alive connection");
    assert.equal(await tryConnect(server.port), "accepted", "the server accepts connections before SIGTERM");

    const exit = server.child.exited(60_000);
    server.child.process.kill("SIGTERM");
    await server.child.waitForOutput(/"message":"Shutting down"/, 5_000);
    // stopServer calls server.close() right after the log line: the listening socket goes, so a new
    // connection is refused (not accepted and then answered).
    await waitFor("new connections to be refused", async () => (await tryConnect(server.port)) === "refused", 2_000, 20);
    const receivedAtRefusal = slow.received();
    assert.ok(receivedAtRefusal < image.length, `the download is still in flight when the listener is gone (${receivedAtRefusal} of ${image.length} bytes)`);
    assert.equal(server.child.process.exitCode, null, "the process waits for the download");

    const bytes = await slow.body;
    const downloaded = Date.now();
    assert.equal(bytes.length, image.length);
    assert.ok(bytes.equals(image), "the download is byte-for-byte the uploaded image");
    assert.ok(downloaded - started > 1_000, `the slow consumer took ${downloaded - started} ms (expected more than a second)`);

    assert.equal(await exit, 0, `exit code${server.child.stdout()}${server.child.stderr()}`);
    const exitedAfter = Date.now() - downloaded;
    assert.ok(exitedAfter < 3_000, `the process exited ${exitedAfter} ms after the download finished (expected within 3 s)`);
    await waitFor("the client to see its keep-alive connection closed", async () => slow.socketClosed(), 2_000, 20);

    const shuttingDown = server.logLines().filter((line) => line.message === "Shutting down");
    assert.equal(shuttingDown.length, 1);
    assert.equal(shuttingDown[0]!.signal, "SIGTERM");
    assert.equal(shuttingDown[0]!.level, "info");
    assert.doesNotMatch(server.child.stdout() + server.child.stderr(), /Shutdown failed/);
  });

  test("a client that stops reading does not keep the process alive past the shutdown deadline", async (t) => {
    const DEADLINE_SECONDS = 2;
    const server = await startProcess({ SHUTDOWN_DEADLINE_SECONDS: String(DEADLINE_SECONDS) });
    // Larger than loopback's socket buffers (send buffer up to 4 MiB, an unread receive window ~128 KiB), so the
    // server cannot hand the whole response to the kernel and call it finished.
    const { id, image } = await modelWithFirmware(server, "shutdown_stalled", 12 * 1024 * 1024);

    const stalled = download(`${server.url}/api/device-models/${id}/firmware`, { stall: true });
    t.after(stalled.close);
    await waitFor("the first bytes of the download", async () => stalled.received() > 0, 10_000, 10);
    // Give the server time to fill the socket buffers: from then on its write waits on a client that never reads.
    await new Promise((resolve) => setTimeout(resolve, 300));

    const exit = server.child.exited(30_000);
    const signalled = Date.now();
    server.child.process.kill("SIGTERM");
    await server.child.waitForOutput(/"message":"Shutting down"/, 5_000);

    assert.equal(await exit, 0, `exit code${server.child.stdout()}${server.child.stderr()}`);
    const took = Date.now() - signalled;
    assert.ok(took >= DEADLINE_SECONDS * 1000 - 100, `exited ${took} ms after SIGTERM: not before the deadline`);
    assert.ok(took < DEADLINE_SECONDS * 1000 + 4_000, `exited ${took} ms after SIGTERM (deadline ${DEADLINE_SECONDS} s)`);
    stalled.resume();
    await assert.rejects(stalled.body, /aborted/, "the stalled download was cut off, not completed");
    assert.ok(stalled.received() < image.length);
  });
});
