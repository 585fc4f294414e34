import autocannon from "autocannon";
const [port, seconds] = [Number(process.argv[2]), Number(process.argv[3])];
await autocannon({ url: `http://127.0.0.1:${port}`, connections: 64, duration: 3, requests: [{ method: "GET", path: "/iot/config", headers: { authorization: `Bearer ${process.env.TOKEN}` } }] });
console.log("MARK", Date.now());
const r = await autocannon({ url: `http://127.0.0.1:${port}`, connections: 64, duration: seconds, requests: [{ method: "GET", path: "/iot/config", headers: { authorization: `Bearer ${process.env.TOKEN}` } }] });
console.log("END", Date.now(), "requests", r.requests.total, "rps", r.requests.average, "non2xx", r.non2xx);
