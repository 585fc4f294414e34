import type { IncomingMessage, ServerResponse } from "node:http";
import { Readable } from "node:stream";
import { Request as FastRequest } from "@whatwg-node/fetch";
import type { Dispatched } from "./app.ts";
import type { Connection } from "./client-address.ts";
import { directBody } from "./direct-body.ts";
import { errorMessage, type Logger } from "../logger.ts";

type Dispatch = (request: Request, connection: Connection) => Promise<Dispatched>;

/** A Host header that is a host name or an address with an optional port; anything else is not put into a URL. */
const PLAIN_HOST = /^(?:[\w.-]+|\[[\da-f:.]+\])(?::\d{1,5})?$/i;

const RESPONSE = Symbol("node response");

/**
 * node:http's request as a fetch Request (the @whatwg-node ponyfill, which reads node's header object lazily). Its
 * signal is made only when a handler asks for it (an event stream does) and aborts when the client goes away first.
 */
class NodeRequest extends FastRequest {
  [RESPONSE]: ServerResponse;
  #signal: AbortSignal | undefined;

  constructor(req: IncomingMessage, res: ServerResponse) {
    const host = req.headers.host;
    const url = `http://${host && PLAIN_HOST.test(host) ? host : "localhost"}${req.url?.startsWith("/") ? req.url : "/"}`;
    const hasBody = req.method !== "GET" && req.method !== "HEAD";
    super(url, { method: req.method, headers: req.headers as Record<string, string>, ...(hasBody && { body: req as unknown as BodyInit, duplex: "half" }) });
    this[RESPONSE] = res;
  }

  static {
    // The ponyfill declares `signal` as a getter too; TypeScript sees a field, so it is replaced here.
    Object.defineProperty(this.prototype, "signal", {
      get(this: NodeRequest) {
        if (!this.#signal) {
          const controller = new AbortController();
          const res = this[RESPONSE];
          // Asked for after the client went, the signal is aborted already: that 'close' will not come again.
          if (res.destroyed && !res.writableFinished) controller.abort();
          else
            res.once("close", () => {
              if (!res.writableFinished) controller.abort();
            });
          this.#signal = controller.signal;
        }
        return this.#signal;
      },
    });
  }
}

/** Writes a fetch Response to node:http: a prepared body (./direct-body.ts) at once, any other body as it streams. */
async function send({ response, headers }: Dispatched, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const direct = directBody(response);
  const head: string[] = [];
  let hasLength = false;
  let hasCookies = false;
  response.headers.forEach((value, name) => {
    if (name === "set-cookie") hasCookies = true;
    else {
      if (name === "content-length") hasLength = true;
      head.push(name, value);
    }
  });
  // Each cookie is a header of its own; asked for only when there is one (the ponyfill builds a Map to answer).
  if (hasCookies) for (const cookie of response.headers.getSetCookie()) head.push("set-cookie", cookie);
  head.push(...headers);
  // Stated, so node does not switch to chunked encoding for a body it gets whole.
  if (!hasLength && direct !== undefined && !(direct instanceof Readable)) head.push("content-length", String(Buffer.byteLength(direct)));
  if (res.destroyed || req.method === "HEAD") {
    if (!res.destroyed) res.writeHead(response.status, head).end();
    return discard(response, direct);
  }
  res.writeHead(response.status, head);
  if (direct instanceof Readable) {
    // Read only as fast as the client takes it, and closed (with the file it reads) when the client goes.
    direct.once("error", () => res.destroy());
    res.once("close", () => direct.destroy());
    direct.once("end", () => endWhenFlushed(res));
    direct.pipe(res, { end: false });
  } else if (typeof direct === "string") {
    res.end(direct);
  } else if (direct !== undefined) {
    res.write(direct);
    endWhenFlushed(res);
  } else if (response.body) {
    await pipeStream(response.body, res);
  } else {
    res.end();
  }
}

/**
 * Ends the response once what was written is in the socket. node:http counts a response that was ended as done, and
 * a graceful shutdown (server.ts) closes the connections of done responses: one still sending a large body to a slow
 * client would be cut off.
 */
function endWhenFlushed(res: ServerResponse) {
  if (res.writableNeedDrain) res.once("drain", () => res.end());
  else res.end();
}

/** A web stream into the socket with backpressure; cancelled when the client goes away before its end. */
async function pipeStream(body: ReadableStream<Uint8Array>, res: ServerResponse): Promise<void> {
  const reader = body.getReader();
  const closed = new Promise<void>((resolve) => res.once("close", resolve));
  void closed.then(() => {
    if (!res.writableFinished) reader.cancel().catch(() => {});
  });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done || res.destroyed) break;
      if (!res.write(value)) await Promise.race([new Promise((resolve) => res.once("drain", resolve)), closed]);
    }
    res.end();
  } catch {
    res.destroy();
  }
}

function discard(response: Response, direct: ReturnType<typeof directBody>) {
  if (direct instanceof Readable) direct.destroy();
  else if (direct === undefined) void response.body?.cancel().catch(() => {});
}

/** The node:http request listener of a dispatcher (lib/http/app.ts createDispatcher). */
export function nodeListener(dispatch: Dispatch, logger: Pick<Logger, "error">) {
  return (req: IncomingMessage, res: ServerResponse) => {
    const connection: Connection = { remoteAddress: req.socket.remoteAddress ?? null, onResponseSent: (listener) => res.once("finish", listener) };
    dispatch(new NodeRequest(req, res) as unknown as Request, connection)
      .then((dispatched) => send(dispatched, req, res))
      // The dispatcher answers every error with an envelope: a throw here is a response that broke while being written.
      .catch((error) => {
        logger.error("A response could not be sent", { error: errorMessage(error) });
        res.destroy();
      });
  };
}
