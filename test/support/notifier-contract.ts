/**
 * Behaviour every Notifier must have: the real MQTT notifier on Mosquitto and the fake of the unit tests run the
 * same suite, so what a unit test reads from the fake is what a device would get.
 *
 * received() lists the notices a subscriber to iotsupport/+/+ got so far; unreachable() gives a notifier whose broker
 * cannot be reached.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Notifier } from "../../lib/mqtt.ts";
import type { Notice } from "./fakes/notifier.ts";
import { testClientId } from "./identity-contract.ts";
import { waitFor } from "./wait.ts";

export type NotifierContractSetup = () => Promise<{
  notifier: Notifier;
  received(): Notice[];
  unreachable(): Promise<Notifier>;
  close(): Promise<void>;
}>;

export function describeNotifierContract(name: string, setup: NotifierContractSetup): void {
  describe(`Notifier contract: ${name}`, () => {
    let env: Awaited<ReturnType<NotifierContractSetup>>;
    const noticesFor = (clientId: string) => env.received().filter((notice) => notice.clientId === clientId);

    before(async () => {
      env = await setup();
    });
    after(() => env?.close());

    it("is connected to a working broker", async () => {
      assert.equal(await env.notifier.waitUntilConnected(5_000), true);
      assert.equal(env.notifier.state(), "connected");
    });

    it("publishes to iotsupport/<client id>/<kind> with the client id in the payload; true once acknowledged", async () => {
      const clientId = testClientId();
      assert.equal(await env.notifier.publish("config", clientId, { device_key: "abcd1234" }), true);
      assert.equal(await env.notifier.publish("firmware", clientId, { firmware_version: "1.2.3" }), true);
      const notices = await waitFor("both notices", async () => (noticesFor(clientId).length === 2 ? noticesFor(clientId) : null), 5_000);
      assert.deepEqual(
        notices.sort((a, b) => a.kind.localeCompare(b.kind)),
        [
          { kind: "config", clientId, payload: { client_id: clientId, device_key: "abcd1234" } },
          { kind: "firmware", clientId, payload: { client_id: clientId, firmware_version: "1.2.3" } },
        ],
      );
    });

    it("without a reachable broker: disconnected, publish resolves false (never throws), nothing is delivered later", async () => {
      const down = await env.unreachable();
      try {
        assert.equal(await down.waitUntilConnected(300), false);
        assert.equal(down.state(), "disconnected");
        const clientId = testClientId();
        assert.equal(await down.publish("rotation", clientId, { device_key: "abcd1234" }), false);
        await new Promise((resolve) => setTimeout(resolve, 300));
        assert.deepEqual(noticesFor(clientId), []);
      } finally {
        await down.close();
      }
    });
  });
}
