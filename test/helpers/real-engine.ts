import { execFile } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { build } from "esbuild";
import type {
  LocalWorkspace as LocalWorkspaceClass,
  PulumiCommand as PulumiCommandClass,
  Stack,
} from "@pulumi/pulumi/automation";
import { type DeployEnvironment, liveEnvironment } from "../../infra/environment";
import { hubProgram } from "../../infra/program";
import { UnwrittenSshFileStore } from "../../infra/ssh";
import { pulumiCliPath, pulumiMissingReason } from "../../tools/pulumi-cli";
import { PROJECT } from "../../stacks/settings";
import { RecordingAddressSource } from "./deploy-env";
import { ROOT } from "./load";
import type { ProgramStart } from "./stand-in-plugins/language-host";

/**
 * The real Pulumi engine for tests: the CLI built at the pinned SDK's version
 * (tools/pulumi-cli.ts), driven through the Automation API on a local file backend with a
 * passphrase secrets provider, the program (infra/program.ts hubProgram) run inline, and the
 * labelled stand-in provider plugins of ./stand-in-plugins on PATH. docs/pulumi-engine.md
 * says what this can and cannot see.
 */

export const PULUMI_CLI = pulumiCliPath();
/** Why the real-engine tests skip (locally) or fail (CI=true), or undefined when they can run. */
export const REAL_ENGINE_MISSING = PULUMI_CLI ? undefined : pulumiMissingReason();

/** The plugins the program's npm packages ask for; each gets a stand-in. */
export const STAND_IN_PLUGINS = ["digitalocean", "random", "tls", "docker", "command"] as const;

/** A throwaway passphrase: the backend lives and dies with the test file. */
const PASSPHRASE = "real-engine tests: throwaway passphrase";

/** An OpenSSH public key for stacks that need one to `up` (the program refuses droplets nobody can log in to). */
export const TEST_SSH_PUBLIC_KEY =
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBC5j5fVDWXmjbWiA7nJOh7gKPDlpK6g04k8grjTy2fE real-engine-test";

/** One call the stand-in providers received (see stand-in-plugins/provider.ts). */
export interface ProviderCall {
  readonly plugin: string;
  readonly op: "check" | "diff" | "create" | "update" | "delete" | "read" | "invoke";
  readonly type: string;
  readonly name: string;
  readonly id?: string;
  readonly changed?: readonly string[];
  readonly replaces?: readonly string[];
  readonly token?: string;
}

export interface EngineRig {
  /** The project as a user has it: Pulumi.yaml and every Pulumi.<stack>.yaml copied, the rest linked to the repository. */
  readonly projectDir: string;
  readonly backendDir: string;
  readonly env: Record<string, string>;
  /** A stack of the project, selected or created, running `program` (hubProgram by default) inline. */
  stack(
    name: string,
    opts?: { program?: () => Promise<Record<string, unknown>>; env?: Record<string, string> },
  ): Promise<Stack>;
  /** What the stand-in providers were asked since the last call (and forgets it). */
  takeProviderCalls(): ProviderCall[];
  /** Programs the stand-in language host started (a `pulumi` command run without --client). */
  languageHostStarts(): ProgramStart[];
  /** The CLI itself, as a user runs it (plugins from PATH), for what the Automation API does not wrap. */
  cli(args: readonly string[], stackName: string): Promise<{ code: number; stdout: string; stderr: string }>;
  close(): void;
}

/**
 * Writes the stand-in plugins: one bundle each of provider.ts and language-host.ts (esbuild,
 * CommonJS; node_modules stay external and resolve from the repository), one
 * `pulumi-resource-<name>` script per provider and one `pulumi-language-nodejs`.
 */
async function writeStandInPlugins(dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const bundled = async (source: string) => {
    const outfile = path.join(dir, source.replace(/\.ts$/, ".cjs"));
    await build({
      entryPoints: [path.join(__dirname, "stand-in-plugins", source)],
      bundle: true,
      platform: "node",
      format: "cjs",
      target: "node20",
      packages: "external",
      outfile,
      logLevel: "silent",
    });
    return outfile;
  };
  const provider = await bundled("provider.ts");
  for (const name of STAND_IN_PLUGINS) {
    writeFileSync(
      path.join(dir, `pulumi-resource-${name}`),
      `#!/bin/sh\n# STAND-IN for the ${name} provider plugin (inference-hub tests): echoes inputs, creates nothing.\nexec "${process.execPath}" "${provider}" ${name} "$@"\n`,
      { mode: 0o755 },
    );
  }
  const host = await bundled("language-host.ts");
  writeFileSync(
    path.join(dir, "pulumi-language-nodejs"),
    `#!/bin/sh\n# STAND-IN for the nodejs language host (inference-hub tests): starts the SDK's run entry as the real host does.\nexec "${process.execPath}" "${host}" "$@"\n`,
    { mode: 0o755 },
  );
}

