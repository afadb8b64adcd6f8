import * as pulumi from "@pulumi/pulumi";

/** Stands in for a secret in a rendered artifact (the offline plan marks secrets the same way). */
export const SECRET_PLACEHOLDER = "[secret]";

interface ArtifactPlace {
  readonly kind: string;
  readonly node: string;
  /** Relative path under the plan's --out directory. */
  readonly path: string;
}

/**
 * A file the program renders for a node (cloud-init, Traefik config, vLLM args, ...): its text, or
 * the value it is rendered from and how. A file shown only to people (a Kubernetes object as YAML)
 * takes the second form: the plan renders it when it is read (`--out`), as an apply would have
 * (unknown stays unknown, a secret stays masked), and a plan that prints no file renders none.
 */
export type RenderedArtifact =
  | (ArtifactPlace & { readonly content: pulumi.Input<string>; readonly render?: undefined })
  | (ArtifactPlace & {
      readonly content: pulumi.Input<Record<string, unknown>>;
      readonly render: (value: Record<string, unknown>) => string;
    });

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
