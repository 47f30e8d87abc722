/**
 * Stale numbers: the README shows the latest `deno task bench` tables and docs/observability.md
 * quotes the observability ratios, which an operator weighing `bytes` against its cost reads
 * there. They must be the run bench/latest.md holds.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);

/** The "req/s vs. off" column of the row of bench/latest.md's observability table named `row`. */
function latestRatio(latest: string, row: string): string {
  const line = latest.split("\n").find((l) => l.startsWith(`| ${row} `));
  assert.ok(line, `bench/latest.md has no row "${row}"`);
  return line.split("|")[3].trim();
}

Deno.test("stale bench numbers: the README and docs/observability.md show bench/latest.md's run", async (t) => {
  const latest = await Deno.readTextFile(new URL("bench/latest.md", ROOT));
  const doc = await Deno.readTextFile(new URL("docs/observability.md", ROOT));

  await t.step("every row of every table, in the README", async () => {
    const readme = await Deno.readTextFile(new URL("README.md", ROOT));
    const rows = latest.split("\n").filter((line) => line.startsWith("|"));
    assert.ok(rows.length > 20, "bench/latest.md has its tables");
    assert.deepEqual(rows.filter((row) => !readme.includes(row)), []);
  });

  await t.step("Hono's proxy helper against vestibule, in the Development notes", async () => {
    const readme = await Deno.readTextFile(new URL("README.md", ROOT));
    const median = (row: string) => {
      const line = latest.split("\n").find((l) => l.startsWith(`| ${row} `));
      assert.ok(line, `bench/latest.md has no row "${row}"`);
      return line.split("|")[5].trim().split(" ")[0].replace(".", "\\.");
    };
    const note = readme.split("\n\n").find((p) => p.includes("bare helper ("))
      ?.replace(/\s+/g, " ");
    assert.ok(note, "the README compares the bare helper with vestibule");
    assert.match(
      note,
      new RegExp(`helper \\(${median("(d) Hono's proxy helper (for comparison)")}× `),
    );
    assert.match(note, new RegExp(`vestibule \\(${median("(c) vestibule, regional route")}×\\)`));
  });

  await t.step("observe on vs off, in the cost summary", () => {
    const ratio = latestRatio(latest, "observe on (log to /dev/null, metrics, span attributes)");
    assert.match(doc, new RegExp(`\\(${ratio.replace(".", "\\.")} in the latest run`));
  });

  await t.step("bytes counted by a TransformStream, where `bytes` is explained", () => {
    const ratio = latestRatio(latest, "on + bytes counted by a TransformStream");
    const paragraph = doc.split("\n\n").find((p) =>
      p.startsWith("**Why `bytes` comes only from `Content-Length`:**")
    );
    assert.ok(paragraph, "docs/observability.md explains why bytes comes from Content-Length");
    assert.match(
      paragraph.replaceAll("\n", " "),
      new RegExp(`\\(${ratio.replace(".", "\\.")} in the latest run`),
    );
  });
});
