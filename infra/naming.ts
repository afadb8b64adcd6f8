/** DigitalOcean names and tags allow lower-case letters, digits and dashes; stack names may not. */
export function cloudSlug(text: string): string {
  return (
    text
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, "-")
      .replace(/^-+|-+$/g, "")
      .slice(0, 40) || "stack"
  );
}

export interface HubTags {
  /** On everything the stack creates: `ih-stack-<stack>`. */
  readonly stack: string;
  /** On droplets only, so a tier switch retags droplets but never touches a volume: `ih-tier-<tier>`. */
  readonly tier: string;
  /** Firewall targets. */
  readonly gateway: string;
  readonly gpu: string;
  /** The sandbox node's firewall target. */
  readonly sandbox: string;
}

export function hubTags(stack: string, tier: string): HubTags {
  const s = cloudSlug(stack);
  return {
    stack: `ih-stack-${s}`,
    tier: `ih-tier-${tier}`,
    gateway: `ih-${s}-gateway`,
    gpu: `ih-${s}-gpu`,
    sandbox: `ih-${s}-sandbox`,
  };
}
