/** vestibule as a real process at start-up: mistakes an operator makes get a line, not a trace. */
import assert from "node:assert/strict";
import {
  exitedOf,
  freePort,
  listeningAddresses,
  LOOPBACK_ONLY,
  oneRegion,
  untilHealthy,
} from "./_servers.ts";
import { startProcess } from "./_processes.ts";

/**
 * Starts vestibule as `deno run main.ts`, or as `deno task serve` with `serve: true`, on `port`
 * with a minimal rules file, and returns how it ended.
 */
async function start(
  port: string,
  options: { env?: Record<string, string>; rules?: Record<string, unknown>; serve?: boolean } = {},
): Promise<{ code: number; stderr: string }> {
  const dir = await Deno.makeTempDir({ prefix: "start_test_" });
  try {
    const rules = `${dir}/rules.json`;
    await Deno.writeTextFile(
      rules,
      JSON.stringify(oneRegion("http://127.0.0.1:9", options.rules)),
    );
    const { code, stderr } = await new Deno.Command(Deno.execPath(), {
      args: options.serve ? ["task", "serve"] : ["run", "--allow-all", "main.ts"],
      cwd: new URL("../", import.meta.url),
      env: {
        ...LOOPBACK_ONLY,
        PORT: port,
        VESTIBULE_RULES: rules,
        NO_COLOR: "1",
        ...(options.serve ? { DENO_JOBS: "2" } : {}),
        ...options.env,
      },
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      // A server that started anyway would serve forever: fail, do not hang.
      signal: AbortSignal.timeout(20_000),
    }).output();
    // `deno task` echoes its command line first.
    const lines = new TextDecoder().decode(stderr).split("\n").filter((l) =>
      !/^Task serve /.test(l)
    );
    return { code, stderr: lines.join("\n") };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("start-up: a PORT that is no port, or is taken, is one line and exit 1, not a stack trace", async (t) => {
  await t.step("PORT=abc", async () => {
    assert.deepEqual(await start("abc"), {
      code: 1,
      stderr: 'vestibule: PORT "abc" is not a port number (0–65535)\n',
    });
  });
  await t.step("a port something else listens on", async () => {
    const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    try {
      const { port } = taken.addr as Deno.NetAddr;
      const { code, stderr } = await start(String(port));
      assert.equal(code, 1);
      assert.match(
        stderr,
        new RegExp(`^vestibule: cannot listen on port ${port}: .*\\(set PORT\\)\n$`),
      );
    } finally {
      taken.close();
    }
  });
});

Deno.test("start-up: a VESTIBULE_SHUTDOWN_GRACE_MS that is no number of milliseconds is one line and exit 1", async (t) => {
  const message = (raw: string) =>
    `vestibule: VESTIBULE_SHUTDOWN_GRACE_MS "${raw}" is not a number of milliseconds ` +
    "(0–2147483647; default 25000)\n";
  // "30s" would be NaN: a setTimeout of NaN fires at once and cut every answer in flight.
  for (const serve of [false, true]) {
    await t.step(serve ? "deno task serve" : "deno run main.ts", async () => {
      const { code, stderr } = await start("0", {
        env: { VESTIBULE_SHUTDOWN_GRACE_MS: "30s" },
        serve,
      });
      assert.equal(code, 1);
      // `deno serve --parallel` prefixes each worker's lines (`[serve-worker-0 ] `).
      const lines = stderr.split("\n").filter(Boolean).map((l) => l.replace(/^\[[^\]]*\] /, ""));
      assert.ok(lines.length > 0 && lines.every((l) => `${l}\n` === message("30s")), stderr);
    });
  }
});

Deno.test("start-up: a VESTIBULE_KV that cannot be opened is one line and exit 1, not a stack trace", async (t) => {
  const rules = { ocap: { key: "k".repeat(32), targets: { p: { origin: "http://127.0.0.1:9" } } } };
  for (
    const [what, value, reason] of [
      ["empty, as a blank manifest entry leaves it", "", "Filename cannot be empty"],
      ["a file in a directory that does not exist", "/nonexistent-dir/ocap.db", "unable to open"],
      // Opened, another store than the other instances' `ocap.db`, or a file named ` `. (In a
      // directory that does not exist: a regression fails here without leaving such a file.)
      ["a trailing space", "/nonexistent-dir/ocap.db ", "spaces around the value"],
      ["a leading space", " /nonexistent-dir/ocap.db", "spaces around the value"],
    ]
  ) {
    await t.step(what, async () => {
      const { code, stderr } = await start("0", { env: { VESTIBULE_KV: value }, rules });
      assert.equal(code, 1);
      assert.match(
        stderr,
        new RegExp(
          `^vestibule: cannot open VESTIBULE_KV ${JSON.stringify(value)}: .*${reason}.*\n$`,
        ),
      );
    });
  }
});

Deno.test("start-up: a KV Connect VESTIBULE_KV ending in a newline (mounted from a file) still reaches its denokv", async () => {
  // A stand-in denokv whose metadata endpoint fails: vestibule exits 1 after asking it.
  const asked: string[] = [];
  const denokv = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    asked.push(new URL(request.url).pathname);
    return new Response("down", { status: 503 });
  });
  try {
    const { code, stderr } = await start("0", {
      env: {
        DENO_KV_ACCESS_TOKEN: "t0ken-for-the-test",
        VESTIBULE_KV: `http://127.0.0.1:${denokv.addr.port}\n`,
      },
      rules: { ocap: { key: "k".repeat(32), targets: { p: { origin: "http://127.0.0.1:9" } } } },
    });
    assert.equal(code, 1, stderr);
    assert.doesNotMatch(stderr, /spaces around the value/);
    assert.ok(asked.length > 0, `the denokv at that URL was never asked: ${stderr}`);
  } finally {
    await denokv.shutdown();
  }
});

