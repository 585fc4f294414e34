import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { spawn } from "node:child_process";
import autocannon from "autocannon";
import { createServerAdapter } from "@whatwg-node/server";
import { Response as PonyResponse } from "@whatwg-node/fetch";
const mode = process.argv[2];
const body = '{"deviceName":"Bench sensor","interval":30}';
const headers = { "content-type": "application/json", "cache-control": "no-cache" };
if (mode === "bare") createServer((req, res) => { res.writeHead(200, headers).end(body); }).listen(33001, "127.0.0.1");
else if (mode === "native") createServer(createServerAdapter(async () => new Response(body, { headers }))).listen(33001, "127.0.0.1");
else if (mode === "nativecopy") createServer(createServerAdapter(async () => { const r = new Response(body, { headers }); const h = new Headers(r.headers); h.set("x-request-id", "abc"); return new Response(r.body, { status: r.status, headers: h }); })).listen(33001, "127.0.0.1");
else if (mode === "pony") createServer(createServerAdapter(async () => new PonyResponse(body, { headers }) as unknown as Response)).listen(33001, "127.0.0.1");
else {
  for (const m of ["bare", "native", "nativecopy", "pony", "bare", "native", "pony"]) {
    const child = spawn(process.execPath, ["--import", "tsx", process.argv[1]!, m], { stdio: "inherit" });
    await new Promise((r) => setTimeout(r, 1500));
    const cpu = () => { const f = readFileSync(`/proc/${child.pid}/stat`, "utf8").split(") ")[1]!.split(" "); return (Number(f[11]) + Number(f[12])) * 10; };
    await autocannon({ url: "http://127.0.0.1:33001/iot/config", connections: 64, duration: 1 });
    const c0 = cpu();
    const r = await autocannon({ url: "http://127.0.0.1:33001/iot/config", connections: 64, duration: 4 });
    console.log(m, "req/s", r.requests.average, "cpu µs/req", ((cpu() - c0) * 1000 / r.requests.total).toFixed(0));
    child.kill(); await new Promise((r) => setTimeout(r, 300));
  }
  process.exit(0);
}