/** The environment an engine test's program runs with: the deploying machine's address is a stand-in, nothing is written to ~/.ssh. */
export function engineTestEnvironment(): DeployEnvironment {
  return { ...liveEnvironment(), sshFiles: new UnwrittenSshFileStore(), deployerAddress: new RecordingAddressSource() };
}

export async function startEngineRig(): Promise<EngineRig> {
  if (!PULUMI_CLI) throw new Error(REAL_ENGINE_MISSING);
  // Loaded here: importing the Automation API is not free, and files that skip should not pay it.
  const { LocalWorkspace, PulumiCommand } = (await import("@pulumi/pulumi/automation")) as {
    LocalWorkspace: typeof LocalWorkspaceClass;
    PulumiCommand: typeof PulumiCommandClass;
  };
  const root = mkdtempSync(path.join(tmpdir(), "real-engine-"));
  const projectDir = path.join(root, "project");
  const backendDir = path.join(root, "backend");
  const pluginDir = path.join(root, "plugins");
  const cliRoot = path.join(root, "cli");
  for (const dir of [projectDir, backendDir, path.join(cliRoot, "bin"), path.join(root, "home")])
    mkdirSync(dir, { recursive: true });
  // The project as a checkout has it: the Pulumi files copied (the CLI writes to the stack files),
  // everything else (infra/, which the CLI checks `main` against, node_modules, ...) linked.
  for (const entry of readdirSync(ROOT)) {
    if (/^Pulumi(\.[a-z0-9-]+)?\.yaml$/.test(entry)) copyFileSync(path.join(ROOT, entry), path.join(projectDir, entry));
    else if (!entry.startsWith(".")) symlinkSync(path.join(ROOT, entry), path.join(projectDir, entry));
  }
  // The Automation API wants <root>/bin/pulumi.
  symlinkSync(PULUMI_CLI, path.join(cliRoot, "bin", "pulumi"));
  await writeStandInPlugins(pluginDir);
  const callLog = path.join(root, "provider-calls.jsonl");
  const env: Record<string, string> = {
    PULUMI_BACKEND_URL: `file://${backendDir}`,
    PULUMI_CONFIG_PASSPHRASE: PASSPHRASE,
    PULUMI_HOME: path.join(root, "home"),
    PULUMI_SKIP_UPDATE_CHECK: "true",
    // Never download a plugin: the stand-ins on PATH are the only ones.
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    // Intermediate checkpoints of a file backend cost time and change nothing the tests look at.
    PULUMI_SKIP_CHECKPOINTS: "true",
    PATH: `${pluginDir}:${process.env.PATH ?? ""}`,
    NODE_PATH: path.join(ROOT, "node_modules"),
    STAND_IN_PROVIDER_LOG: callLog,
    STAND_IN_LANGUAGE_HOST_LOG: path.join(root, "language-host-starts.jsonl"),
    // No cloud credentials: nothing here may reach an account.
    DIGITALOCEAN_TOKEN: "",
  };
  const pulumiCommand = await PulumiCommand.get({ root: cliRoot });
  return {
    projectDir,
    backendDir,
    env,
    async stack(name, opts = {}) {
      const program = opts.program ?? (() => hubProgram(engineTestEnvironment()));
      // workDir holds Pulumi.yaml, so the workspace uses the project file as shipped.
      return LocalWorkspace.createOrSelectStack(
        { stackName: name, projectName: PROJECT, program },
        { workDir: projectDir, pulumiCommand, envVars: { ...env, ...(opts.env ?? {}) } },
      );
    },
    languageHostStarts() {
      const log = env.STAND_IN_LANGUAGE_HOST_LOG;
      return existsSync(log)
        ? readFileSync(log, "utf8")
            .split("\n")
            .filter(Boolean)
            .map((l) => JSON.parse(l) as ProgramStart)
        : [];
    },
    takeProviderCalls() {
      if (!existsSync(callLog)) return [];
      const calls = readFileSync(callLog, "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as ProviderCall);
      rmSync(callLog, { force: true });
      return calls;
    },
    async cli(args, stackName) {
      return new Promise((resolve) => {
        execFile(
          PULUMI_CLI as string,
          [...args, "--stack", stackName, "--non-interactive"],
          { cwd: projectDir, env: { ...process.env, ...env }, encoding: "utf8", maxBuffer: 32 * 1024 * 1024 },
          (error, out, err) =>
            resolve({ code: error ? (typeof error.code === "number" ? error.code : 1) : 0, stdout: out, stderr: err }),
        );
      });
    },
    close() {
      rmSync(root, { recursive: true, force: true });
    },
  };
}
