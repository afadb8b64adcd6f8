import { execFile, spawnSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { Client } from "pg";

/**
 * A throwaway PostgreSQL cluster for tests and benchmarks: Debian's own binaries
 * (/usr/lib/postgresql/<version>/bin), a temp directory, a free loopback port, trust auth.
 * initdb and pg_ctl refuse to run as root, so as root they run as the `postgres` user (created
 * by Debian's package) or, failing that, a dedicated system user created here.
 */

const execFileAsync = promisify(execFile);
const DEBIAN_ROOT = "/usr/lib/postgresql";
const SUPERUSER = "postgres";
const FALLBACK_OS_USER = "hub-pgtest";

export interface PostgresBinaries {
  readonly version: string;
  readonly binDir: string;
}

/** The newest Debian PostgreSQL with initdb, pg_ctl and postgres, or undefined. */
export function findPostgres(): PostgresBinaries | undefined {
  if (!existsSync(DEBIAN_ROOT)) return undefined;
  const versions = readdirSync(DEBIAN_ROOT)
    .filter((v) => /^\d+$/.test(v))
    .sort((a, b) => Number(b) - Number(a));
  for (const version of versions) {
    const binDir = path.join(DEBIAN_ROOT, version, "bin");
    if (["initdb", "pg_ctl", "postgres"].every((b) => existsSync(path.join(binDir, b)))) return { version, binDir };
  }
  return undefined;
}

export const POSTGRES_MISSING_REASON = `no PostgreSQL server binaries in ${DEBIAN_ROOT}/<version>/bin (Debian package "postgresql"; .ci/run installs it)`;

/** The OS account to run the server as, when this process is root. */
function serverOsUser(): { readonly name: string; readonly uid: number; readonly gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const lookup = (name: string) => {
    const r = spawnSync("id", ["-u", name], { encoding: "utf8" });
    if (r.status !== 0) return undefined;
    const g = spawnSync("id", ["-g", name], { encoding: "utf8" });
    return { name, uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
  };
  const existing = lookup(SUPERUSER) ?? lookup(FALLBACK_OS_USER);
  if (existing) return existing;
  const created = spawnSync(
    "useradd",
    ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_OS_USER],
    { encoding: "utf8" },
  );
  if (created.status !== 0)
    throw new Error(
      `running as root, PostgreSQL needs an unprivileged user; useradd ${FALLBACK_OS_USER} failed: ${created.stderr}`,
    );
  const user = lookup(FALLBACK_OS_USER);
  if (!user) throw new Error(`user ${FALLBACK_OS_USER} was created but cannot be looked up`);
  return user;
}

export async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

const liveClusters = new Set<PostgresCluster>();
// A safety net: a test process that dies must not leave a server running.
process.once("exit", () => {
  for (const cluster of liveClusters) cluster.stopSync();
});

export class PostgresCluster {
  private running = false;

  private constructor(
    private readonly binaries: PostgresBinaries,
    readonly dir: string,
    readonly port: number,
    private readonly osUser: string | undefined,
  ) {}

  get dataDir(): string {
    return path.join(this.dir, "data");
  }

  get logFile(): string {
    return path.join(this.dir, "postgres.log");
  }

  /**
   * initdb + start; throws (naming the missing package) when the binaries are absent.
   * @param parentDir where the cluster's directory goes. @default os.tmpdir()
   */
  static async create(parentDir: string = tmpdir()): Promise<PostgresCluster> {
    const binaries = findPostgres();
    if (!binaries) throw new Error(POSTGRES_MISSING_REASON);
    const user = serverOsUser();
    const dir = mkdtempSync(path.join(parentDir, "hub-pg-"));
    if (user) {
      chownSync(dir, user.uid, user.gid);
      chmodSync(dir, 0o700);
    }
    const cluster = new PostgresCluster(binaries, dir, await freeLoopbackPort(), user?.name);
    // --no-sync: a throwaway cluster needs no durable initdb.
    await cluster.run("initdb", [
      "-D",
      cluster.dataDir,
      "-U",
      SUPERUSER,
      "-A",
      "trust",
      "-E",
      "UTF8",
      "--locale=C",
      "--no-sync",
    ]);
    await cluster.start();
    return cluster;
  }

  private command(binary: string, args: readonly string[]): [string, string[]] {
    const file = path.join(this.binaries.binDir, binary);
    return this.osUser ? ["runuser", ["-u", this.osUser, "--", file, ...args]] : [file, [...args]];
  }

  private async run(binary: string, args: readonly string[]): Promise<void> {
    const [file, fullArgs] = this.command(binary, args);
    try {
      await execFileAsync(file, fullArgs, { cwd: this.dir, timeout: 60_000 });
    } catch (error) {
      const e = error as { stderr?: string; stdout?: string; message: string };
      const log = existsSync(this.logFile) ? readFileSync(this.logFile, "utf8").slice(-2000) : "";
      throw new Error(`${binary} ${args.join(" ")} failed: ${e.message}\n${e.stderr ?? ""}${e.stdout ?? ""}\n${log}`);
    }
  }

  async start(): Promise<void> {
    // fsync off: the tests stop the server, never the machine, and a commit still write()s its WAL
    // to the OS. synchronous_commit stays on: off, a crash (-m immediate) loses acknowledged commits.
    const serverOptions = [
      `-p ${this.port}`,
      "-c listen_addresses=127.0.0.1",
      `-c unix_socket_directories=${this.dir}`,
      "-c fsync=off",
      "-c full_page_writes=off",
      "-c max_connections=50",
    ].join(" ");
    await this.run("pg_ctl", ["-D", this.dataDir, "-l", this.logFile, "-o", serverOptions, "-w", "-t", "60", "start"]);
    this.running = true;
    liveClusters.add(this);
  }

  /** `immediate` is a crash as far as clients can tell: connections drop, recovery runs on start. */
  async stop(mode: "fast" | "immediate" = "fast"): Promise<void> {
    await this.run("pg_ctl", ["-D", this.dataDir, "-m", mode, "-w", "-t", "60", "stop"]);
    this.running = false;
    liveClusters.delete(this);
  }

  stopSync(): void {
    if (!this.running) return;
    const [file, args] = this.command("pg_ctl", ["-D", this.dataDir, "-m", "immediate", "-w", "stop"]);
    spawnSync(file, args, { stdio: "ignore" });
    this.running = false;
    liveClusters.delete(this);
  }

  url(database = "postgres"): string {
    return `postgresql://${SUPERUSER}@127.0.0.1:${this.port}/${database}`;
  }

  /** A fresh, empty database; returns its URL. */
  async createDatabase(name: string): Promise<string> {
    if (!/^[a-z_][a-z0-9_]*$/.test(name))
      throw new Error(`database name ${name} must be a plain lower-case identifier`);
    const client = new Client({ connectionString: this.url() });
    await client.connect();
    try {
      await client.query(`CREATE DATABASE ${name}`);
    } finally {
      await client.end();
    }
    return this.url(name);
  }

  async destroy(): Promise<void> {
    if (this.running) await this.stop("immediate").catch(() => this.stopSync());
    rmSync(this.dir, { recursive: true, force: true });
  }
}
