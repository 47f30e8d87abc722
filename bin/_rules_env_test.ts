import assert from "node:assert/strict";
import { placeholderValue, rulesEnv } from "./_rules_env.ts";

Deno.test("rulesEnv() prefers the environment, then the env file, then a placeholder", async () => {
  const file = await Deno.makeTempFile({ suffix: ".env" });
  const names = ["VESTIBULE_T_SHELL", "VESTIBULE_T_FILE", "VESTIBULE_T_MISSING"];
  try {
    await Deno.writeTextFile(file, "VESTIBULE_T_SHELL=file\nVESTIBULE_T_FILE='from file'\n");
    Deno.env.set("VESTIBULE_T_SHELL", "shell");
    const env = await rulesEnv({ envFile: file, placeholder: true });
    assert.deepEqual(names.map((name) => env.lookup(name)), [
      "shell",
      "from file",
      "http://VESTIBULE_T_MISSING.invalid",
    ]);
    assert.deepEqual(env.placeholders, ["VESTIBULE_T_MISSING"]);
    const strict = await rulesEnv({ envFile: file });
    assert.equal(strict.lookup("VESTIBULE_T_MISSING"), undefined);
  } finally {
    Deno.env.delete("VESTIBULE_T_SHELL");
    await Deno.remove(file);
  }
});

Deno.test("rulesEnv() names an env file it cannot read", async () => {
  await assert.rejects(rulesEnv({ envFile: "/nonexistent/x.env" }), {
    name: "NotFound",
    message: /^Cannot read env file "\/nonexistent\/x\.env": /,
  });
});

Deno.test("placeholderValue() is an origin under the reserved .invalid TLD", () => {
  assert.equal(new URL(placeholderValue("AU_ORIGIN")).origin, "http://au_origin.invalid");
});

Deno.test("rulesEnv() reads an env file exactly as deno run --env-file does", async (t) => {
  const file = await Deno.makeTempFile({ suffix: ".env" });
  const lines = [
    "T_BASE=http://us.internal",
    "T_BRACED=${T_BASE}/a", // expanded by Deno; node:util parseEnv keeps the text
    "T_BARE=$T_BASE/b",
    "T_DIGIT=s3cr$1t",
    'T_DOT="http://au.internal$.example"',
    "T_SINGLE='k$Ab9'", // single quotes: literal
    'T_ESCAPED_QUOTE="q\\"q"',
    "T_COMMENT=b # c",
  ];
  try {
    await Deno.writeTextFile(file, lines.join("\n") + "\n");
    const names = lines.map((line) => line.slice(0, line.indexOf("=")));
    const script = `console.log(JSON.stringify(${
      JSON.stringify(names)
    }.map((n) => Deno.env.get(n))))`;
    const { stdout } = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--no-config", `--env-file=${file}`, script],
      stdout: "piped",
    }).output();
    const startUp: string[] = JSON.parse(new TextDecoder().decode(stdout));
    const { lookup } = await rulesEnv({ envFile: file });
    for (const [i, name] of names.entries()) {
      await t.step(lines[i], () => assert.equal(lookup(name), startUp[i]));
    }
    assert.equal(lookup("T_BRACED"), "http://us.internal/a");
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("placeholderValue() gives a redirect location an origin that never resolves, as the usage says", () => {
  assert.equal(
    placeholderValue("HELP_URL", ["rules", 1, "redirect", "location"]),
    "http://HELP_URL.invalid",
  );
  assert.equal(
    placeholderValue("AU_ORIGIN", ["regions", "au", "origin"]),
    "http://AU_ORIGIN.invalid",
  );
  assert.equal(placeholderValue("KEY", ["ocap", "key"]), "PLACEHOLDER_VALUE_OF_KEY");
});

Deno.test("rulesEnv() lists a placeholder once however often the file uses it", async () => {
  const env = await rulesEnv({ placeholder: true });
  env.lookup("VESTIBULE_T_TWICE", ["regions", "au", "origin"]);
  env.lookup("VESTIBULE_T_TWICE", ["upstreams", "web", "origin"]);
  assert.deepEqual(env.placeholders, ["VESTIBULE_T_TWICE"]);
});
