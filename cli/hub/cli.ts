import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { Command, CommanderError, Option } from "commander";
import { readStackFile } from "../../stacks/load";
import type { HubConfig } from "../../stacks/hub-config";
import { formatProblem } from "../../stacks/problems";
import { AdminClient, type Fetch, GatewayDown } from "./admin-client";
import type { Io } from "./commands";
import type { ImageOps } from "./gpu-image";
import { registerStackCommands } from "./cli-stack";
import { adminKey, defaultKeyFile, gatewayUrl, plainHttpWarning, tlsWarning } from "./connection";
import { resolveConfig } from "./decisions";
import { hubDown, type PendingVolumes, type TeardownOps, type VolumeDeleter } from "./down";
import {
  keyIdProblem,
  keysBootstrap,
  keysCreate,
  keysLimits,
  keysList,
  keysRevoke,
  keysRotate,
  limitsRequest,
  newKeyRequest,
  type KeyOptions,
} from "./keys";
import { logsCommand, logsOptionProblems, logsTarget } from "./logs";
import { HubCommandError, type StackOps } from "./ops";
import { chooseStack, stackFileProblem } from "./stack-choice";
import { renderStatus } from "./status";

/**
 * The operator's CLI, `npm run hub -- <command>`, on commander: per-command --help with examples,
 * unknown commands and options refused with a suggestion, each command's own arguments checked
 * before any tool or credential, one --stack rule (stack-choice.ts). Everything that touches
 * Pulumi, the network or a process goes through HubDeps, so tests run the real parser and
 * commands against recording stand-ins.
 *
 * Exit codes: 0 done; 1 refused (a bad argument, a missing tool or credential, a change the checks
 * or the gateway refused: nothing harmful was done); 2 an internal error (a bug: please report it);
 * 3 `hub status` found something down or unreadable; 130 interrupted.
 */
export const EXIT = { ok: 0, refused: 1, internal: 2, unhealthy: 3 } as const;

export interface HubDeps {
  readonly env: NodeJS.ProcessEnv;
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  readonly now: () => number;
  readonly projectRoot: string;
  readonly home: string;
  readonly stacksHere: () => string[];
  /** Whether a program is on the PATH (pulumi, docker, ssh). */
  readonly onPath: (program: string) => boolean;
  readonly stackOps: (stack: string) => Promise<StackOps>;
  readonly teardownOps: (stack: string) => Promise<TeardownOps>;
  readonly volumeDeleter: (token: string) => VolumeDeleter;
  readonly pendingVolumes: (stack: string) => PendingVolumes;
  readonly fetch: Fetch;
  /** Runs a program with this terminal; resolves with its exit code. */
  readonly run: (program: string, args: readonly string[]) => Promise<number>;
  /** Asks the person at the terminal; undefined without one. */
  readonly prompt: (question: string) => Promise<string | undefined>;
  /** Runs cli/<name>.ts or bench/<name>.ts (plan, simulate, smoke, grafana, bench) with these arguments. */
  readonly script: (name: string, args: readonly string[]) => Promise<number>;
  /** The commands of `gpu on` etc. that need more than this file passes (the coder probe, finetune). */
  readonly extras?: {
    readonly coderProbe?: (
      ops: StackOps,
      key: string | undefined,
    ) => (() => Promise<"gpu" | "fallback" | "down">) | undefined;
    readonly finetune?: (argv: readonly string[]) => Promise<void>;
    readonly autoscale?: (
      ops: StackOps,
      stack: string,
      adminKey: string,
      watch: boolean,
      force: boolean,
      io: Io,
    ) => Promise<void>;
    /** DigitalOcean's image API for `gpu image` (gpu-image.ts). */
    readonly imageOps?: (token: string) => ImageOps;
  };
}

/** The stack file here, resolved offline; undefined when there is none. */
export function checkoutHub(root: string, stack: string, nowMs: number): HubConfig | undefined {
  const file = path.join(root, `Pulumi.${stack}.yaml`);
  if (!existsSync(file)) return undefined;
  const read = readStackFile(readFileSync(file, "utf8"), file);
  if (!read.ok) throw new HubCommandError(read.problems.map(formatProblem).join("\n"));
  const config = Object.fromEntries(
    Object.entries(read.file.config).map(([k, v]) => [k, { value: v, secret: read.file.secretKeys.includes(k) }]),
  );
  const resolved = resolveConfig(config, {}, nowMs);
  if (!resolved.ok) throw new HubCommandError(`Pulumi.${stack}.yaml is refused:\n  ${resolved.reason}`);
  return resolved.hub;
}

