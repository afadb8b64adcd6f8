import * as pulumi from "@pulumi/pulumi";
import { ConfigError, loadHubConfig } from "../stacks";

/**
 * The Pulumi program: engine config → validated HubConfig → resources. `pulumi up` runs it from
 * infra/index.ts; the offline plan runs the same function under Pulumi's mock engine.
 */
export function hubProgram(): Record<string, unknown> {
  const loaded = loadHubConfig(pulumi.runtime.allConfig());
  if (!loaded.ok) {
    // RunError prints its message without a stack trace.
    throw new pulumi.RunError(new ConfigError(loaded.problems, `stack ${pulumi.getStack()}`).message);
  }
  const hub = loaded.config;
  for (const w of hub.warnings) void pulumi.log.warn(`${w.keys.join(", ")}: ${w.message}`);
  return {
    tier: hub.tier,
    region: hub.region,
    monthlyCostUsd: hub.cost.monthlyUsd,
    hourlyBurnUsd: hub.cost.hourlyNowUsd,
  };
}
