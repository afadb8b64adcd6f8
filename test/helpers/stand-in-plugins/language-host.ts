import { spawn } from "node:child_process";
import { appendFileSync } from "node:fs";
import * as path from "node:path";
import type * as grpcTypes from "@grpc/grpc-js";

/**
 * STAND-IN for the nodejs language host plugin, `pulumi-language-nodejs` (the Go module proxy does
 * not serve it), for the real CLI to launch from PATH as it launches the real one: it prints its
 * port, and for each RunRequest starts the program exactly the way the real host's execRuntime
 * does in pulumi/pulumi v3.248.0 (sdk/nodejs/cmd/pulumi-language-nodejs/main.go, read 2026-12-07):
 *
 * - `node <@pulumi/pulumi/cmd/run, resolved from the program directory> --monitor <addr>
 *   --engine <the address the CLI launched the host with> --organization <org> --project <p>
 *   --root-directory <root> --stack <s> --pwd <program directory> [--dry-run] --parallel <n>
 *   <entry point> <args...>` (constructArguments);
 * - environment: PULUMI_CONFIG (keys as `<ns>:config:<name>`, constructConfig),
 *   PULUMI_CONFIG_SECRET_KEYS, PULUMI_NODEJS_TYPESCRIPT=true when Pulumi.yaml's
 *   `runtime.options.typescript` is true or unset, PULUMI_NODEJS_TSCONFIG_PATH =
 *   `runtime.options.tsconfig` when set (parseOptions), from the options the CLI sends;
 * - exit code 32 means the program already reported its error (bail).
 *
 * So the SDK's own run entry compiles the program with its ts-node, in the program directory,
 * with whatever tsconfig its lookup finds. Left out: the real host's monitor proxy and sync-invoke
 * pipes (the program reaches the engine's monitor directly; it makes no synchronous invokes), its
 * SDK version check, dependency installation, debugger and bun support. Each start is appended to
 * $STAND_IN_LANGUAGE_HOST_LOG as one JSON line (arguments, the variables it set, exit code).
 */

// The SDK's own gRPC library and generated code (CommonJS, untyped): the copy the run entry uses.
/* eslint-disable @typescript-eslint/no-require-imports */
const grpc = require(
  require.resolve("@grpc/grpc-js", { paths: [path.dirname(require.resolve("@pulumi/pulumi"))] }),
) as typeof grpcTypes;
const langRpc = require("@pulumi/pulumi/proto/language_grpc_pb") as {
  LanguageRuntimeService: grpcTypes.ServiceDefinition;
};
type Message = Record<string, (...args: unknown[]) => unknown>;
const langProto = require("@pulumi/pulumi/proto/language_pb") as Record<string, new () => Message>;
const pluginProto = require("@pulumi/pulumi/proto/plugin_pb") as Record<string, new () => Message>;
/* eslint-enable @typescript-eslint/no-require-imports */

/** The exit code the SDK's run entry uses after it has shown the user an actionable message. */
const EXITED_AFTER_MESSAGE = 32;

interface RunRequest {
  getInfo(): {
    getRootDirectory(): string;
    getProgramDirectory(): string;
    getEntryPoint(): string;
    getOptions(): { toJavaScript(): Record<string, unknown> } | undefined;
  };
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

/** One program start, as logged: for tests to check what was passed. */
export interface ProgramStart {
  readonly args: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly options: Readonly<Record<string, unknown>>;
  readonly exitCode: number | null;
}

/** What main.go parseOptions + execRuntime put in the program's environment, from Pulumi.yaml's runtime options. */
export function hostEnvironment(options: Record<string, unknown>): Record<string, string> {
  const env: Record<string, string> = {};
  if (options.typescript === undefined || options.typescript === true) env.PULUMI_NODEJS_TYPESCRIPT = "true";
  if (typeof options.tsconfig === "string" && options.tsconfig !== "")
    env.PULUMI_NODEJS_TSCONFIG_PATH = options.tsconfig;
  return env;
}

/** The plugin's positional argument (after Go-style flags such as -tracing=x): the engine's address. */
function engineAddressFrom(argv: readonly string[]): string {
  for (let i = 0; i < argv.length; i++) {
    if (!argv[i].startsWith("-")) return argv[i];
    if (!argv[i].includes("=") && ["-tracing", "--tracing", "-runtime", "--runtime"].includes(argv[i])) i++;
  }
  return "";
}

function serve(engineAddress: string): void {
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
      const options = info.getOptions()?.toJavaScript() ?? {};
      const runPath = require.resolve("@pulumi/pulumi/cmd/run", { paths: [programDir] });
      const args = [runPath];
      const add = (flag: string, value: string) => value && args.push(`--${flag}`, value);
      add("monitor", req.getMonitorAddress());
      add("engine", engineAddress);
      add("organization", req.getOrganization());
      add("project", req.getProject());
      add("root-directory", info.getRootDirectory());
      add("stack", req.getStack());
      add("pwd", programDir);
      if (req.getDryrun()) args.push("--dry-run");
      add("parallel", String(req.getParallel()));
      args.push(info.getEntryPoint(), ...req.getArgsList());
      const config: Record<string, string> = {};
      for (const [k, v] of req.getConfigMap()?.entries() ?? []) {
        const i = k.indexOf(":");
        config[`${k.slice(0, i)}:config:${k.slice(i + 1)}`] = v;
      }
      const env = {
        PULUMI_CONFIG: JSON.stringify(config),
        PULUMI_CONFIG_SECRET_KEYS: JSON.stringify(req.getConfigsecretkeysList()),
        ...hostEnvironment(options),
      };
      // The program's output goes where the real host sends it: this process's stdout and stderr, which the CLI reads.
      const child = spawn(process.execPath, args, {
        env: { ...process.env, ...env },
        stdio: ["ignore", "inherit", "inherit"],
      });
      child.once("exit", (code) => {
        const log = process.env.STAND_IN_LANGUAGE_HOST_LOG;
        const shown = { ...env, PULUMI_CONFIG: "(not logged)" };
        if (log)
          appendFileSync(
            log,
            `${JSON.stringify({ args, env: shown, options, exitCode: code } satisfies ProgramStart)}\n`,
          );
        const resp = new langProto.RunResponse();
        if (code === EXITED_AFTER_MESSAGE) resp.setBail(true);
        else if (code !== 0) resp.setError(`Program exited with non-zero exit code: ${code}`);
        callback(null, resp);
      });
    },
  });
  server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err) {
      process.stderr.write(`stand-in language host: ${err.message}\n`);
      process.exit(1);
    }
    process.stdout.write(`${port}\n`);
  });
}

if (require.main === module) serve(engineAddressFrom(process.argv.slice(2)));
