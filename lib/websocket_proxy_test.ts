/** @module RelayBudget: what the WebSocket relays of one app queue together, and who is closed. */
import assert from "node:assert/strict";
import { HeaderList } from "./header_list.ts";
import {
  checkWebSocketHandshake,
  isWebSocketUpgrade,
  type QueueHolder,
  RelayBudget,
} from "./websocket_proxy.ts";

/** A queue that lets go of what it holds when given up on, as a relay's sockets do. */
function queue(budget: RelayBudget, name: string, closed: string[]) {
  let bytes = 0;
  const holder: QueueHolder = {
    get queued() {
      return bytes;
    },
    giveUp(reason) {
      closed.push(`${name}: ${reason}`);
      const released = bytes;
      bytes = 0;
      budget.change(holder, -released);
    },
  };
  return {
    add(n: number) {
      bytes += n;
      budget.change(holder, n);
    },
    hand(n: number) {
      bytes -= n;
      budget.change(holder, -n);
    },
  };
}

Deno.test("memory exhaustion: many queues, each under its own limits, are held to one budget together", async (t) => {
  await t.step("over the budget, the largest queue is closed and the others keep theirs", () => {
    const budget = new RelayBudget(100);
    const closed: string[] = [];
    const [a, b, c] = ["a", "b", "c"].map((name) => queue(budget, name, closed));
    a.add(30);
    b.add(45);
    c.add(25);
    assert.deepEqual([budget.queued, closed], [100, []]);
    a.add(1);
    assert.deepEqual(closed, ["b: relay memory budget exceeded"]);
    assert.equal(budget.queued, 56);
    // b let go of its queue: sending more to it is a new queue, counted again.
    c.add(40);
    assert.deepEqual(closed, ["b: relay memory budget exceeded"]);
    assert.equal(budget.queued, 96);
  });
  await t.step("what a reader takes leaves the budget", () => {
    const budget = new RelayBudget(100);
    const closed: string[] = [];
    const a = queue(budget, "a", closed);
    a.add(90);
    a.hand(60);
    a.add(60);
    assert.deepEqual([budget.queued, closed], [90, []]);
  });
  await t.step("a holder that keeps its queue when given up on is not asked forever", () => {
    const budget = new RelayBudget(10);
    const asked: string[] = [];
    const stubborn: QueueHolder = { queued: 20, giveUp: (reason) => void asked.push(reason) };
    budget.change(stubborn, 20);
    assert.deepEqual(asked, ["relay memory budget exceeded"]);
  });
});

// RFC 9110 §5.6.1: OWS (SP or HTAB) may stand on either side of a list's comma; the existing
// test covers a tab after it only.
Deno.test("websocket: a tab before a subprotocol list's comma is OWS, not part of the token", () => {
  const headers = new HeaderList(
    new Headers({
      "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
      "sec-websocket-version": "13",
      "sec-websocket-protocol": "chat.v1\t,chat.v2",
    }),
  );
  assert.deepEqual(checkWebSocketHandshake(headers), ["chat.v1", "chat.v2"]);
});

Deno.test("websocket: a tab before Connection's list comma is OWS: the upgrade is still seen", () => {
  const headers = new HeaderList(
    new Headers({ upgrade: "websocket", connection: "upgrade\t, keep-alive" }),
  );
  assert.equal(isWebSocketUpgrade("GET", headers), true);
});
