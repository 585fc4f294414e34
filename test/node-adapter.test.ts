/**
 * lib/http/node-adapter.ts over a real node:http server with a hand-written dispatch function (no database, no
 * routes): what a client sees of direct bodies, web-stream bodies, headers, HEAD, request bodies and disconnects.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { createReadStream } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, request as httpRequest, type IncomingMessage, type Server } from "node:http";
import { connect, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, afterEach, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { Dispatched } from "../lib/http/app.ts";
import type { Connection } from "../lib/http/client-address.ts";
import { withDirectBody } from "../lib/http/direct-body.ts";
import { nodeListener } from "../lib/http/node-adapter.ts";

type Dispatch = (request: Request, connection: Connection) => Promise<Dispatched>;

const logged: { message: string; fields?: Record<string, unknown> }[] = [];
const logger = { error: (message: string, fields?: Record<string, unknown>) => void logged.push({ message, fields }) };

let current: Dispatch = async () => ({ response: new Response("no dispatch set", { status: 500 }), headers: [] });
let server: Server;
let port: number;

/** The next requests are answered by `dispatch`. */
const use = (dispatch: Dispatch) => {
  current = dispatch;
};

/** Resolves when `predicate` holds, checked every few milliseconds; fails after `ms`. */
async function until(predicate: () => boolean, what: string, ms = 2000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for: ${what}`);
    await sleep(5);
  }
}

/** A promise and its resolver. */
function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((done) => (resolve = done));
  return { promise, resolve };
}

/** Sends `raw` over a plain socket and gives back all the server wrote until it closed. */
async function rawExchange(raw: string): Promise<string> {
  const socket = connect(port, "127.0.0.1");
  const chunks: Buffer[] = [];
  socket.on("data", (chunk: Buffer) => chunks.push(chunk));
  socket.write(raw);
  await once(socket, "close");
  return Buffer.concat(chunks).toString("latin1");
}

/** A request through node's client; resolves with the response once its headers are in. */
function send(options: { method?: string; path?: string; headers?: Record<string, string> }, body?: string | Buffer) {
  const req = httpRequest({ host: "127.0.0.1", port, method: options.method ?? "GET", path: options.path ?? "/", headers: options.headers });
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req.once("response", resolve);
    req.once("error", reject);
  });
  req.end(body);
  return { req, response };
}

async function readAll(res: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "node-adapter-"));
  server = createServer(nodeListener((request, connection) => current(request, connection), logger));
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  port = (server.address() as AddressInfo).port;
});

after(async () => {
  server.closeAllConnections();
  server.close();
  await rm(dir, { recursive: true, force: true });
});

afterEach(() => {
  logged.length = 0;
});

describe("node adapter: direct bodies", () => {
  it("sends a direct string with its content-length, not chunked", async () => {
    const text = "héllo, device";
    use(async () => ({ response: withDirectBody(new Response(text, { headers: { "content-type": "text/plain" } }), text), headers: [] }));
    const { response } = send({});
    const res = await response;
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers["content-length"], String(Buffer.byteLength(text)));
    assert.equal(res.headers["transfer-encoding"], undefined);
    assert.equal(res.headers["content-type"], "text/plain");
    assert.equal((await readAll(res)).toString("utf8"), text);
  });

  it("adds the edge's headers and keeps every Set-Cookie apart", async () => {
    use(async () => {
      const headers = new Headers({ "content-type": "application/json" });
      headers.append("set-cookie", "own1=a; Path=/; HttpOnly");
      headers.append("set-cookie", "own2=b; Path=/");
      const body = '{"ok":true}';
      return {
        response: withDirectBody(new Response(body, { status: 201, headers }), body),
        headers: ["x-request-id", "req-42", "set-cookie", "edge1=c; Path=/", "set-cookie", "edge2=d; Path=/"],
      };
    });
    const { response } = send({});
    const res = await response;
    assert.equal(res.statusCode, 201);
    assert.equal(res.headers["x-request-id"], "req-42");
    const cookies: string[] = [];
    for (let index = 0; index < res.rawHeaders.length; index += 2) {
      if (res.rawHeaders[index]!.toLowerCase() === "set-cookie") cookies.push(res.rawHeaders[index + 1]!);
    }
    assert.deepEqual(cookies.sort(), ["edge1=c; Path=/", "edge2=d; Path=/", "own1=a; Path=/; HttpOnly", "own2=b; Path=/"]);
    assert.equal((await readAll(res)).toString(), '{"ok":true}');
  });

  it("keeps a content-length the response states", async () => {
    use(async () => ({ response: withDirectBody(new Response("abc", { headers: { "content-length": "3" } }), "abc"), headers: [] }));
    const res = await send({}).response;
    assert.deepEqual(res.rawHeaders.filter((name) => name.toLowerCase() === "content-length"), ["content-length"]);
    assert.equal((await readAll(res)).toString(), "abc");
  });

  it("sends a direct Buffer of several MB whole to a slow reader, even when the server is closing", async () => {
    const size = 8 * 1024 * 1024;
    const bytes = Buffer.alloc(size);
    for (let index = 0; index < size; index += 4096) bytes.writeUInt32BE(index, index);
    use(async () => ({ response: withDirectBody(new Response(null), bytes), headers: [] }));
    // A server of its own, so that closing it (as server.ts does on shutdown) leaves the others alone.
    const own = createServer(nodeListener((request, connection) => current(request, connection), logger));
    own.listen(0, "127.0.0.1");
    await once(own, "listening");
    const req = httpRequest({ host: "127.0.0.1", port: (own.address() as AddressInfo).port });
    req.end();
    const [res] = (await once(req, "response")) as [IncomingMessage];
    assert.equal(res.headers["content-length"], String(size));
    res.pause();
    await sleep(200);
    // Closing the server closes its idle connections: this one is still sending and must not be cut.
    own.close();
    const chunks: Buffer[] = [];
    res.on("data", (chunk: Buffer) => {
      chunks.push(chunk);
      res.pause();
      setTimeout(() => res.resume(), 1);
    });
    res.resume();
    await once(res, "end");
    const received = Buffer.concat(chunks);
    assert.equal(received.length, size);
    assert.ok(received.equals(bytes), "the body arrived changed");
    own.closeAllConnections();
  });

  it("sends a direct Readable whole", async () => {
    const parts = ["one ", "two ", "three"];
    use(async () => ({ response: withDirectBody(new Response(null), Readable.from(parts)), headers: ["x-request-id", "r"] }));
    const res = await send({}).response;
    assert.equal((await readAll(res)).toString(), parts.join(""));
    assert.equal(logged.length, 0);
  });

  it("destroys a direct Readable (and closes its file) when the client goes away mid-body", async () => {
    const size = 64 * 1024 * 1024;
    const path = join(dir, "big.bin");
    await writeFile(path, Buffer.alloc(size, 7));
    const file = createReadStream(path);
    let ended = false;
    file.once("end", () => (ended = true));
    const closed = once(file, "close");
    use(async () => ({ response: withDirectBody(new Response(null), file), headers: [] }));
    const { req, response } = send({});
    const res = await response;
    await once(res, "data");
    req.destroy();
    await Promise.race([closed, sleep(3000).then(() => assert.fail("the file stream was not closed"))]);
    assert.ok(file.destroyed);
    assert.equal(ended, false, "the whole file was read although the client had gone");
    assert.ok(file.bytesRead < size);
  });

  it("closes the connection when a direct Readable fails mid-body", async () => {
    let sent = false;
    const failing = new Readable({
      read() {
        if (!sent) {
          sent = true;
          this.push("part of it");
        } else setTimeout(() => this.destroy(new Error("disk gone")), 10);
      },
    });
    use(async () => ({ response: withDirectBody(new Response(null), failing), headers: [] }));
    const res = await send({}).response;
    await assert.rejects(readAll(res));
  });
});

/** A web stream body that sends `chunks`, then closes, fails 20 ms later or stays open; `onCancel` runs if it is cancelled. */
function webBody(chunks: string[], end: "close" | "fail" | "stay open", onCancel?: () => void) {
  const encoder = new TextEncoder();
  return new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(encoder.encode(chunk));
      if (end === "close") controller.close();
      if (end === "fail") setTimeout(() => controller.error(new Error("broken")), 20);
    },
    cancel: onCancel,
  });
}

describe("node adapter: web stream bodies", () => {
  it("streams a web ReadableStream body with chunked encoding", async () => {
    use(async () => ({ response: new Response(webBody(["a", "b"], "close")), headers: [] }));
    const res = await send({}).response;
    assert.equal(res.headers["transfer-encoding"], "chunked");
    assert.equal((await readAll(res)).toString(), "ab");
  });

  it("cancels a never-ending web stream (an event stream) when the client goes away", async () => {
    const cancelled = deferred();
    use(async () => ({
      response: new Response(webBody(["event: hello\ndata: {}\n\n"], "stay open", () => cancelled.resolve()), { headers: { "content-type": "text/event-stream" } }),
      headers: [],
    }));
    const { req, response } = send({});
    const res = await response;
    assert.equal(res.headers["content-type"], "text/event-stream");
    const [first] = (await once(res, "data")) as [Buffer];
    assert.match(first.toString(), /event: hello/);
    req.destroy();
    await Promise.race([cancelled.promise, sleep(3000).then(() => assert.fail("the stream was not cancelled"))]);
  });

  it("closes the connection when a web stream fails mid-body", async () => {
    use(async () => ({ response: new Response(webBody(["part"], "fail")), headers: [] }));
    const res = await send({}).response;
    await assert.rejects(readAll(res));
  });
});

/** Sends a request, hangs up 50 ms later, and lets the handler answer (resolves `gone`) 50 ms after that. */
async function hangUpBeforeTheAnswer(gone: { resolve(): void }) {
  const { req, response } = send({});
  response.catch(() => {});
  await sleep(50);
  req.destroy();
  await sleep(50);
  gone.resolve();
}

describe("node adapter: the request", () => {
  it("gives an aborted request.signal to a handler that asks for it after the client went away", async () => {
    const gone = deferred();
    let signal: AbortSignal | undefined;
    const answered = deferred();
    use(async (request) => {
      // E.g. authentication took a while, then an event stream or a long poll looks at the signal.
      await gone.promise;
      signal = request.signal;
      answered.resolve();
      return { response: new Response("too late"), headers: [] };
    });
    await hangUpBeforeTheAnswer(gone);
    await answered.promise;
    await sleep(20);
    assert.ok(signal);
    assert.equal(signal.aborted, true, "request.signal never aborts: the client went away before the handler asked for it");
  });

  it("aborts request.signal when the client goes away before the response", async () => {
    const aborted = deferred();
    const entered = deferred();
    const answered = deferred();
    use(async (request) => {
      request.signal.addEventListener("abort", () => aborted.resolve());
      entered.resolve();
      await aborted.promise;
      answered.resolve();
      return { response: new Response("too late"), headers: [] };
    });
    const { req, response } = send({});
    response.catch(() => {});
    await entered.promise;
    req.destroy();
    await Promise.race([aborted.promise, sleep(3000).then(() => assert.fail("request.signal did not abort"))]);
    await answered.promise;
    await sleep(20);
    // A response for a client that has gone is dropped quietly.
    assert.deepEqual(logged, []);
  });

  it("destroys a direct Readable answered to a client that has gone", async () => {
    const gone = deferred();
    const body = new Readable({ read() {} });
    const closed = once(body, "close");
    use(async () => {
      await gone.promise;
      return { response: withDirectBody(new Response(null), body), headers: [] };
    });
    await hangUpBeforeTheAnswer(gone);
    await Promise.race([closed, sleep(2000).then(() => assert.fail("the Readable was not destroyed"))]);
    assert.deepEqual(logged, []);
  });

  it("cancels a web stream answered to a client that has gone", async () => {
    const gone = deferred();
    const cancelled = deferred();
    use(async () => {
      await gone.promise;
      return { response: new Response(new ReadableStream({ cancel: () => cancelled.resolve() })), headers: [] };
    });
    await hangUpBeforeTheAnswer(gone);
    await Promise.race([cancelled.promise, sleep(2000).then(() => assert.fail("the web stream was not cancelled"))]);
    assert.deepEqual(logged, []);
  });

  it("does not abort request.signal when the response was sent", async () => {
    let signal: AbortSignal | undefined;
    use(async (request) => {
      signal = request.signal;
      return { response: withDirectBody(new Response("fine"), "fine"), headers: [] };
    });
    const res = await send({}).response;
    await readAll(res);
    await sleep(20);
    assert.ok(signal);
    assert.equal(signal.aborted, false);
  });

  it("reads a POST body through request.text()", async () => {
    let seen: { method: string; text: string; type: string | null } | undefined;
    use(async (request) => {
      seen = { method: request.method, text: await request.text(), type: request.headers.get("content-type") };
      return { response: withDirectBody(new Response("ok"), "ok"), headers: [] };
    });
    const res = await send({ method: "POST", headers: { "content-type": "application/json" } }, '{"name":"dev-1"}').response;
    await readAll(res);
    assert.deepEqual(seen, { method: "POST", text: '{"name":"dev-1"}', type: "application/json" });
  });

  it("streams a large POST body through request.body", async () => {
    const upload = Buffer.alloc(3 * 1024 * 1024, 0x5a);
    use(async (request) => {
      assert.ok(request.body);
      let total = 0;
      let allZ = true;
      const reader = request.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        total += value.byteLength;
        if (value.some((byte) => byte !== 0x5a)) allZ = false;
      }
      const text = `${total} ${allZ}`;
      return { response: withDirectBody(new Response(text), text), headers: [] };
    });
    const res = await send({ method: "PUT", headers: { "content-type": "application/octet-stream" } }, upload).response;
    assert.equal((await readAll(res)).toString(), `${upload.length} true`);
  });

  it("gives request.url from a plain Host header, with the path and query as sent", async () => {
    let url = "";
    use(async (request) => {
      url = request.url;
      return { response: withDirectBody(new Response(""), ""), headers: [] };
    });
    const res = await send({ path: "/api/devices/a%20b?x=1&y=%2F", headers: { host: "iot.example:8443" } }).response;
    await readAll(res);
    assert.equal(url, "http://iot.example:8443/api/devices/a%20b?x=1&y=%2F");
  });

  for (const host of ["a b", "evil/x", "evil.example@other", "[zz]", "x:99999999"]) {
    it(`does not put a Host header like ${JSON.stringify(host)} into request.url`, async () => {
      let url = "";
      use(async (request) => {
        url = request.url;
        return { response: withDirectBody(new Response("ok"), "ok"), headers: [] };
      });
      const answer = await rawExchange(`GET /api/ping?q=1 HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
      assert.match(answer, /^HTTP\/1\.1 200 /);
      assert.equal(url, "http://localhost/api/ping?q=1");
      assert.deepEqual(logged, []);
    });
  }

  it("gives a URL under the host for a request target that is not a path", async () => {
    let url = "";
    use(async (request) => {
      url = request.url;
      return { response: withDirectBody(new Response("ok"), "ok"), headers: [] };
    });
    const answer = await rawExchange("GET http://elsewhere.example/api/x HTTP/1.1\r\nHost: iot.example\r\nConnection: close\r\n\r\n");
    assert.match(answer, /^HTTP\/1\.1 200 /);
    assert.ok(url.startsWith("http://iot.example/"), url);
  });
});