Deno.test("start-up: deno task dev names a bad PORT as written, before any banner", async () => {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "dev/stack.ts"],
    cwd: new URL("../", import.meta.url),
    env: { PORT: "abc", NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(code, 1);
  assert.equal(
    new TextDecoder().decode(stderr),
    'vestibule dev stack: PORT "abc" is not a port number (0–65535)\n',
  );
  assert.equal(new TextDecoder().decode(stdout), "", "no banner with localhost:NaN links");
});

Deno.test("start-up: deno task serve names a PORT problem, not serve.ts, and prints no stack trace", async (t) => {
  // `bin/serve_port.ts && deno serve …`: the check must end the task, so `deno serve` never
  // reads the value (it would print its own error and a backtrace).
  for (const port of ["abc", "65536", "1e3"]) {
    await t.step(`PORT=${port}: vestibule's one line, and deno serve never runs`, async () => {
      assert.deepEqual(await start(port, { serve: true }), {
        code: 1,
        stderr: `vestibule: PORT "${port}" is not a port number (0–65535)\n`,
      });
    });
  }
  await t.step("PORT set but empty, as a blank manifest entry leaves it", async () => {
    const { code, stderr } = await start("", { serve: true });
    assert.equal(code, 1);
    assert.match(stderr, /PORT/, "the message names the variable to fix");
    assert.doesNotMatch(stderr, /'serve\.ts'/, "not 'serve.ts' as the port");
  });
  await t.step("a port something else listens on", async () => {
    const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    try {
      const { port } = taken.addr as Deno.NetAddr;
      const { code, stderr } = await start(String(port), { serve: true });
      assert.equal(code, 1);
      assert.match(stderr, new RegExp(`port ${port}`), "the message names the port");
      assert.doesNotMatch(stderr, /^\s+at /m, "no stack trace");
    } finally {
      taken.close();
    }
  });
});

Deno.test("start-up: a rules file start-up refuses is one line and exit 1, not a stack trace", async () => {
  // A default_region no region defines: a mistake in the file, the operator's to fix.
  const { code, stderr } = await start("0", { rules: { default_region: "nowhere" } });
  assert.equal(code, 1, "a supervisor must see a failed start, not a clean exit");
  assert.equal(stderr.split("\n").length, 2, `one line: ${stderr}`);
  assert.match(stderr, /nowhere/, "the message names the value to fix");
  assert.match(stderr, /^vestibule: /, "says who refused, as the other start-up refusals do");
  assert.doesNotMatch(stderr, /^\s+at |^error: Uncaught|^Error:/m, "no stack trace");
});

Deno.test("start-up: a VESTIBULE_METRICS_TOKEN that is no bearer token is one line, vestibule's, and exit 1", async () => {
  const { code, stderr } = await start("0", { env: { VESTIBULE_METRICS_TOKEN: "two words" } });
  assert.equal(code, 1);
  assert.match(stderr, /^vestibule: VESTIBULE_METRICS_TOKEN is not a bearer token: .*\n$/);
});

