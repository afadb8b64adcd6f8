import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { Command, CommanderError, Option } from "commander";
import { readStackFile } from "../../../stacks/load";
import type { HubConfig } from "../../../stacks/hub-config";
import { formatProblem } from "../../../stacks/problems";
import { AdminClient, type Fetch, GatewayDown } from "./admin-client";
import { writeFileSync } from "node:fs";
import { renderStagesFile } from "../simulate/stages";
import { gpuCommand, keepDeployed, scaleCommand, tierCommand, type Io } from "./commands";
import { buildGpuImage, gpuImageStatus, type ImageOps } from "./gpu-image";
import { adminKey, defaultKeyFile, gatewayUrl, plainHttpWarning, tlsWarning } from "./connection";
import { resolveConfig } from "./decisions";
import { hubDown, type PendingVolumes, type TeardownOps, type VolumeDeleter } from "./down";
import { keyIdProblem, keysBootstrap, keysCreate, keysLimits, keysList, keysRevoke, keysRotate, limitsRequest, newKeyRequest, type KeyOptions } from "./keys";
import { logsCommand, logsOptionProblems, logsTarget } from "./logs";
import { HubCommandError, type StackOps } from "./ops";
import { parsePinDuration, requestProblem, type ScaleRequest } from "./scale";
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
  /** Runs scripts/<name>.ts (plan, simulate, smoke, grafana, bench) with these arguments. */
  readonly script: (name: string, args: readonly string[]) => Promise<number>;
  /** The commands of `gpu on` etc. that need more than this file passes (the coder probe, finetune). */
  readonly extras?: {
    readonly coderProbe?: (ops: StackOps, key: string | undefined) => (() => Promise<"gpu" | "fallback" | "down">) | undefined;
    readonly finetune?: (argv: readonly string[]) => Promise<void>;
    readonly autoscale?: (ops: StackOps, stack: string, adminKey: string, watch: boolean, force: boolean, io: Io) => Promise<void>;
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
  const config = Object.fromEntries(Object.entries(read.file.config).map(([k, v]) => [k, { value: v, secret: read.file.secretKeys.includes(k) }]));
  const resolved = resolveConfig(config, {}, nowMs);
  if (!resolved.ok) throw new HubCommandError(`Pulumi.${stack}.yaml is refused:\n  ${resolved.reason}`);
  return resolved.hub;
}

const examples = (lines: readonly string[]) => `\nExamples:\n${lines.map((l) => `  $ npm run hub -- ${l}`).join("\n")}\n`;

