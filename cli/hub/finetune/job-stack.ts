import { finetuneJobProgram, FinetuneJobArgs } from "../../../infra/finetune-job";
import { cloudSlug } from "../../../infra/naming";
import { HomeSshFileStore, stackSshDirectory } from "../../../infra/ssh";
import { HubCommandError } from "../ops";
import { JobConnection, JobOps, JobStackOps, JobStackSettings, SshShell } from "./job-ops";

/** The job's Pulumi project: its stacks live beside the serving project's, never in it. */
export const FINETUNE_PROJECT = "inference-hub-finetune";

export const jobStackName = (servingStack: string, adapter: string): string => `${servingStack}-ft-${adapter}`;
export const jobCloudName = (servingStack: string, adapter: string): string =>
  `ih-ft-${cloudSlug(servingStack)}-${adapter}`.slice(0, 60);

/** Everything the job's program needs but the droplet switch. */
export type JobProgramInput = Omit<FinetuneJobArgs, "droplet" | "sshFiles" | "sshDirectory">;

/**
 * The job's stack through Pulumi's Automation API, with the program inline (no Pulumi.yaml of its
 * own): the same backend the operator is logged in to, DIGITALOCEAN_TOKEN from the environment.
 */
export function automationJobOps(stackName: string, input: JobProgramInput): JobOps {
  const sshDirectory = stackSshDirectory("finetune", FINETUNE_PROJECT, stackName);
  const select = async (droplet: boolean) => {
    const { LocalWorkspace } = await import("@pulumi/pulumi/automation");
    const program = async () => {
      const out = finetuneJobProgram({ ...input, droplet, sshFiles: new HomeSshFileStore(), sshDirectory });
      return { volumeId: out.volumeId, ...(out.host ? { host: out.host, sshOptions: out.sshOptions } : {}) };
    };
    return LocalWorkspace.createOrSelectStack({ stackName, projectName: FINETUNE_PROJECT, program });
  };
  const stack: JobStackOps = {
    stackName,
    async up(settings: JobStackSettings, onOutput) {
      const s = await select(settings.droplet);
      const result = await s.up({ onOutput });
      const host = result.outputs.host?.value;
      const sshOptions = result.outputs.sshOptions?.value;
      if (!settings.droplet) return undefined;
      if (typeof host !== "string" || !Array.isArray(sshOptions))
        throw new HubCommandError("the job's stack gave no droplet address or SSH options");
      return { host, sshOptions: sshOptions.map(String) };
    },
    async destroy(onOutput) {
      const s = await select(false);
      await s.destroy({ onOutput });
      await s.workspace.removeStack(stackName);
    },
    async resources() {
      const { LocalWorkspace } = await import("@pulumi/pulumi/automation");
      const workspace = await LocalWorkspace.create({ projectSettings: { name: FINETUNE_PROJECT, runtime: "nodejs" } });
      const stacks = await workspace.listStacks();
      if (!stacks.some((s) => s.name === stackName)) return { droplet: false, volume: false };
      const state = (await (await select(false)).exportStack()).deployment as { resources?: { type: string }[] };
      const types = (state.resources ?? []).map((r) => r.type);
      return {
        droplet: types.includes("digitalocean:index/droplet:Droplet"),
        volume: types.includes("digitalocean:index/volume:Volume"),
      };
    },
  };
  return { stack, connect: (c: JobConnection) => new SshShell(c) };
}