Deno.test("start-up: deno task serve refuses a port taken on one address only, where deno serve would fail with a trace", async () => {
  // Something listens on 127.0.0.2 only (a service bound to one interface): deno serve, which
  // listens on 0.0.0.0, cannot take the port, so the check must try the address it uses.
  const taken = Deno.listen({ hostname: "127.0.0.2", port: 0 });
  try {
    const { port } = taken.addr as Deno.NetAddr;
    // On every interface, as deno serve listens by default (it cannot get that far here).
    const env = { VESTIBULE_HOST: "0.0.0.0" };
    const { code, stderr } = await start(String(port), { serve: true, env });
    assert.equal(code, 1);
    assert.match(
      stderr,
      new RegExp(`^vestibule: cannot listen on port ${port}: .*\\(set PORT\\)$`, "m"),
    );
    assert.doesNotMatch(stderr, /^\s+at /m, "no stack trace");
  } finally {
    taken.close();
  }
});

Deno.test("start-up: deno task dev with a taken PORT exits with vestibule's code and says so, without the banner", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const { port } = taken.addr as Deno.NetAddr;
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", "dev/stack.ts"],
      cwd: new URL("../", import.meta.url),
      env: { ...LOOPBACK_ONLY, PORT: String(port), NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      // A stack that ran on without vestibule would run forever: fail, do not hang.
      signal: AbortSignal.timeout(20_000),
    }).output();
    const text = new TextDecoder().decode(stderr);
    assert.match(
      text,
      new RegExp(`^vestibule: cannot listen on port ${port}: .*\\(set PORT\\)$`, "m"),
    );
    assert.match(text, /^vestibule exited with code 1$/m, "the stack says why it stopped");
    assert.equal(code, 1, "a script running `deno task dev` sees the failure");
    // The banner's links would lead to whatever holds the port.
    assert.doesNotMatch(new TextDecoder().decode(stdout), /open +http:\/\/localhost/);
  } finally {
    taken.close();
  }
});

Deno.test("start-up: a mistake inside a rules file that was read is named, without the hint to set VESTIBULE_RULES", async (t) => {
  // The hint is for a file that cannot be read; beside a mistake in the file (the path is right)
  // it sends the operator to the wrong setting.
  await t.step("a default_region no region has", async () => {
    const { code, stderr } = await start("0", { rules: { default_region: "nowhere" } });
    assert.equal(code, 1, stderr);
    assert.match(stderr, /^vestibule: .*nowhere/);
    assert.doesNotMatch(stderr, /set VESTIBULE_RULES/);
  });
  await t.step("a ${NAME} the environment lacks", async () => {
    const { code, stderr } = await start("0", { rules: { default_region: "${REGION_UNSET}" } });
    assert.equal(code, 1, stderr);
    assert.equal(
      stderr,
      'vestibule: Cannot read rules: environment variable "REGION_UNSET" is not set (used at default_region)\n',
    );
  });
});

Deno.test("start-up: a VESTIBULE_HOST that is no IP address, or no address of this machine, is one line and exit 1", async (t) => {
  const cases: [string, string][] = [
    [
      "localhost",
      'vestibule: VESTIBULE_HOST "localhost" is not an IP address to listen on ' +
      "(0.0.0.0 for every IPv4 interface, :: for every interface, 127.0.0.1 for this machine only)\n",
    ],
    // TEST-NET-1 (RFC 5737): an address no machine here has, copied from elsewhere.
    [
      "192.0.2.1",
      "vestibule: cannot listen on 192.0.2.1: not an address of this machine (set VESTIBULE_HOST)\n",
    ],
    // A link-local address pasted from `ip addr` without its zone: the kernel refuses it.
    [
      "fe80::1",
      "vestibule: cannot listen on fe80::1: Invalid argument (os error 22) (set VESTIBULE_HOST)\n",
    ],
  ];
  for (const [host, stderr] of cases) {
    for (const serve of [false, true]) {
      await t.step(`${host}, ${serve ? "deno task serve" : "deno run main.ts"}`, async () => {
        assert.deepEqual(await start("0", { serve, env: { VESTIBULE_HOST: host } }), {
          code: 1,
          stderr,
        });
      });
    }
  }
});

