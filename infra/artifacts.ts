import * as pulumi from "@pulumi/pulumi";

/** Stands in for a secret in a rendered artifact (the offline plan marks secrets the same way). */
export const SECRET_PLACEHOLDER = "[secret]";

/** A file the program renders for a node (cloud-init, Traefik config, vLLM args, ...). */
export interface RenderedArtifact {
  readonly kind: string;
  readonly node: string;
  /** Relative path under the plan's --out directory. */
  readonly path: string;
  readonly content: pulumi.Input<string>;
}

/**
 * What the last program run rendered. The deployment itself never reads this; the offline plan
 * does, to show and write the exact files a real `pulumi up` would ship.
 */
const rendered: RenderedArtifact[] = [];

export function recordArtifact(artifact: RenderedArtifact): void {
  rendered.push(artifact);
}

export function takeArtifacts(): RenderedArtifact[] {
  return rendered.splice(0, rendered.length);
}
