import assert from "node:assert/strict";
import { listeningPort, passOn } from "./listening.ts";

/** A stream of `parts`, one chunk each, as a pipe may cut them. */
function chunks(parts: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return ReadableStream.from(parts.map((part) => encoder.encode(part)));
}

/** A writer that keeps what it is given, a few bytes per write as a busy pipe takes them. */
function collector() {
  const written: Uint8Array[] = [];
  return {
    async write(bytes: Uint8Array) {
      await Promise.resolve();
      written.push(bytes.slice(0, 5));
      return Math.min(bytes.length, 5);
    },
    text: () => new TextDecoder().decode(new Uint8Array(written.flatMap((b) => [...b]))),
  };
}

Deno.test("dev stack: the port vestibule took is read from the line Deno.serve writes", () => {
  assert.equal(listeningPort("Listening on http://127.0.0.1:43567/"), 43567);
  assert.equal(listeningPort("Listening on http://[::1]:8001/"), 8001);
  assert.equal(listeningPort("Listening on http://0.0.0.0:8000/ (http://localhost:8000/)"), 8000);
  assert.equal(listeningPort("Listening on https://localhost:8443/"), 8443);
  assert.equal(listeningPort("Listening on a unix socket"), undefined);
  // A port in a line before it is not where vestibule listens.
  assert.equal(listeningPort("Retrying http://127.0.0.1:1234/ Listening on"), undefined);
});

Deno.test("dev stack: passOn copies vestibule's stderr whole and finds the listening line across chunks", async (t) => {
  const noise = "DEBUG deno: resolving module ...\n".repeat(2_000);
  const cases: [string, string[]][] = [
    ["one chunk", [noise + "Listening on http://127.0.0.1:43567/\nlater\n"]],
    ["marker cut in two", [noise + "Listen", "ing on http://127.0.0.1:43567/\n"]],
    ["port cut off from its line", [noise, "Listening on http://127.0.0.1:435", "67/", "\nlater"]],
  ];
  for (const [name, parts] of cases) {
    await t.step(name, async () => {
      const to = collector();
      const { line, done } = passOn(chunks(parts), to);
      assert.equal(await line, "Listening on http://127.0.0.1:43567/");
      await done;
      assert.equal(to.text(), parts.join(""), "everything vestibule wrote reaches the terminal");
    });
  }
  await t.step("a vestibule that never listens: undefined once its stderr ends", async () => {
    const to = collector();
    const { line, done } = passOn(chunks([noise, "vestibule: cannot listen on port 80\n"]), to);
    assert.equal(await line, undefined);
    await done;
  });
  await t.step("only the first listening line counts", async () => {
    const { line, done } = passOn(
      chunks(["Listening on http://127.0.0.1:1/\nListening on http://127.0.0.1:2/\n"]),
      collector(),
    );
    assert.equal(await line, "Listening on http://127.0.0.1:1/");
    await done;
  });
});
