import { createHash } from "node:crypto";
import { appendFileSync } from "node:fs";
import * as provider from "@pulumi/pulumi/provider";
import { cloudState } from "../../../cli/plan/mock-engine";
import { REPLACING_INPUTS } from "./replacements";

/**
 * STAND-IN provider plugin for the real-engine tests: `pulumi-resource-<name>` (digitalocean,
 * random, tls, docker, command), served by the npm SDK's `@pulumi/pulumi/provider` main(). The real
 * plugins are not served by the Go module proxy, so CI cannot have them.
 *
 * It creates nothing: Create echoes the inputs back as outputs plus the few values only a cloud
 * knows, faked the way the offline plan fakes them (cli/plan/mock-engine.ts cloudState: RFC 5737
 * addresses, throwaway host keys). Diff is honest about replacements (replacements.ts, read from
 * the real providers' sources), so the engine's own plan of a tier switch can be trusted for which
 * resources are replaced or deleted. What it cannot see: the providers' schemas and Check (types,
 * required inputs, defaults, validation), their real diffs beyond the replacing inputs (normalised
 * values, computed-on-update outputs), provider configuration (the docker provider's Configure
 * connects to the daemon), and anything the cloud or a daemon would refuse at creation.
 *
 * Every call it receives is appended as one JSON line to $STAND_IN_PROVIDER_LOG (if set), so tests
 * can see what the engine asked of the provider (a Delete of a volume, say).
 * $STAND_IN_FAIL_INVOKE ({"token": ..., "message": ...}) makes that invoke fail with that message.
 */

const pluginName = process.argv[2] ?? "";
// eslint-disable-next-line @typescript-eslint/no-require-imports
const version = (require(`@pulumi/${pluginName}/package.json`) as { version: string }).version;

const typeOf = (urn: string) => urn.split("::")[2]?.split("$").pop() ?? "";
const nameOf = (urn: string) => urn.split("::")[3] ?? "";

function record(op: string, urn: string, extra: Record<string, unknown> = {}): void {
  const log = process.env.STAND_IN_PROVIDER_LOG;
  if (log)
    appendFileSync(
      log,
      `${JSON.stringify({ plugin: pluginName, op, type: typeOf(urn), name: nameOf(urn), ...extra })}\n`,
    );
}

const hashed = (text: string, length: number) => createHash("sha256").update(text).digest("hex").slice(0, length);

/** Outputs a real provider computes, faked; keyed by type. Everything else is the inputs echoed. */
function computed(type: string, urn: string, inputs: Record<string, unknown>): Record<string, unknown> {
  const name = nameOf(urn);
  switch (type) {
    case "random:index/randomPassword:RandomPassword": {
      const length = typeof inputs.length === "number" ? inputs.length : 16;
      let result = "";
      while (result.length < length) result += hashed(`${urn}/${result.length}`, 64);
      return { result: result.slice(0, length) };
    }
    case "docker:index/remoteImage:RemoteImage":
      return { imageId: `sha256:${hashed(String(inputs.name), 64)}`, repoDigest: "" };
    case "command:remote:Command":
    case "command:local:Command":
      return { stdout: "", stderr: "" };
    default:
      return cloudState(type, name, inputs);
  }
}

function idFor(type: string, urn: string, inputs: Record<string, unknown>): string {
  // Droplet ids are numbers (VolumeAttachment.dropletId takes one); a tag's id is its name.
  if (type === "digitalocean:index/droplet:Droplet") return String(90000000 + parseInt(hashed(urn, 6), 16));
  if (type === "digitalocean:index/tag:Tag" && typeof inputs.name === "string") return inputs.name;
  return `stand-in-${hashed(urn, 12)}`;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

const standIn: provider.Provider = {
  version,
  async check(urn, _olds, news) {
    record("check", urn);
    const type = typeOf(urn);
    if (!(type in REPLACING_INPUTS))
      return {
        inputs: news,
        failures: [
          {
            property: "",
            reason: `stand-in provider: no replacement rules for ${type}; add them to test/helpers/stand-in-plugins/replacements.ts with their source`,
          },
        ],
      };
    return { inputs: news };
  },
  async diff(id, urn, olds: Record<string, unknown>, news: Record<string, unknown>) {
    const type = typeOf(urn);
    // Outputs the stand-in made up are not inputs: a key only they hold is not a change.
    const madeUp = new Set(Object.keys(computed(type, urn, news)));
    const keys = new Set([...Object.keys(news), ...Object.keys(olds).filter((k) => !madeUp.has(k))]);
    const changed = [...keys].filter((k) => !same(olds[k], news[k]));
    const replaces = changed.filter((k) => REPLACING_INPUTS[type]?.includes(k));
    if (
      type === "digitalocean:index/volume:Volume" &&
      typeof olds.size === "number" &&
      typeof news.size === "number" &&
      news.size < olds.size
    ) {
      throw new Error("volumes `size` can only be expanded and not shrunk");
    }
    if (type === "digitalocean:index/droplet:Droplet" && olds.ipv6 === true && news.ipv6 === false)
      replaces.push("ipv6");
    record("diff", urn, { id, changed, replaces });
    return { changes: changed.length > 0, replaces };
  },
  async create(urn, inputs: Record<string, unknown>) {
    const type = typeOf(urn);
    const id = idFor(type, urn, inputs);
    record("create", urn, { id });
    return { id, outs: { ...inputs, ...computed(type, urn, inputs) } };
  },
  async update(id, urn, olds: Record<string, unknown>, news: Record<string, unknown>) {
    const type = typeOf(urn);
    record("update", urn, { id });
    // What the cloud computed stays as it was (a droplet keeps its address).
    const kept = Object.fromEntries(Object.keys(computed(type, urn, news)).map((k) => [k, olds[k]]));
    return { outs: { ...news, ...kept } };
  },
  async delete(id, urn) {
    record("delete", urn, { id });
  },
  async read(id, urn, props) {
    record("read", urn, { id });
    return { id, props };
  },
  async invoke(token, inputs: Record<string, unknown>) {
    record("invoke", "", { token });
    const fail = process.env.STAND_IN_FAIL_INVOKE
      ? (JSON.parse(process.env.STAND_IN_FAIL_INVOKE) as { token: string; message: string })
      : undefined;
    if (fail?.token === token) throw new Error(fail.message);
    if (token === "digitalocean:index/getSshKeys:getSshKeys")
      return { outputs: { ...inputs, id: "stand-in", sshKeys: [] } };
    throw new Error(`stand-in provider ${pluginName}: no answer for ${token}`);
  },
};

void provider.main(standIn, process.argv.slice(3));
