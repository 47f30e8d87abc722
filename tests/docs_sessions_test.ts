/**
 * Stale samples: the README and docs/operations.md show `deno task explain` and `deno task
 * check-rules` sessions as "run in this repository". An operator compares their own output with
 * them, so each `$ deno task …` shown there must print what is shown, and exit as `echo $?` says.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);
const KEPT_ENV = Object.fromEntries(
  ["HOME", "PATH", "DENO_DIR", "XDG_CACHE_HOME"].flatMap((name) => {
    const value = Deno.env.get(name);
    return value === undefined ? [] : [[name, value]];
  }),
);

interface Session {
  command: string;
  output: string;
  exitCode?: number;
}

/** The `$ deno task explain|check-rules …` sessions of every fenced block without a language. */
function sessions(markdown: string): Session[] {
  const found: Session[] = [];
  for (const lines of plainBlocks(markdown)) {
    for (let i = 0; i < lines.length; i++) {
      if (!lines[i].startsWith("$ ")) continue;
      let command = lines[i].slice(2);
      while (command.endsWith("\\")) command = `${command.slice(0, -1)} ${lines[++i].trim()}`;
      const output: string[] = [];
      while (i + 1 < lines.length && !lines[i + 1].startsWith("$ ")) output.push(lines[++i]);
      while (output.at(-1) === "") output.pop();
      if (command === "echo $?") {
        found.at(-1)!.exitCode = Number(output.join(""));
      } else if (/^deno task (explain|check-rules)\b/.test(command)) {
        found.push({ command, output: output.join("\n") });
      }
    }
  }
  return found;
}

/** The lines of each fenced block opened by a bare ``` (no language: a terminal). */
function plainBlocks(markdown: string): string[][] {
  const blocks: string[][] = [];
  let open: string[] | undefined;
  let inFence = false;
  for (const line of markdown.split("\n")) {
    if (line.trimStart().startsWith("```")) {
      if (inFence && open) blocks.push(open);
      open = !inFence && line === "```" ? [] : undefined;
      inFence = !inFence;
    } else open?.push(line);
  }
  return blocks;
}

/** Shell words: '…' and "…" quoting, as the samples use it. */
function words(command: string): string[] {
  return [...command.matchAll(/'([^']*)'|"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]);
}

/** Runs the sample's command line with `deno task -q` (its echo is left out there too). */
async function run(command: string, envFile: string) {
  const [, , task, ...args] = words(command).map((w) => w === "/tmp/staging.env" ? envFile : w);
  const { code, stdout } = await new Deno.Command("bash", {
    // One stream, in the order the terminal shows it.
    args: ["-c", 'exec "$0" task -q "$@" 2>&1', Deno.execPath(), task, ...args],
    cwd: ROOT,
    clearEnv: true,
    env: { ...KEPT_ENV, NO_COLOR: "1" },
    stdout: "piped",
  }).output();
  return { code, output: new TextDecoder().decode(stdout).trimEnd() };
}

Deno.test("stale samples: every explain and check-rules session in the docs prints what they show", async (t) => {
  // docs/operations.md's "env file that lacks AU_SECRET".
  const envFile = await Deno.makeTempFile({ suffix: ".env" });
  await Deno.writeTextFile(
    envFile,
    "AU_ORIGIN=https://au.app.internal\nUS_ORIGIN=https://us.app.internal\n" +
      "WEBSITE_ORIGIN=https://www.app.internal\n",
  );
  try {
    for (const doc of ["README.md", "docs/operations.md"]) {
      const shown = sessions(await Deno.readTextFile(new URL(doc, ROOT)));
      assert.ok(shown.length > 0, `${doc} shows sessions`);
      for (const session of shown) {
        await t.step(`${doc}: ${session.command.slice(0, 90)}`, async () => {
          const { code, output } = await run(session.command, envFile);
          assert.equal(output, session.output);
          if (session.exitCode !== undefined) assert.equal(code, session.exitCode);
        });
      }
    }
  } finally {
    await Deno.remove(envFile);
  }
});
