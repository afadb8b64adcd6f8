import { writeFileSync } from "node:fs";
import { type Command, Option } from "commander";
import type { HubConfig } from "../../stacks/hub-config";
import { renderStagesFile } from "../../simulator/stages";
import { examples, type HubDeps } from "./cli";
import { gpuCommand, keepDeployed, scaleCommand, tierCommand, type Io } from "./commands";
import { k8sGpuAnswer } from "./decisions";
import { buildGpuImage, gpuImageStatus } from "./gpu-image";
import { HubCommandError } from "./ops";
import { parsePinDuration, requestProblem, type ScaleRequest } from "./scale";

/**
 * The commands that change a stack through Pulumi (gpu, tier, autoscale, finetune) and the other
 * npm scripts reachable as hub commands; registered by cli.ts with its shared helpers.
 */
export interface CliContext {
  readonly deps: HubDeps;
  readonly io: Io;
  readonly stackOption: () => Option;
  readonly stackOf: (flag: string | undefined, mustHaveFile?: boolean) => string;
  readonly hubOf: (stack: string) => HubConfig | undefined;
  readonly requirePulumi: (why: string) => void;
  readonly requireCloudToken: (hub: HubConfig | undefined, why: string) => void;
  readonly act: <A extends unknown[]>(fn: (...args: A) => Promise<number | void>) => (...args: A) => Promise<void>;
}

