import { spawn } from "node:child_process";
import * as path from "node:path";
import type * as grpcTypes from "@grpc/grpc-js";

/**
 * STAND-IN for the nodejs language host (`pulumi-language-nodejs`, which the Go module proxy does
 * not serve), for `pulumi preview --client=<address>`: the real CLI sends it the RunRequest, and it
 * starts the program exactly the way the real host's execRuntime does in pulumi/pulumi v3.248.0
 * (sdk/nodejs/cmd/pulumi-language-nodejs/main.go, read 2026-12-07):
 *
 * - `node <@pulumi/pulumi/cmd/run, resolved from the program directory> --monitor <addr>
 *   --engine <addr> --organization <org> --project <p> --root-directory <root> --stack <s>
 *   --pwd <program directory> [--dry-run] --parallel <n> <entry point> <args...>`
 *   (constructArguments; the entry point is Pulumi.yaml's `main` as the CLI resolved it);
 * - environment: PULUMI_CONFIG (keys as `<ns>:config:<name>`, constructConfig),
 *   PULUMI_CONFIG_SECRET_KEYS, PULUMI_NODEJS_TYPESCRIPT=true when `runtime.options.typescript`
 *   is true or unset, PULUMI_NODEJS_TSCONFIG_PATH = `runtime.options.tsconfig` when set
 *   (parseOptions) — taken from the options the CLI hands over, never from this repository;
 * - exit code 32 means the program already reported its error (bail).
 *
 * So the SDK's own run entry compiles the program with its vendored ts-node, in the program
 * directory, with whatever tsconfig that lookup finds. Left out: the real host's monitor proxy and
 * sync-invoke pipes (the program reaches the engine's monitor directly; it makes no synchronous
 * invokes), the SDK version check, and debugger/bun support.
 */

// The SDK's own gRPC library and generated code (CommonJS, no types): the copy the run entry uses.
/* eslint-disable @typescript-eslint/no-require-imports */
const grpc = require(require.resolve("@grpc/grpc-js", { paths: [path.dirname(require.resolve("@pulumi/pulumi"))] })) as typeof grpcTypes;
const langRpc = require("@pulumi/pulumi/proto/language_grpc_pb") as { LanguageRuntimeService: grpcTypes.ServiceDefinition };
const langProto = require("@pulumi/pulumi/proto/language_pb") as Record<string, new () => Record<string, (...args: unknown[]) => unknown>>;
const pluginProto = require("@pulumi/pulumi/proto/plugin_pb") as Record<string, new () => Record<string, (...args: unknown[]) => unknown>>;
/* eslint-enable @typescript-eslint/no-require-imports */

/** The exit code the SDK's run entry uses after it has shown the user an actionable message. */
const EXITED_AFTER_MESSAGE = 32;

interface RunRequest {
  getInfo(): { getRootDirectory(): string; getProgramDirectory(): string; getEntryPoint(): string; getOptions(): { toJavaScript(): Record<string, unknown> } | undefined };
  getMonitorAddress(): string;
  getConfigMap(): { entries(): Iterable<[string, string]> } | undefined;
  getConfigsecretkeysList(): string[];
  getOrganization(): string;
  getProject(): string;
  getStack(): string;
  getDryrun(): boolean;
  getParallel(): number;
  getArgsList(): string[];
}

/** One program start, as the stand-in host made it: for the test to check what was passed. */
export interface ProgramStart {
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly cwdArg: string;
  readonly output: string;
  readonly exitCode: number | null;
}

export interface StandInLanguageHost {
  readonly address: string;
  readonly starts: readonly ProgramStart[];
  close(): Promise<void>;
}

/** What main.go parseOptions + execRuntime put in the program's environment, from Pulumi.yaml's runtime options. */
export function hostEnvironment(options: Record<string, unknown>): Record<string, string> {
  const env: Record<string, string> = {};
  if (options.typescript === undefined || options.typescript === true) env.PULUMI_NODEJS_TYPESCRIPT = "true";
  if (typeof options.tsconfig === "string" && options.tsconfig !== "") env.PULUMI_NODEJS_TSCONFIG_PATH = options.tsconfig;
  return env;
}

export async function startStandInLanguageHost(): Promise<StandInLanguageHost> {
  const starts: ProgramStart[] = [];
  const server = new grpc.Server();
  server.addService(langRpc.LanguageRuntimeService, {
    getRequiredPlugins: (_call: unknown, callback: grpcTypes.sendUnaryData<unknown>) => {
      const resp = new langProto.GetRequiredPluginsResponse();
      resp.setPluginsList([]);
      callback(null, resp);
    },
    getPluginInfo: (_call: unknown, callback: grpcTypes.sendUnaryData<unknown>) => {
      const resp = new pluginProto.PluginInfo();
      resp.setVersion("3.248.0");
      callback(null, resp);
    },
    run: (call: { request: RunRequest }, callback: grpcTypes.sendUnaryData<unknown>) => {
      const req = call.request;
      const info = req.getInfo();
      const programDir = info.getProgramDirectory();
      const runPath = require.resolve("@pulumi/pulumi/cmd/run", { paths: [programDir] });
      const [engineAddress, ...programArgs] = req.getArgsList();
      const args = [runPath];
      const add = (flag: string, value: string) => value && args.push(`--${flag}`, value);
      add("monitor", req.getMonitorAddress());
      add("engine", engineAddress ?? "");
      add("organization", req.getOrganization());
      add("project", req.getProject());
      add("root-directory", info.getRootDirectory());
      add("stack", req.getStack());
      add("pwd", programDir);
      if (req.getDryrun()) args.push("--dry-run");
      add("parallel", String(req.getParallel()));
      args.push(info.getEntryPoint(), ...programArgs);
      const config: Record<string, string> = {};
      for (const [k, v] of req.getConfigMap()?.entries() ?? []) {
        const i = k.indexOf(":");
        config[`${k.slice(0, i)}:config:${k.slice(i + 1)}`] = v;
      }
      const env = {
        PULUMI_CONFIG: JSON.stringify(config),
        PULUMI_CONFIG_SECRET_KEYS: JSON.stringify(req.getConfigsecretkeysList()),
        ...hostEnvironment(info.getOptions()?.toJavaScript() ?? {}),
      };
      const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
      let output = "";
      child.stdout.on("data", (d: Buffer) => (output += d.toString()));
      child.stderr.on("data", (d: Buffer) => (output += d.toString()));
      child.once("exit", (code) => {
        starts.push({ args, env, cwdArg: programDir, output, exitCode: code });
        const resp = new langProto.RunResponse();
        if (code === EXITED_AFTER_MESSAGE) resp.setBail(true);
        else if (code !== 0) resp.setError(`Program exited with non-zero exit code: ${code}`);
        callback(null, resp);
      });
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  return {
    address: `127.0.0.1:${port}`,
    starts,
    close: () => new Promise((resolve) => server.tryShutdown(() => resolve())),
  };
}

/** Where the SDK's run entry lives for a program directory (the real host's locateModule). */
export const sdkRunEntry = (programDir: string) => path.dirname(require.resolve("@pulumi/pulumi/cmd/run", { paths: [programDir] }));
