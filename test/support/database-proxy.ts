/**
 * A TCP proxy in front of the shared PostgreSQL that can simulate its outages without touching the server, which
 * other test files and processes use at the same time:
 * - `refuse()`: like a stopped server: open connections are cut and new ones refused (nothing listens);
 * - `freeze()`: like a server whose process is stopped (SIGSTOP): connections are still accepted and bytes still
 *   accepted, but nothing is answered, on new and open connections alike;
 * - `heal()`: back to normal; what a frozen server held is delivered, as after SIGCONT.
 */
import { connect, createServer, type Socket } from "node:net";

export type DatabaseProxy = {
  /** `databaseUrl` with its host and port replaced by the proxy's. */
  url: string;
  refuse(): Promise<void>;
  freeze(): void;
  heal(): Promise<void>;
  close(): Promise<void>;
};

type Link = { thaw(): void; cut(): void };

export async function startDatabaseProxy(databaseUrl: string): Promise<DatabaseProxy> {
  const target = new URL(databaseUrl);
  const links = new Set<Link>();
  let frozen = false;

  function link(client: Socket): Link {
    let upstream: Socket | null = null;
    const toServer: Buffer[] = [];
    const toClient: Buffer[] = [];
    const flush = () => {
      if (upstream) for (const chunk of toServer.splice(0)) upstream.write(chunk);
      for (const chunk of toClient.splice(0)) client.write(chunk);
    };
    const open = () => {
      upstream = connect(Number(target.port || 5432), target.hostname);
      upstream.on("data", (chunk) => (frozen ? toClient.push(chunk) : client.write(chunk)));
      upstream.on("error", () => client.destroy());
      upstream.on("close", () => client.destroy());
      flush();
    };
    const self: Link = {
      thaw() {
        if (!upstream) open();
        flush();
      },
      cut() {
        client.destroy();
        upstream?.destroy();
      },
    };
    client.on("data", (chunk) => (frozen || !upstream ? toServer.push(chunk) : upstream.write(chunk)));
    client.on("error", () => upstream?.destroy());
    client.on("close", () => {
      upstream?.destroy();
      links.delete(self);
    });
    if (!frozen) open();
    return self;
  }

  const server = createServer((client) => links.add(link(client)));
  const listen = (port = 0) => new Promise<void>((resolve, reject) => server.once("error", reject).listen(port, "127.0.0.1", () => resolve()));
  await listen();
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  const stopListening = () => new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));

  const url = new URL(databaseUrl);
  url.hostname = "127.0.0.1";
  url.port = String(port);

  return {
    url: url.toString(),
    async refuse() {
      frozen = false;
      const closed = stopListening();
      for (const each of links) each.cut();
      await closed;
    },
    freeze() {
      frozen = true;
    },
    async heal() {
      frozen = false;
      for (const each of links) each.thaw();
      if (!server.listening) await listen(port);
    },
    async close() {
      const closed = stopListening();
      for (const each of links) each.cut();
      await closed;
    },
  };
}