export function registerStackCommands(program: Command, ctx: CliContext): void {
  const { deps, io, stackOption, stackOf, hubOf, requirePulumi, requireCloudToken, act } = ctx;
  const gpu = program.command("gpu").description("the GPU: on, off, pinned, scaled, synced to gpuWindows");
  /** What the stack file already settles, before any tool: the tier has the GPU the command moves. */
  const gpuTier = (stack: string, onDemand: boolean, command: string) => {
    const tier = hubOf(stack)?.tier;
    if (tier === undefined) return;
    if (tier === "cpu" || tier === "local")
      throw new HubCommandError(
        `the ${tier} tier runs no GPU (Pulumi.${stack}.yaml says tier ${tier}). Switch tiers with: npm run hub -- tier hybrid --stack ${stack}`,
      );
    if (tier === "k8s") throw new HubCommandError(`${command}: ${k8sGpuAnswer(command, stack)}`);
    if (onDemand && tier !== "hybrid")
      throw new HubCommandError(
        `the ${tier} tier's GPU is always on (Pulumi.${stack}.yaml); only hybrid turns it on and off. Scale it with gpu scale, or switch: npm run hub -- tier hybrid --stack ${stack}`,
      );
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
      .option(
        "--for <duration>",
        "pin it there for 8h, 90m, 1d, 2h30m: the autoscaler and the windows leave it until then",
      )
      .option(
        "--key <key>",
        state === "on" ? "an API key to wait for the coder through the gateway (default $HUB_API_KEY)" : "unused",
      )
      .description(`turn the hybrid tier's GPU ${state} (on k8s KEDA does: the command says how to set its range)`)
      .addHelpText(
        "after",
        examples([
          `gpu ${state} --stack hybrid`,
          `gpu ${state} --stack hybrid --for 8h`,
          ...(state === "on"
            ? ["gpu on --stack hybrid --stages-out wake.json   # then: npm run simulate -- --stages wake.json ..."]
            : []),
        ]),
      );
    if (state === "on")
      gpu.commands
        .at(-1)!
        .option("--stages-out <file>", "write the wake's stages as timed, for npm run simulate -- --stages FILE");
    gpu.commands.at(-1)!.action(
      act(async (o: { stack?: string; for?: string; key?: string; stagesOut?: string }) => {
        let pinMs: number | undefined;
        if (o.for !== undefined) {
          const parsed = parsePinDuration(o.for);
          if (!parsed.ok) throw new HubCommandError(parsed.reason);
          pinMs = parsed.ms;
        }
        const stack = stackOf(o.stack);
        gpuTier(stack, true, `gpu ${state}`);
        const ops = await pulumiOps(stack, `gpu ${state}`);
        const stages = await gpuCommand(
          ops,
          state,
          io,
          state === "on" ? deps.extras?.coderProbe?.(ops, o.key ?? deps.env.HUB_API_KEY) : undefined,
          undefined,
          { pinMs },
        );
        if (o.stagesOut) {
          if (!stages?.length)
            throw new HubCommandError(
              "--stages-out: nothing was timed (the GPU was on already, or the up changed nothing)",
            );
          writeFileSync(o.stagesOut, renderStagesFile("npm run hub -- gpu on", new Date(deps.now()), stages, stack));
          io.out(`stages written to ${o.stagesOut}: npm run simulate -- --stages ${o.stagesOut} ...`);
        }
      }),
    );
  }
  const image = gpu
    .command("image")
    .description("the baked GPU image: build it, or see which image GPU nodes boot (docs/gpu-wake.md)");
  image
    .command("build")
    .addOption(stackOption())
    .option("--keep-on-failure", "keep the build droplet when a step fails, to look into it")
    .description(
      "bake the GPU image: a short-lived GPU droplet sets itself up, is snapshotted and destroyed; the stack then boots it (an existing one is reused)",
    )
    .addHelpText("after", examples(["gpu image build --stack hybrid"]))
    .action(
      act(async (o: { stack?: string; keepOnFailure?: boolean }) => {
        const stack = stackOf(o.stack);
        gpuTier(stack, false, "gpu image build");
        const ops = await pulumiOps(stack, "gpu image build");
        await buildGpuImage(ops, deps.extras!.imageOps!(deps.env.DIGITALOCEAN_TOKEN ?? ""), io, {
          keepOnFailure: o.keepOnFailure === true,
        });
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
        gpuTier(stack, false, "gpu image status");
        const ops = await pulumiOps(stack, "gpu image status");
        await gpuImageStatus(ops, deps.extras!.imageOps!(deps.env.DIGITALOCEAN_TOKEN ?? ""), io);
      }),
    );
  for (const [name, what] of [
    ["status", "the GPU as this checkout's config says, its pin, burn and projected month"],
    ["sync", "follow gpuWindows: on inside a window, off outside (what the schedule runs)"],
    ["unpin", "remove the pin; the autoscaler decides again"],
    ["keep", "set this checkout's GPU count and pin to what the stack runs (pipelines)"],
  ] as const) {
    gpu
      .command(name)
      .addOption(stackOption())
      .description(what)
      .addHelpText("after", examples([`gpu ${name} --stack hybrid`]))
      .action(
        act(async (o: { stack?: string }) => {
          const stack = stackOf(o.stack);
          if (name === "sync" || name === "unpin") gpuTier(stack, true, `gpu ${name}`);
          if (name === "keep" && hubOf(stack)?.tier === "k8s") {
            // The deploy workflow runs this for every stack: on k8s there is no count to take over.
            io.out(`${stack}: ${k8sGpuAnswer("gpu keep", stack)}`);
            return;
          }
          // status only reads the stack's config: no cloud token.
          const ops =
            name === "status"
              ? (requirePulumi("gpu status"), await deps.stackOps(stack))
              : await pulumiOps(stack, `gpu ${name}`);
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
    .addHelpText(
      "after",
      examples(["gpu scale 2 --stack gpu --reason queue-depth", "gpu scale 0 --stack hybrid --force"]),
    )
    .action(
      act(async (nodes: string, o: { stack?: string; reason?: string; decisionId?: string; force?: boolean }) => {
        // Digits only: parseInt would take "2x" for 2, Number would take "" or "1e1".
        if (!/^\d{1,3}$/.test(nodes))
          throw new HubCommandError(
            `gpu scale takes one node count (a whole number such as 0, 1 or 2), not "${nodes}"`,
          );
        const request: ScaleRequest = {
          nodes: Number(nodes),
          reason: o.reason,
          decisionId: o.decisionId,
          force: o.force === true,
        };
        const bad = requestProblem(request);
        if (bad) throw new HubCommandError(bad);
        const stack = stackOf(o.stack);
        gpuTier(stack, false, "gpu scale");
        await scaleCommand(await pulumiOps(stack, "gpu scale"), request, io);
      }),
    );
  program
    .command("tier")
    .argument("<tier>", "cpu, gpu, hybrid, multigpu, local or k8s")
    .addOption(stackOption())
    .description("move the stack to another tier (region and model cache stay)")
    .addHelpText(
      "after",
      examples([
        "tier hybrid --stack cpu",
        "tier k8s --stack hybrid   # the volumes stay: bound to the cluster by id (docs/kubernetes.md)",
      ]),
    )
    .action(
      act(async (tier: string, o: { stack?: string }) => {
        const tiers = ["cpu", "gpu", "hybrid", "multigpu", "local", "k8s"];
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
        if (!key)
          throw new HubCommandError(
            "autoscale reads the gateway's admin routes: pass --key <an admin-scope key> or set HUB_ADMIN_KEY",
          );
        const ops = await pulumiOps(stack, "autoscale");
        await deps.extras?.autoscale?.(ops, stack, key, o.watch === true, o.force === true, io);
      }),
    );
  program
    .command("finetune")
    .description(
      "train a LoRA adapter on a GPU droplet that exists only for the job (hub finetune --help; docs/finetune.md)",
    )
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
}