export function buildProgram(deps: HubDeps, done: (code: number) => void): Command {
  const io: Io = { out: (line) => deps.out(`${line}\n`), now: deps.now };
  const program = new Command("hub");
  program
    .description("Operate an inference hub stack: keys, status, logs, GPU, tier, teardown. Exit codes: 0 done, 1 refused, 2 internal error, 3 status found something down.")
    .configureOutput({ writeOut: deps.out, writeErr: deps.err, outputError: (text, write) => write(text.replace(/^error: /, "hub: ")) })
    .showSuggestionAfterError(true)
    .showHelpAfterError("(add --help for usage)")
    .exitOverride();

  const stackOption = () => new Option("--stack <name>", "the stack (else $PULUMI_STACK, else the one `pulumi stack select` chose)");
  const stackOf = (flag: string | undefined, mustHaveFile = true) => {
    const here = deps.stacksHere();
    const chosen = chooseStack(flag, deps.projectRoot, here, deps.env);
    if (mustHaveFile) {
      const problem = stackFileProblem(chosen.name, here);
      if (problem) throw new HubCommandError(chosen.source === "--stack" ? problem : `${problem} (chosen by ${chosen.source})`);
    }
    return chosen.name;
  };
  const hubOf = (stack: string) => checkoutHub(deps.projectRoot, stack, deps.now());
  const requirePulumi = (why: string) => {
    if (!deps.onPath("pulumi")) throw new HubCommandError(`${why} needs the Pulumi CLI, which is not on the PATH: install it (https://www.pulumi.com/docs/install/), then \`pulumi login\`.`);
  };
  const requireCloudToken = (hub: HubConfig | undefined, why: string) => {
    if (hub?.tier === "local") return;
    if (!deps.env.DIGITALOCEAN_TOKEN) throw new HubCommandError(`${why} changes DigitalOcean resources: export DIGITALOCEAN_TOKEN (a token with write scope). The local tier needs none.`);
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
    const { url } = await gatewayUrl({ flag: opts.url, env: deps.env, hub, stackOutput: deps.onPath("pulumi") ? async () => String((await (await deps.stackOps(stack)).outputs()).baseUrl?.value ?? "") || undefined : undefined });
    warnings(url);
    return { stack, hub, client: new AdminClient(url, key.key, deps.fetch) };
  };
  const connection = (cmd: Command) => cmd.addOption(stackOption()).option("--url <url>", "the gateway (else $HUB_URL, the stack file, or the stack's baseUrl output)").option("--key-file <file>", "an admin-scope key in a file of mode 600 (else $HUB_ADMIN_KEY, else ~/.inference-hub/keys/<stack>.admin-key)");

  // ---- keys ----------------------------------------------------------------------------------
  const keys = program.command("keys").description("API keys at runtime, through the gateway's admin API (no deploy, no cloud token)");
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
      .option("--wait <seconds>", "its coder requests wait up to this long for a waking GPU unless they send X-Hub-Wait (docs/gpu-wake.md)")
      .option("--max-wait <seconds>", "the most its requests may wait, whatever they ask")
      .option("--save <file>", "write the key to this file (mode 600) instead of showing it")
      .option("--bootstrap", "declare the key in the stack's apiKeys instead (the first admin key of a new stack; applied by the next deploy)"),
  )
    .addHelpText("after", examples(["keys create --name alice-laptop --scopes llm,stt", "keys create --name ci --scopes llm --rate 30 --daily-quota 5000 --save ~/.ci-key", "keys create --bootstrap --name admin --scopes admin --stack cpu"]))
    .action(
      act(async (o: KeyOptions & { stack?: string; url?: string; keyFile?: string; save?: string; bootstrap?: boolean }) => {
        newKeyRequest(o);
        if (o.bootstrap) {
          const stack = stackOf(o.stack);
          requirePulumi("keys create --bootstrap (it writes the stack's apiKeys)");
          const scopes = (o.scopes ?? "").split(",").map((s) => s.trim());
          const save = o.save ?? (scopes.includes("admin") && !existsSync(defaultKeyFile(stack, deps.home)) ? defaultKeyFile(stack, deps.home) : undefined);
          await keysBootstrap(await deps.stackOps(stack), o, io, save);
          return;
        }
        await keysCreate((await admin(o)).client, o, io, o.save);
      }),
    );
  connection(keys.command("list").description("every key: id, name, scopes, limits, origin, created, last used (never a key or its hash)"))
    .addHelpText("after", examples(["keys list --stack cpu", "keys list --url https://hub.example.com --key-file ~/.hub-admin"]))
    .action(act(async (o: { stack?: string; url?: string; keyFile?: string }) => keysList((await admin(o)).client, io)));
  connection(keys.command("revoke").argument("<id>", "the key's id (keys list)").description("refuse a key from now on, on every replica, within a second"))
    .addHelpText("after", examples(["keys revoke k_3f9a2c1b"]))
    .action(
      act(async (id: string, o: { stack?: string; url?: string; keyFile?: string }) => {
        const bad = keyIdProblem(id);
        if (bad) throw new HubCommandError(bad);
        await keysRevoke((await admin(o)).client, id, io);
      }),
    );
  connection(keys.command("rotate").argument("<id>", "the key to replace").option("--save <file>", "write the new key to this file (mode 600)").description("a new key with the same name, scopes and limits; the old one is revoked"))
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
    .addHelpText("after", examples(["keys limits k_3f9a2c1b --rate 60 --daily-quota 10000", "keys limits k_3f9a2c1b --daily-quota none"]))
    .action(
      act(async (id: string, o: KeyOptions & { stack?: string; url?: string; keyFile?: string }) => {
        const bad = keyIdProblem(id);
        if (bad) throw new HubCommandError(bad);
        limitsRequest(o);
        await keysLimits((await admin(o)).client, id, o, io);
      }),
    );

  // ---- status, url, logs -----------------------------------------------------------------------
  connection(program.command("status").option("--json", "the gateway's report as JSON").description("what is deployed and live: backends, GPU nodes, controller, spend, TLS, keys; drift against this checkout"))
    .addHelpText("after", examples(["status --stack hybrid", "status --url https://hub.example.com --json"]) + "\nExit 3 when a backend, the controller, the key store or the certificate needs attention.\n")
    .action(
      act(async (o: { stack?: string; url?: string; keyFile?: string; json?: boolean }) => {
        const { stack, hub, client } = await admin(o);
        let report: Record<string, unknown>;
        try {
          report = await client.status();
        } catch (error) {
          if (!(error instanceof GatewayDown)) throw error;
          io.out(`stack ${stack}: the gateway is NOT ANSWERING: ${error.message}`);
          io.out(`  on a droplet tier: hub logs gateway --stack ${stack}; hub logs gatekeeper --stack ${stack}`);
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
        const { url } = await gatewayUrl({ env: {}, hub, stackOutput: deps.onPath("pulumi") ? async () => String((await (await deps.stackOps(stack)).outputs()).baseUrl?.value ?? "") || undefined : undefined });
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
    .description("a service's log: over the deploy's pinned-host-key SSH on droplets, docker logs on the local tier")
    .addHelpText("after", examples(["logs gatekeeper --since 10m", "logs coder --node gpu-1 --follow", "logs controller --tail 50"]))
    .action(
      act(async (service: string, o: { stack?: string; since?: string; follow?: boolean; tail?: string; node?: string }) => {
        const problems = logsOptionProblems(o);
        if (problems.length) throw new HubCommandError(problems.join("; "));
        const stack = stackOf(o.stack);
        const hub = hubOf(stack)!;
        const target = logsTarget(hub, service, o.node);
        let outputs = {};
        if (hub.tier === "local") {
          if (!deps.onPath("docker")) throw new HubCommandError("hub logs on the local tier runs `docker logs`, and docker is not on the PATH");
        } else {
          requirePulumi("hub logs (it reads the nodes' addresses and pinned SSH options from the stack's outputs)");
          if (!deps.onPath("ssh")) throw new HubCommandError("hub logs needs ssh (OpenSSH client) on the PATH");
          const raw = await (await deps.stackOps(stack)).outputs();
          outputs = { nodeAddresses: raw.nodeAddresses?.value, nodeSshOptions: raw.nodeSshOptions?.value };
        }
        const command = logsCommand(hub, target, o, outputs);
        const code = await deps.run(command.program, command.args);
        if (code !== 0) throw new HubCommandError(`${command.program} exited with ${code}${hub.tier === "local" ? " (is the local stack up? hub status)" : ""}`);
      }),
    );

  // ---- down ------------------------------------------------------------------------------------
  program
    .command("down")
    .addOption(stackOption())
    .option("--delete-volumes", "also delete the volumes (the model cache: weights download again next time); asks you to type the stack name")
    .option("--confirm <stack>", "the stack name, typed ahead (for scripts)")
    .option("--yes", "do not ask before tearing down (volumes are kept)")
    .description("destroy everything but the volumes, and say what they cost while kept; a second run does nothing")
    .addHelpText("after", examples(["down --stack hybrid", "down --stack hybrid --delete-volumes", "down --stack ci --delete-volumes --confirm ci"]))
    .action(
      act(async (o: { stack?: string; deleteVolumes?: boolean; confirm?: string; yes?: boolean }) => {
        const stack = stackOf(o.stack);
        const hub = hubOf(stack);
        if (o.confirm !== undefined && !o.deleteVolumes) throw new HubCommandError("--confirm goes with --delete-volumes");
        requirePulumi("hub down");
        requireCloudToken(hub, "hub down");
        let typed = o.confirm;
        if (o.deleteVolumes && typed === undefined) typed = (await deps.prompt(`Delete stack ${stack} AND its volumes (model cache, CPU cache, audit spool) for good? Type the stack name: `))?.trim();
        else if (!o.deleteVolumes && !o.yes) {
          const answer = await deps.prompt(`Tear down stack ${stack}? Its volumes are kept. [y/N] `);
          if (answer === undefined) throw new HubCommandError("hub down asks before it destroys anything; pass --yes to go ahead without a terminal");
          if (!/^y(es)?$/i.test(answer.trim())) {
            io.out("nothing was changed.");
            return;
          }
        }
        const ops = await deps.teardownOps(stack);
        await hubDown(ops, io, { deleteVolumes: o.deleteVolumes === true, typedStackName: typed }, hub?.tier === "local" ? undefined : { volumes: deps.volumeDeleter(deps.env.DIGITALOCEAN_TOKEN ?? ""), pending: deps.pendingVolumes(stack) });
        if (hub?.tier === "local") io.out(`the local tier's files stay in ~/.inference-hub/${stack} (model downloads, audit spool, runtime keys): free; delete the directory yourself if you want them gone.`);
      }),
    );

  // ---- gpu, tier, autoscale (Pulumi + the cloud) -----------------------------------------------
  const gpu = program.command("gpu").description("the GPU: on, off, pinned, scaled, synced to gpuWindows");
  /** What the stack file already settles, before any tool: the tier has the GPU the command moves. */
  const gpuTier = (stack: string, onDemand: boolean) => {
    const tier = hubOf(stack)?.tier;
    if (tier === undefined) return;
    if (tier === "cpu" || tier === "local") throw new HubCommandError(`the ${tier} tier runs no GPU (Pulumi.${stack}.yaml says tier ${tier}). Switch tiers with: npm run hub -- tier hybrid --stack ${stack}`);
    if (onDemand && tier !== "hybrid") throw new HubCommandError(`the ${tier} tier's GPU is always on (Pulumi.${stack}.yaml); only hybrid turns it on and off. Scale it with gpu scale, or switch: npm run hub -- tier hybrid --stack ${stack}`);
  };
  const pulumiOps = async (stack: string, why: string) => {
    const hub = hubOf(stack);
    requirePulumi(why);
    requireCloudToken(hub, why);
    return deps.stackOps(stack);
  };
  for (const state of ["on", "off"] as const) {
    gpu
      .command(state)
      .addOption(stackOption())
      .option("--for <duration>", "pin it there for 8h, 90m, 1d, 2h30m: the autoscaler and the windows leave it until then")
      .option("--key <key>", state === "on" ? "an API key to wait for the coder through the gateway (default $HUB_API_KEY)" : "unused")
      .description(`turn the hybrid tier's GPU ${state}`)
      .addHelpText("after", examples([`gpu ${state} --stack hybrid`, `gpu ${state} --stack hybrid --for 8h`, ...(state === "on" ? ["gpu on --stack hybrid --stages-out wake.json   # then: npm run simulate -- --stages wake.json ..."] : [])]));
    if (state === "on") gpu.commands.at(-1)!.option("--stages-out <file>", "write the wake's stages as timed, for npm run simulate -- --stages FILE");
    gpu.commands
      .at(-1)!
      .action(
        act(async (o: { stack?: string; for?: string; key?: string; stagesOut?: string }) => {
          let pinMs: number | undefined;
          if (o.for !== undefined) {
            const parsed = parsePinDuration(o.for);
            if (!parsed.ok) throw new HubCommandError(parsed.reason);
            pinMs = parsed.ms;
          }
          const stack = stackOf(o.stack);
          gpuTier(stack, true);
          const ops = await pulumiOps(stack, `gpu ${state}`);
          const stages = await gpuCommand(ops, state, io, state === "on" ? deps.extras?.coderProbe?.(ops, o.key ?? deps.env.HUB_API_KEY) : undefined, undefined, { pinMs });
          if (o.stagesOut) {
            if (!stages?.length) throw new HubCommandError("--stages-out: nothing was timed (the GPU was on already, or the up changed nothing)");
            writeFileSync(o.stagesOut, renderStagesFile("npm run hub -- gpu on", new Date(deps.now()), stages, stack));
            io.out(`stages written to ${o.stagesOut}: npm run simulate -- --stages ${o.stagesOut} ...`);
          }
        }),
      );
  }
  const image = gpu.command("image").description("the baked GPU image: build it, or see which image GPU nodes boot (docs/gpu-wake.md)");
  image
    .command("build")
    .addOption(stackOption())
    .option("--keep-on-failure", "keep the build droplet when a step fails, to look into it")
    .description("bake the GPU image: a short-lived GPU droplet sets itself up, is snapshotted and destroyed; the stack then boots it (an existing one is reused)")
    .addHelpText("after", examples(["gpu image build --stack hybrid"]))
    .action(
      act(async (o: { stack?: string; keepOnFailure?: boolean }) => {
        const stack = stackOf(o.stack);
        gpuTier(stack, false);
        const ops = await pulumiOps(stack, "gpu image build");
        await buildGpuImage(ops, deps.extras!.imageOps!(deps.env.DIGITALOCEAN_TOKEN ?? ""), io, { keepOnFailure: o.keepOnFailure === true });
      }),
    );
  image
    .command("status")
    .addOption(stackOption())
    .description("which image GPU nodes boot, and whether the current one is built")
    .addHelpText("after", examples(["gpu image status --stack hybrid"]))
    .action(
      act(async (o: { stack?: string }) => {
        const stack = stackOf(o.stack);
        gpuTier(stack, false);
        const ops = await pulumiOps(stack, "gpu image status");
        await gpuImageStatus(ops, deps.extras!.imageOps!(deps.env.DIGITALOCEAN_TOKEN ?? ""), io);
      }),
    );
  for (const [name, what] of [["status", "the GPU as this checkout's config says, its pin, burn and projected month"], ["sync", "follow gpuWindows: on inside a window, off outside (what the schedule runs)"], ["unpin", "remove the pin; the autoscaler decides again"], ["keep", "set this checkout's GPU count and pin to what the stack runs (pipelines)"]] as const) {
    gpu
      .command(name)
      .addOption(stackOption())
      .description(what)
      .addHelpText("after", examples([`gpu ${name} --stack hybrid`]))
      .action(
        act(async (o: { stack?: string }) => {
          const stack = stackOf(o.stack);
          if (name === "sync" || name === "unpin") gpuTier(stack, true);
          // status only reads the stack's config: no cloud token.
          const ops = name === "status" ? (requirePulumi("gpu status"), await deps.stackOps(stack)) : await pulumiOps(stack, `gpu ${name}`);
          if (name === "keep") await keepDeployed(ops, io);
          else await gpuCommand(ops, name, io);
        }),
      );
  }
  gpu
    .command("scale")
    .argument("<nodes>", "the GPU node count (gpuMinNodes..gpuMaxNodes)")
    .addOption(stackOption())
    .option("--reason <words>", "why (goes into the log and Pulumi's update message)")
    .option("--decision-id <id>", "the controller's decision id")
    .option("--force", "override an active pin (and remove it)")
    .description("set the GPU node count: what the autoscale workflow runs")
    .addHelpText("after", examples(["gpu scale 2 --stack gpu --reason queue-depth", "gpu scale 0 --stack hybrid --force"]))
    .action(
      act(async (nodes: string, o: { stack?: string; reason?: string; decisionId?: string; force?: boolean }) => {
        // Digits only: parseInt would take "2x" for 2, Number would take "" or "1e1".
        if (!/^\d{1,3}$/.test(nodes)) throw new HubCommandError(`gpu scale takes one node count (a whole number such as 0, 1 or 2), not "${nodes}"`);
        const request: ScaleRequest = { nodes: Number(nodes), reason: o.reason, decisionId: o.decisionId, force: o.force === true };
        const bad = requestProblem(request);
        if (bad) throw new HubCommandError(bad);
        const stack = stackOf(o.stack);
        gpuTier(stack, false);
        await scaleCommand(await pulumiOps(stack, "gpu scale"), request, io);
      }),
    );
  program
    .command("tier")
    .argument("<tier>", "cpu, gpu, hybrid or multigpu")
    .addOption(stackOption())
    .description("move the stack to another tier (region and model cache stay)")
    .addHelpText("after", examples(["tier hybrid --stack cpu"]))
    .action(
      act(async (tier: string, o: { stack?: string }) => {
        const tiers = ["cpu", "gpu", "hybrid", "multigpu", "local"];
        if (!tiers.includes(tier)) throw new HubCommandError(`unknown tier "${tier}"; tiers: ${tiers.join(", ")}`);
        await tierCommand(await pulumiOps(stackOf(o.stack), "tier"), tier, io);
      }),
    );
  program
    .command("autoscale")
    .addOption(stackOption())
    .option("--watch", "decide every 15 s until interrupted")
    .option("--force", "act even though the controller on the node acts itself")
    .option("--key <key>", "an admin-scope key for the gateway's admin routes (default $HUB_ADMIN_KEY)")
    .description("run the autoscaler's decision here and apply it through preview + up")
    .addHelpText("after", examples(["autoscale --stack hybrid", "autoscale --stack hybrid --watch"]))
    .action(
      act(async (o: { stack?: string; watch?: boolean; force?: boolean; key?: string }) => {
        const stack = stackOf(o.stack);
        const key = o.key ?? deps.env.HUB_ADMIN_KEY;
        if (!key) throw new HubCommandError("autoscale reads the gateway's admin routes: pass --key <an admin-scope key> or set HUB_ADMIN_KEY");
        const ops = await pulumiOps(stack, "autoscale");
        await deps.extras?.autoscale?.(ops, stack, key, o.watch === true, o.force === true, io);
      }),
    );
  program
    .command("finetune")
    .description("train a LoRA adapter on a GPU droplet that exists only for the job (hub finetune --help; docs/finetune.md)")
    .allowUnknownOption()
    .allowExcessArguments()
    .helpOption(false)
    .argument("[args...]")
    .action(
      act(async (args: string[]) => {
        // Its own parser (finetune/cli.ts); the stack comes by the same rule.
        const hasStack = args.some((a) => a === "--stack" || a.startsWith("--stack="));
        const help = args.includes("--help") || args.includes("-h");
        await deps.extras?.finetune?.(hasStack || help ? args : [...args, "--stack", stackOf(undefined)]);
      }),
    );

  // ---- the other npm scripts, reachable here too -------------------------------------------------
  for (const [name, what] of [
    ["plan", "the offline plan: what a stack would create and cost, every problem at once (hub plan --help)"],
    ["simulate", "replay a request trace against the stack's scaling and budget rules (hub simulate --help)"],
    ["smoke", "check a running hub route by route (hub smoke --help)"],
    ["grafana", "open the hub's Grafana through a loopback proxy that adds the admin key (hub grafana --help)"],
    ["bench", "the benchmarks: the plan, gatekeeper, gateway, money, sandbox, keys (hub bench --help)"],
  ] as const) {
    program
      .command(name)
      .description(what)
      .allowUnknownOption()
      .allowExcessArguments()
      .helpOption(false)
      .argument("[args...]")
      .action(act(async (args: string[]) => deps.script(name, args)));
  }
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