Deno.test("start-up: with VESTIBULE_HOST=127.0.0.1, deno task start and deno task serve listen on loopback only", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "start_test_" });
  try {
    for (const kind of ["run", "serve"] as const) {
      await t.step(kind === "run" ? "deno run main.ts" : "deno task serve", async () => {
        const child = await startProcess(kind, {
          providerUrl: "http://127.0.0.1:9",
          kvPath: `${dir}/${kind}.sqlite3`,
          // One worker, up once it answers: Deno 2.9.6 loses a SIGTERM to a worker still starting.
          jobs: 1,
        });
        try {
          const addresses = await listeningAddresses(Number(new URL(child.url).port));
          assert.ok(addresses.length > 0, "found the listening socket");
          // 0100007F is 127.0.0.1 as the kernel writes it; 00000000 would be every interface.
          assert.deepEqual([...new Set(addresses)], ["0100007F"]);
        } finally {
          await child.stop();
        }
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("start-up: an IPv6 VESTIBULE_HOST (::1) is listened on by deno task start and deno task serve", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "start_test_" });
  const rules = `${dir}/rules.json`;
  await Deno.writeTextFile(
    rules,
    JSON.stringify(oneRegion("http://127.0.0.1:9")),
  );
  try {
    // deno serve takes an IPv6 --host only in brackets ("invalid empty host" otherwise).
    for (const serve of [false, true]) {
      await t.step(serve ? "deno task serve" : "deno run main.ts", async () => {
        const port = freePort();
        const child = new Deno.Command(Deno.execPath(), {
          args: serve ? ["task", "serve"] : ["run", "--allow-all", "main.ts"],
          cwd: new URL("../", import.meta.url),
          env: {
            VESTIBULE_HOST: "::1",
            PORT: String(port),
            VESTIBULE_RULES: rules,
            DENO_JOBS: "1",
          },
          stdin: "null",
          stdout: "null",
          stderr: "null",
        }).spawn();
        try {
          await untilHealthy(`http://[::1]:${port}`, exitedOf(child));
        } finally {
          // SIGTERM, which deno task relays to deno serve: a SIGKILL would leave it running.
          child.kill("SIGTERM");
          await child.status;
        }
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("start-up: deno task serve's port check tries VESTIBULE_HOST: a port taken on 127.0.0.1 is free on 127.0.0.2", async () => {
  const held = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const { code, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-env", "--allow-net", "bin/serve_port.ts"],
      cwd: new URL("../", import.meta.url),
      env: { PORT: String(held.addr.port), VESTIBULE_HOST: "127.0.0.2" },
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.equal(code, 0, new TextDecoder().decode(stderr));
  } finally {
    held.close();
  }
});

Deno.test("start-up: a rules file that cannot be read names VESTIBULE_RULES, where the path to fix is set", async (t) => {
  for (const path of ["", "/nonexistent-dir/rules.json", "/tmp"]) {
    await t.step(JSON.stringify(path), async () => {
      const { code, stderr } = await start("0", { env: { VESTIBULE_RULES: path } });
      assert.equal(code, 1);
      assert.match(
        stderr,
        new RegExp(`^vestibule: Cannot read rules file "${path}": .*\\(set VESTIBULE_RULES\\)\n$`),
      );
    });
  }
});

Deno.test("start-up: deno task serve refuses a DENO_JOBS Deno would read as one worker, naming it", async (t) => {
  for (const jobs of ["4 ", "four", ""]) {
    await t.step(`DENO_JOBS=${JSON.stringify(jobs)}`, async () => {
      const { code, stderr } = await new Deno.Command(Deno.execPath(), {
        args: ["task", "-q", "serve"],
        cwd: new URL("../", import.meta.url),
        // The check comes before the rules are read: none are needed to see it refuse.
        env: { ...LOOPBACK_ONLY, PORT: String(freePort()), DENO_JOBS: jobs, NO_COLOR: "1" },
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).output();
      assert.equal(code, 1);
      assert.equal(
        new TextDecoder().decode(stderr),
        `vestibule: DENO_JOBS "${jobs}" is not a number of workers (1 or more; unset, one per CPU)\n`,
      );
    });
  }
});

Deno.test("start-up: a forward proxy in the environment (HTTP_PROXY from a base image) is said on stderr, its password not", async () => {
  const dir = await Deno.makeTempDir({ prefix: "start_test_" });
  const rules = `${dir}/rules.json`;
  await Deno.writeTextFile(rules, JSON.stringify(oneRegion("http://127.0.0.1:9")));
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "main.ts"],
    cwd: new URL("../", import.meta.url),
    env: {
      ...LOOPBACK_ONLY,
      PORT: String(freePort()),
      VESTIBULE_RULES: rules,
      HTTP_PROXY: "http://ops:pa55@127.0.0.1:9",
      NO_COLOR: "1",
    },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  try {
    const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    while (!stderr.includes("Listening on")) {
      const { done, value } = await reader.read();
      if (done) break;
      stderr += value;
    }
    await reader.cancel();
  } finally {
    child.kill("SIGKILL");
    await child.status;
    await Deno.remove(dir, { recursive: true });
  }
  assert.match(
    stderr,
    /^vestibule: upstream calls go through the proxy in HTTP_PROXY=http:\/\/\*\*\*@127\.0\.0\.1:9 \(NO_PROXY is not set\)$/m,
  );
  assert.doesNotMatch(stderr, /pa55/);
});