describe("node adapter: HEAD", () => {
  it("sends the headers and no body, and destroys a direct Readable", async () => {
    const body = new Readable({ read() {} });
    body.push("never sent");
    const closed = once(body, "close");
    use(async (request) => {
      assert.equal(request.method, "HEAD");
      return { response: withDirectBody(new Response(null, { headers: { "content-length": "10", "x-kind": "file" } }), body), headers: ["x-request-id", "h1"] };
    });
    const answer = await rawExchange("HEAD /file HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    const [head, rest] = answer.split("\r\n\r\n");
    assert.match(head!, /^HTTP\/1\.1 200 /);
    assert.match(head!, /\r\ncontent-length: 10\r\n/i);
    assert.match(head!, /\r\nx-kind: file\r\n/i);
    assert.match(head!, /\r\nx-request-id: h1/i);
    assert.equal(rest, "", "a HEAD answer carried a body");
    await Promise.race([closed, sleep(2000).then(() => assert.fail("the Readable of a HEAD answer was not destroyed"))]);
  });

  it("states the length of a direct string body and sends none of it", async () => {
    use(async () => ({ response: withDirectBody(new Response("twelve bytes"), "twelve bytes"), headers: [] }));
    const answer = await rawExchange("HEAD / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    const [head, rest] = answer.split("\r\n\r\n");
    assert.match(head!, /\r\ncontent-length: 12(\r\n|$)/i);
    assert.equal(rest, "");
  });

  it("cancels a web stream body of a HEAD answer", async () => {
    const cancelled = deferred();
    use(async () => ({
      response: new Response(new ReadableStream({ cancel: () => cancelled.resolve() }), { headers: { "content-type": "text/event-stream" } }),
      headers: [],
    }));
    const answer = await rawExchange("HEAD /events HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert.equal(answer.split("\r\n\r\n")[1], "");
    await Promise.race([cancelled.promise, sleep(2000).then(() => assert.fail("the web stream was not cancelled"))]);
  });
});

describe("node adapter: failures", () => {
  it("ends the connection and logs when the dispatch throws", async () => {
    use(async () => {
      throw new Error("dispatch broke");
    });
    const { response } = send({});
    await assert.rejects(response, (error: NodeJS.ErrnoException) => error.code === "ECONNRESET" || /socket hang up/.test(error.message));
    await until(() => logged.length > 0, "the error log");
    assert.equal(logged[0]!.message, "A response could not be sent");
    assert.equal(logged[0]!.fields?.error, "dispatch broke");
  });

  it("keeps serving after a failed response", async () => {
    use(async () => ({ response: withDirectBody(new Response("still here"), "still here"), headers: [] }));
    const res = await send({}).response;
    assert.equal((await readAll(res)).toString(), "still here");
  });
});
