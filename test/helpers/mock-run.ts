import { takeArtifacts } from "../../infra/artifacts";
import type { DeployEnvironment } from "../../infra/environment";
import { hubProgram } from "../../infra/program";
import { presentArtifact, RecordedResource, runUnderMocks } from "../../cli/plan/mock-engine";
import { engineConfig } from "../../stacks/load";
import { PROJECT } from "../../stacks/settings";
import { testEnvironment } from "./deploy-env";

export interface ProgramRun {
  readonly resources: readonly RecordedResource[];
  readonly outputs: Record<string, unknown>;
  readonly artifacts: readonly { kind: string; node: string; path: string; content: string }[];
  /** What the program logged through pulumi.log (info, warnings). */
  readonly engineLog: readonly string[];
  readonly byType: (type: string) => RecordedResource[];
  readonly one: (type: string, name: string) => RecordedResource;
}

export const T = {
  droplet: "digitalocean:index/droplet:Droplet",
  volume: "digitalocean:index/volume:Volume",
  attachment: "digitalocean:index/volumeAttachment:VolumeAttachment",
  firewall: "digitalocean:index/firewall:Firewall",
  vpc: "digitalocean:index/vpc:Vpc",
  reservedIp: "digitalocean:index/reservedIp:ReservedIp",
  project: "digitalocean:index/project:Project",
  command: "command:remote:Command",
  sshKey: "digitalocean:index/sshKey:SshKey",
} as const;

/** Runs the real program under Pulumi's mocks with plain settings (and secret ones). */
export async function runProgram(
  settings: Record<string, unknown>,
  opts: { stack?: string; secrets?: Record<string, string>; env?: DeployEnvironment } = {},
): Promise<ProgramRun> {
  const config = engineConfig(settings);
  for (const [k, v] of Object.entries(opts.secrets ?? {})) config[`${PROJECT}:${k}`] = v;
  takeArtifacts();
  const run = await runUnderMocks(
    () => hubProgram(opts.env ?? testEnvironment()),
    opts.stack ?? String(settings.tier ?? "test"),
    config,
    Object.keys(opts.secrets ?? {}).map((k) => `${PROJECT}:${k}`),
  );
  const artifacts = [];
  for (const a of takeArtifacts()) artifacts.push(await presentArtifact(a));
  const byType = (type: string) => run.resources.filter((r) => r.type === type);
  const one = (type: string, name: string) => {
    const found = run.resources.find((r) => r.type === type && r.name === name);
    if (!found)
      throw new Error(
        `no ${type} named ${name}; have ${byType(type)
          .map((r) => r.name)
          .join(", ")}`,
      );
    return found;
  };
  return { resources: run.resources, outputs: run.outputs, artifacts, byType, one, engineLog: run.engineLog };
}