export const examples = (lines: readonly string[]) =>
  `\nExamples:\n${lines.map((l) => `  $ npm run hub -- ${l}`).join("\n")}\n`;

export function buildProgram(deps: HubDeps, done: (code: number) => void): Command {
  const io: Io = { out: (line) => deps.out(`${line}\n`), now: deps.now };
  const program = new Command("hub");
  program
    .description(
      "Operate an inference hub stack: keys, status, logs, GPU, tier, teardown. Exit codes: 0 done, 1 refused, 2 internal error, 3 status found something down.",
    )
    .configureOutput({
      writeOut: deps.out,
      writeErr: deps.err,
      outputError: (text, write) => write(text.replace(/^error: /, "hub: ")),
    })
    .showSuggestionAfterError(true)
    .showHelpAfterError("(add --help for usage)")
    .exitOverride();

  const stackOption = () =>
    new Option("--stack <name>", "the stack (else $PULUMI_STACK, else the one `pulumi stack select` chose)");
  const stackOf = (flag: string | undefined, mustHaveFile = true) => {
    const here = deps.stacksHere();
    const chosen = chooseStack(flag, deps.projectRoot, here, deps.env);
    if (mustHaveFile) {
      const problem = stackFileProblem(chosen.name, here);
      if (problem)
        throw new HubCommandError(chosen.source === "--stack" ? problem : `${problem} (chosen by ${chosen.source})`);
    }
    return chosen.name;
  };
  const hubOf = (stack: string) => checkoutHub(deps.projectRoot, stack, deps.now());
  const requirePulumi = (why: string) => {
    if (!deps.onPath("pulumi"))
      throw new HubCommandError(
        `${why} needs the Pulumi CLI, which is not on the PATH: install it (https://www.pulumi.com/docs/install/), then \`pulumi login\`.`,
      );
  };
  const requireCloudToken = (hub: HubConfig | undefined, why: string) => {
    if (hub?.tier === "local") return;
    if (!deps.env.DIGITALOCEAN_TOKEN)
      throw new HubCommandError(
        `${why} changes DigitalOcean resources: export DIGITALOCEAN_TOKEN (a token with write scope). The local tier needs none.`,
      );
  };
  /** Wraps an action: its errors become exit codes; nothing is thrown past commander. */
  const act =
    <A extends unknown[]>(fn: (...args: A) => Promise<number | void>) =>
    async (...args: A) => {
      done((await fn(...args)) ?? EXIT.ok);
    };
  const warnings = (url: string) => {
    for (const w of [plainHttpWarning(url), tlsWarning(deps.env)]) if (w) deps.err(`${w}\n`);
  };
  /** The admin API of the stack's gateway: URL and key found, no Pulumi CLI or cloud token needed. */
  const admin = async (opts: { stack?: string; url?: string; keyFile?: string }) => {
    const stack = stackOf(opts.stack, false);
    const hub = deps.stacksHere().includes(stack) ? hubOf(stack) : undefined;
    const key = adminKey({ keyFile: opts.keyFile, env: deps.env, stack, home: deps.home });
    const { url } = await gatewayUrl({
      flag: opts.url,
      env: deps.env,
      hub,
      stackOutput: deps.onPath("pulumi")
        ? async () => String((await (await deps.stackOps(stack)).outputs()).baseUrl?.value ?? "") || undefined
        : undefined,
    });
    warnings(url);
    return { stack, hub, client: new AdminClient(url, key.key, deps.fetch) };
  };
  const connection = (cmd: Command) =>
    cmd
      .addOption(stackOption())
      .option("--url <url>", "the gateway (else $HUB_URL, the stack file, or the stack's baseUrl output)")
      .option(
        "--key-file <file>",
        "an admin-scope key in a file of mode 600 (else $HUB_ADMIN_KEY, else ~/.inference-hub/keys/<stack>.admin-key)",
      );

  // ---- keys ----------------------------------------------------------------------------------
  const keys = program
    .command("keys")
    .description("API keys at runtime, through the gateway's admin API (no deploy, no cloud token)");
  connection(
    keys
      .command("create")
      .description("create a key; it works at once on every gateway replica and is shown once")
      .requiredOption("--name <name>", "who or what uses the key")
      .requiredOption("--scopes <list>", "comma-separated: llm, ocr, stt, tts, embeddings, sandbox, admin")
      .option("--rate <n>", "requests per minute on each service")
      .option("--burst <n>", "bucket size")
      .option("--daily-quota <n>", "allowed requests per UTC day, every service together")
      .option("--sandbox-limits <pairs>", "the key's sandbox ceiling: wall_ms=30000,memory_bytes=... (docs/sandbox.md)")
      .option(
        "--wait <seconds>",
        "its coder requests wait up to this long for a waking GPU unless they send X-Hub-Wait (docs/gpu-wake.md)",
      )
      .option("--max-wait <seconds>", "the most its requests may wait, whatever they ask")
      .option("--save <file>", "write the key to this file (mode 600) instead of showing it")
      .option(
        "--bootstrap",
        "declare the key in the stack's apiKeys instead (the first admin key of a new stack; applied by the next deploy)",
      ),
  )
    .addHelpText(
      "after",
      examples([
        "keys create --name alice-laptop --scopes llm,stt",
        "keys create --name ci --scopes llm --rate 30 --daily-quota 5000 --save ~/.ci-key",
        "keys create --bootstrap --name admin --scopes admin --stack cpu",
      ]),
    )
    .action(
      act(
        async (
          o: KeyOptions & { stack?: string; url?: string; keyFile?: string; save?: string; bootstrap?: boolean },
        ) => {
          newKeyRequest(o);
          if (o.bootstrap) {
            const stack = stackOf(o.stack);
            requirePulumi("keys create --bootstrap (it writes the stack's apiKeys)");
            const scopes = (o.scopes ?? "").split(",").map((s) => s.trim());
            const save =
              o.save ??
              (scopes.includes("admin") && !existsSync(defaultKeyFile(stack, deps.home))
                ? defaultKeyFile(stack, deps.home)
                : undefined);
            await keysBootstrap(await deps.stackOps(stack), o, io, save);
            return;
          }
          await keysCreate((await admin(o)).client, o, io, o.save);
        },
      ),
    );
  connection(
    keys
      .command("list")
      .description("every key: id, name, scopes, limits, origin, created, last used (never a key or its hash)"),
  )
    .addHelpText(
      "after",
      examples(["keys list --stack cpu", "keys list --url https://hub.example.com --key-file ~/.hub-admin"]),
    )
    .action(
      act(async (o: { stack?: string; url?: string; keyFile?: string }) => keysList((await admin(o)).client, io)),
    );
  connection(
    keys
      .command("revoke")
      .argument("<id>", "the key's id (keys list)")
      .description("refuse a key from now on, on every replica, within a second"),
  )
    .addHelpText("after", examples(["keys revoke k_3f9a2c1b"]))
    .action(
      act(async (id: string, o: { stack?: string; url?: string; keyFile?: string }) => {
        const bad = keyIdProblem(id);
        if (bad) throw new HubCommandError(bad);
        await keysRevoke((await admin(o)).client, id, io);
      }),
    );
  connection(
    keys
      .command("rotate")
      .argument("<id>", "the key to replace")
      .option("--save <file>", "write the new key to this file (mode 600)")
      .description("a new key with the same name, scopes and limits; the old one is revoked"),
  )
    .addHelpText("after", examples(["keys rotate k_3f9a2c1b --save ~/.hub-key"]))
    .action(
      act(async (id: string, o: { stack?: string; url?: string; keyFile?: string; save?: string }) => {
        const bad = keyIdProblem(id);
        if (bad) throw new HubCommandError(bad);
        await keysRotate((await admin(o)).client, id, io, o.save);
      }),
    );
  connection(
    keys
      .command("limits")
      .argument("<id>", "the key")
      .option("--rate <n|none>", "requests per minute on each service (none: the stack's default)")
      .option("--burst <n|none>", "bucket size")
      .option("--daily-quota <n|none>", "allowed requests per UTC day")
      .description("change a key's limits at runtime (a declared key's too; a deploy does not undo it)"),
  )
    .addHelpText(
      "after",
      examples(["keys limits k_3f9a2c1b --rate 60 --daily-quota 10000", "keys limits k_3f9a2c1b --daily-quota none"]),
    )
    .action(
      act(async (id: string, o: KeyOptions & { stack?: string; url?: string; keyFile?: string }) => {
        const bad = keyIdProblem(id);
        if (bad) throw new HubCommandError(bad);
        limitsRequest(o);
        await keysLimits((await admin(o)).client, id, o, io);
      }),
    );

  // ---- status, url, logs -----------------------------------------------------------------------
  connection(
    program
      .command("status")
      .option("--json", "the gateway's report as JSON")
      .description(
        "what is deployed and live: backends, GPU nodes, controller, spend, TLS, keys; drift against this checkout",
      ),
  )
    .addHelpText(
      "after",
      `${examples(["status --stack hybrid", "status --url https://hub.example.com --json"])}\nExit 3 when a backend, the controller, the key store or the certificate needs attention.\n`,
    )
    .action(
      act(async (o: { stack?: string; url?: string; keyFile?: string; json?: boolean }) => {
        const { stack, hub, client } = await admin(o);
        let report: Record<string, unknown>;
        try {
          report = await client.status();
        } catch (error) {
          if (!(error instanceof GatewayDown)) throw error;
          io.out(`stack ${stack}: the gateway is NOT ANSWERING: ${error.message}`);
          io.out(
            `  ${hub?.tier === "k8s" ? "on k8s" : "on a droplet tier"}: hub logs gateway --stack ${stack}; hub logs gatekeeper --stack ${stack}`,
          );
          return EXIT.unhealthy;
        }
        if (o.json) {
          deps.out(`${JSON.stringify(report, null, 2)}\n`);
          return;
        }
        const rendered = renderStatus(stack, report, hub);
        for (const line of rendered.lines) io.out(line);
        return rendered.healthy ? EXIT.ok : EXIT.unhealthy;
      }),
    );
  program
    .command("url")
    .addOption(stackOption())
    .description("the stack's API base URL (what clients set as base_url)")
    .addHelpText("after", examples(["url --stack cpu"]))
    .action(
      act(async (o: { stack?: string }) => {
        const stack = stackOf(o.stack);
        const hub = hubOf(stack);
        const { url } = await gatewayUrl({
          env: {},
          hub,
          stackOutput: deps.onPath("pulumi")
            ? async () => String((await (await deps.stackOps(stack)).outputs()).baseUrl?.value ?? "") || undefined
            : undefined,
        });
        io.out(url);
      }),
    );
  program
    .command("logs")
    .argument("<service>", "gatekeeper, controller, gateway, coder, coder-fallback, stt, tts, ... (hub logs --help)")
    .addOption(stackOption())
    .option("--since <when>", "30s, 10m, 2h, 1d, or 2026-12-07T10:00:00Z")
    .option("--follow", "keep printing new lines")
    .option("--tail <n>", "last n lines (default 200; all with --since)")
    .option("--node <node>", "for a GPU service: which node (gpu-0, gpu-1, ...)")
    .description(
      "a service's log: over the deploy's pinned-host-key SSH on droplets, docker logs on the local tier, kubectl logs on k8s",
    )
    .addHelpText(
      "after",
      examples(["logs gatekeeper --since 10m", "logs coder --node gpu-1 --follow", "logs controller --tail 50"]),
    )
    .action(
      act(
        async (
          service: string,
          o: { stack?: string; since?: string; follow?: boolean; tail?: string; node?: string },
        ) => {
          const problems = logsOptionProblems(o);
          if (problems.length) throw new HubCommandError(problems.join("; "));
          const stack = stackOf(o.stack);
          const hub = hubOf(stack)!;
          const target = logsTarget(hub, service, o.node);
          let outputs = {};
          if (hub.tier === "local") {
            if (!deps.onPath("docker"))
              throw new HubCommandError("hub logs on the local tier runs `docker logs`, and docker is not on the PATH");
          } else if (hub.tier === "k8s") {
            if (!deps.onPath("kubectl"))
              throw new HubCommandError(
                "hub logs on the k8s tier runs `kubectl logs`, and kubectl is not on the PATH (https://kubernetes.io/docs/tasks/tools/)",
              );
          } else {
            requirePulumi("hub logs (it reads the nodes' addresses and pinned SSH options from the stack's outputs)");
            if (!deps.onPath("ssh")) throw new HubCommandError("hub logs needs ssh (OpenSSH client) on the PATH");
            const raw = await (await deps.stackOps(stack)).outputs();
            outputs = { nodeAddresses: raw.nodeAddresses?.value, nodeSshOptions: raw.nodeSshOptions?.value };
          }
          const command = logsCommand(hub, target, o, outputs);
          const code = await deps.run(command.program, command.args);
          const hint =
            hub.tier === "local"
              ? " (is the local stack up? hub status)"
              : hub.tier === "k8s"
                ? ` (KUBECONFIG must point at the cluster: pulumi stack output --show-secrets kubeconfig --stack ${stack} > kubeconfig && chmod 600 kubeconfig && export KUBECONFIG=$PWD/kubeconfig)`
                : "";
          if (code !== 0) throw new HubCommandError(`${command.program} exited with ${code}${hint}`);
        },
      ),
    );

  // ---- down ------------------------------------------------------------------------------------
  program
    .command("down")
    .addOption(stackOption())
    .option(
      "--delete-volumes",
      "also delete the volumes (the model cache: weights download again next time); asks you to type the stack name",
    )
    .option("--confirm <stack>", "the stack name, typed ahead (for scripts)")
    .option("--yes", "do not ask before tearing down (volumes are kept)")
    .description("destroy everything but the volumes, and say what they cost while kept; a second run does nothing")
    .addHelpText(
      "after",
      examples([
        "down --stack hybrid",
        "down --stack hybrid --delete-volumes",
        "down --stack ci --delete-volumes --confirm ci",
      ]),
    )
    .action(
      act(async (o: { stack?: string; deleteVolumes?: boolean; confirm?: string; yes?: boolean }) => {
        const stack = stackOf(o.stack);
        const hub = hubOf(stack);
        if (o.confirm !== undefined && !o.deleteVolumes)
          throw new HubCommandError("--confirm goes with --delete-volumes");
        requirePulumi("hub down");
        requireCloudToken(hub, "hub down");
        let typed = o.confirm;
        if (o.deleteVolumes && typed === undefined)
          typed = (
            await deps.prompt(
              `Delete stack ${stack} AND its volumes (model cache, CPU cache, audit spool) for good? Type the stack name: `,
            )
          )?.trim();
        else if (!o.deleteVolumes && !o.yes) {
          const answer = await deps.prompt(`Tear down stack ${stack}? Its volumes are kept. [y/N] `);
          if (answer === undefined)
            throw new HubCommandError(
              "hub down asks before it destroys anything; pass --yes to go ahead without a terminal",
            );
          if (!/^y(es)?$/i.test(answer.trim())) {
            io.out("nothing was changed.");
            return;
          }
        }
        const ops = await deps.teardownOps(stack);
        await hubDown(
          ops,
          io,
          { deleteVolumes: o.deleteVolumes === true, typedStackName: typed },
          hub?.tier === "local"
            ? undefined
            : { volumes: deps.volumeDeleter(deps.env.DIGITALOCEAN_TOKEN ?? ""), pending: deps.pendingVolumes(stack) },
        );
        if (hub?.tier === "local")
          io.out(
            `the local tier's files stay in ~/.inference-hub/${stack} (model downloads, audit spool, runtime keys): free; delete the directory yourself if you want them gone.`,
          );
      }),
    );

  registerStackCommands(program, { deps, io, stackOption, stackOf, hubOf, requirePulumi, requireCloudToken, act });
  return program;
}

/** Parses and runs one invocation; resolves with the exit code (never throws). */
export async function runHub(argv: readonly string[], deps: HubDeps): Promise<number> {
  let code: number = EXIT.ok;
  const program = buildProgram(deps, (c) => (code = c));
  if (argv.length === 0) {
    deps.out(program.helpInformation());
    return EXIT.ok;
  }
  // `hub destroy --help` must say destroy is unknown, not print the general help and exit 0.
  let args = [...argv];
  let level: Command = program;
  for (const token of argv) {
    if (token.startsWith("-")) continue;
    if (level.commands.length === 0) break;
    const next = level.commands.find((c) => c.name() === token || c.aliases().includes(token));
    if (!next) {
      args = argv.filter((a) => a !== "--help" && a !== "-h");
      break;
    }
    level = next;
  }
  try {
    await program.parseAsync(args, { from: "user" });
    return code;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT.ok : EXIT.refused;
    if (error instanceof HubCommandError) {
      deps.err(`hub: ${error.message}\n`);
      return EXIT.refused;
    }
    deps.err(`hub: internal error: ${(error as Error).message ?? String(error)}\n`);
    return EXIT.internal;
  }
}
