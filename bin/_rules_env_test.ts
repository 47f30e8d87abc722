import assert from "node:assert/strict";
import { placeholderValue, rulesEnv } from "./_rules_env.ts";

Deno.test("rulesEnv() prefers the environment, then the env file, then a placeholder", async () => {
  const file = await Deno.makeTempFile({ suffix: ".env" });
  const names = ["VESTIBULE_T_SHELL", "VESTIBULE_T_FILE", "VESTIBULE_T_MISSING"];
  try {
    await Deno.writeTextFile(file, "VESTIBULE_T_SHELL=file\nVESTIBULE_T_FILE='from file'\n");
    Deno.env.set("VESTIBULE_T_SHELL", "shell");
    const env = await rulesEnv({ envFile: file, placeholder: true });
    assert.deepEqual(names.map(env.lookup), [
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

Deno.test("rulesEnv() refuses an env-file value that deno run --env-file would expand", async () => {
  const file = await Deno.makeTempFile({ suffix: ".env" });
  try {
    await Deno.writeTextFile(
      file,
      "BASE=http://us.internal\nT_US_ORIGIN=${BASE}\nT_SECRET=$BASE\nT_PLAIN=http://x.test\n",
    );
    const env = await rulesEnv({ envFile: file });
    assert.equal(env.lookup("T_PLAIN"), "http://x.test");
    for (const name of ["T_US_ORIGIN", "T_SECRET"]) {
      assert.throws(() => env.lookup(name), {
        name: "ReferenceError",
        message: new RegExp(`^Cannot read ${name} from ".*": its value refers to another variable`),
      });
    }
  } finally {
    await Deno.remove(file);
  }
});
