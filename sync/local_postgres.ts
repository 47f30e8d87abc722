/** @module A throwaway local PostgreSQL cluster (initdb + pg_ctl) for the benchmark. */

/** A running cluster and how to stop it. */
export interface LocalPostgres {
  url: string;
  stop(): Promise<void>;
}

async function run(command: string, args: string[], user?: string): Promise<string> {
  const [cmd, argv] = user ? ["runuser", ["-u", user, "--", command, ...args]] : [command, args];
  const output = await new Deno.Command(cmd, { args: argv, stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  if (!output.success) throw new Error(`Cannot run "${command}": ${text.trim()}`);
  return text;
}

/** The newest `<root>/<version>/bin` holding initdb and pg_ctl, else /usr/local/bin or /usr/bin. */
export async function findBin(root = "/usr/lib/postgresql"): Promise<string | undefined> {
  const dirs: string[] = [];
  try {
    for await (const entry of Deno.readDir(root)) {
      dirs.push(`${root}/${entry.name}/bin`);
    }
  } catch {
    // Not a Debian layout; fall back to PATH below.
  }
  dirs.sort((a, b) => a.localeCompare(b, "en", { numeric: true })).reverse();
  dirs.push("/usr/local/bin", "/usr/bin");
  for (const dir of dirs) {
    try {
      await Deno.stat(`${dir}/initdb`);
      await Deno.stat(`${dir}/pg_ctl`);
      return dir;
    } catch {
      continue;
    }
  }
  return undefined;
}

/**
 * Start a cluster on a free loopback port, or return undefined when initdb is not installed.
 * The server refuses to run as root, so as root it runs as the `postgres` user.
 */
export async function startLocalPostgres(): Promise<LocalPostgres | undefined> {
  const bin = await findBin();
  if (!bin) return undefined;
  const user = Deno.uid() === 0 ? "postgres" : undefined;
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const dir = await Deno.makeTempDir({ prefix: "sync_bench_pg_" });
  try {
    if (user) await run("chown", [user, dir]);
    await run(`${bin}/initdb`, [
      "-D",
      `${dir}/data`,
      "-U",
      "postgres",
      "--auth=trust",
      "-E",
      "UTF8",
      "--locale=C",
    ], user);
    const options = `-c listen_addresses=127.0.0.1 -p ${port} -k ${dir} -c fsync=off ` +
      `-c shared_buffers=512MB -c max_wal_size=4GB -c synchronous_commit=off`;
    await run(`${bin}/pg_ctl`, [
      "-D",
      `${dir}/data`,
      "-l",
      `${dir}/log`,
      "-w",
      "-o",
      options,
      "start",
    ], user);
  } catch (error) {
    // initdb or pg_ctl failed: the cluster never ran, so its files go.
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop: async () => {
      await run(`${bin}/pg_ctl`, ["-D", `${dir}/data`, "-m", "fast", "stop"], user);
      await Deno.remove(dir, { recursive: true });
    },
  };
}
