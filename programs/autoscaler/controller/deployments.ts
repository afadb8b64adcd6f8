import { dispatchAnswer, type DispatchRequest, type DispatchResult, type Pipeline } from "./actuator";
import type { Fetcher } from "./signals";

/**
 * The second way the controller asks for a GPU node count, for teams on Pulumi Cloud without
 * GitHub: a Pulumi Deployments run of this stack, created through Pulumi Cloud's REST API
 * (POST /api/stacks/{organization}/{project}/{stack}/deployments, `Authorization: token …`,
 * `Accept: application/vnd.pulumi+8`; pulumi.com/docs/reference/deployments-rest-api, read
 * 2026-12-07). The run inherits the stack's deployment settings (its git source, the
 * DIGITALOCEAN_TOKEN secret, the dependency cache); this request adds only the wanted count as
 * environment variables and the hub command that applies it, `npm run hub -- gpu scale`, the same
 * safe path as the GitHub workflow (preview, refuse any volume delete or replace, up). The run's
 * own operation is a preview, which changes nothing after the hub command's up.
 *
 * The Actuator around it keeps the rules of the GitHub path: one request in flight, retries with
 * backoff and jitter, no duplicate for a count already asked for; Pulumi Cloud lets one update of a
 * stack run at a time, so two changes never overlap there either. The token
 * on the CPU node should carry one scope, `stack_deployment:create`, on this one stack (a custom
 * role on an organization token; docs/gpu-wake.md).
 */

export interface DeploymentsTarget {
  readonly api: string;
  readonly token: string;
  readonly organization: string;
  readonly project: string;
  readonly stack: string;
}

/** The environment variables the run gets: the request reaches the shell only through them, never inside a command. */
export const SCALE_ENV = {
  nodes: "HUB_SCALE_NODES",
  reason: "HUB_SCALE_REASON",
  decisionId: "HUB_SCALE_DECISION_ID",
} as const;

/** Names Pulumi Cloud allows for organizations, projects and stacks; anything else never reaches a URL or a command. */
const NAME = /^[A-Za-z0-9_.-]{1,100}$/;

export function deploymentRequestBody(
  target: Pick<DeploymentsTarget, "stack">,
  request: DispatchRequest,
): Record<string, unknown> {
  if (!NAME.test(target.stack))
    throw new Error(`stack name ${JSON.stringify(target.stack)} is not a Pulumi stack name`);
  return {
    operation: "preview",
    inheritSettings: true,
    operationContext: {
      environmentVariables: {
        [SCALE_ENV.nodes]: String(request.nodes),
        [SCALE_ENV.reason]: request.reason,
        [SCALE_ENV.decisionId]: request.decisionId,
      },
      preRunCommands: [
        "npm ci --no-audit --no-fund",
        `npm run hub -- gpu scale "$${SCALE_ENV.nodes}" --stack ${target.stack} --reason "$${SCALE_ENV.reason}" --decision-id "$${SCALE_ENV.decisionId}"`,
      ],
    },
  };
}

export class PulumiDeploymentsPipeline implements Pipeline {
  constructor(
    private readonly target: DeploymentsTarget,
    private readonly fetcher: Fetcher,
  ) {
    for (const [what, value] of [
      ["organization", target.organization],
      ["project", target.project],
      ["stack", target.stack],
    ] as const) {
      if (!NAME.test(value)) throw new Error(`Pulumi ${what} ${JSON.stringify(value)} is not a valid name`);
    }
  }

  async dispatch(request: DispatchRequest): Promise<DispatchResult> {
    const { api, token, organization, project, stack } = this.target;
    const url = `${api.replace(/\/$/, "")}/api/stacks/${organization}/${project}/${stack}/deployments`;
    try {
      const res = await this.fetcher(url, {
        method: "POST",
        body: JSON.stringify(deploymentRequestBody(this.target, request)),
        timeoutMs: 15_000,
        headers: {
          accept: "application/vnd.pulumi+8",
          authorization: `token ${token}`,
          "content-type": "application/json",
          "user-agent": "inference-hub-autoscaler",
        },
      });
      // Pulumi Cloud's error body is {"code", "message"}; the message names the problem, never the token.
      return dispatchAnswer(res);
    } catch (err) {
      return { ok: false, message: `request failed: ${(err as Error).message}` };
    }
  }
}
