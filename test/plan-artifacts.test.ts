import { readFileSync } from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import { describe, expect, it } from "vitest";
import { SECRET_PLACEHOLDER } from "../infra/artifacts";
import { buildPlanDocument, type PlanArtifact } from "../cli/plan/document";
import { presentArtifact, UNKNOWN_MARK } from "../cli/plan/mock-engine";
import { stackFilePath } from "../cli/plan/runner";
import { loadStackFile, readStackFile } from "../stacks";

/**
 * How the plan turns what the program recorded (infra/artifacts.ts) into files: text as it is, and
 * a file rendered from a value (a Kubernetes object as YAML) only when someone reads it, with what
 * an apply would have given: unknown stays unknown, a secret stays masked.
 */

const place = { kind: "k8s-object", node: "cluster", path: "k8s/configmap-x.yaml" };

function counting(): { render: (v: Record<string, unknown>) => string; calls: () => number } {
  let calls = 0;
  return {
    render: (v) => {
      calls++;
      return `rendered ${JSON.stringify(v)}`;
    },
    calls: () => calls,
  };
}

describe("a file rendered from a value", () => {
  it("is rendered when its content is first read, once, from the resolved value", async () => {
    const { render, calls } = counting();
    const value = { kind: "ConfigMap", data: { id: pulumi.output("vol-1") } };
    const artifact = await presentArtifact({ ...place, content: pulumi.output(value), render });
    expect(calls()).toBe(0);
    expect(artifact.content).toBe('rendered {"kind":"ConfigMap","data":{"id":"vol-1"}}');
    expect({ ...artifact }).toEqual({ ...place, content: artifact.content });
    expect(calls()).toBe(1);
  });

  it("is masked as a whole when its value is secret, and marked when it is unknown, as an apply would be", async () => {
    const secret = counting();
    const masked = await presentArtifact({ ...place, content: pulumi.secret({ a: "x" }), render: secret.render });
    expect(masked.content).toBe(SECRET_PLACEHOLDER);
    const unknown = counting();
    const notYet = await presentArtifact({
      ...place,
      content: pulumi.output({ a: pulumi.unknown as unknown as string }),
      render: unknown.render,
    });
    expect(notYet.content).toBe(UNKNOWN_MARK);
    expect(secret.calls() + unknown.calls()).toBe(0);
  });
});

describe("a file recorded as text", () => {
  it("is the text, with a secret masked", async () => {
    expect((await presentArtifact({ ...place, content: "plain: 1\n" })).content).toBe("plain: 1\n");
    expect((await presentArtifact({ ...place, content: pulumi.secret("key: s3cr3t\n") })).content).toBe(
      SECRET_PLACEHOLDER,
    );
  });
});

describe("the plan document", () => {
  it("lists every file without reading one (a --json plan renders no Kubernetes object)", () => {
    const file = stackFilePath("local");
    const read = readStackFile(readFileSync(file, "utf8"), file);
    if (!read.ok) throw new Error("the local stack file does not read");
    const loaded = loadStackFile(read.file);
    if (!loaded.ok) throw new Error("the local stack file does not load");
    const unread: PlanArtifact = {
      ...place,
      get content(): string {
        throw new Error("the document read a file's content");
      },
    };
    const document = buildPlanDocument({
      stack: "local",
      configFile: file,
      hub: loaded.config,
      overrides: loaded.overrides,
      resources: [],
      artifacts: [unread],
      outputs: {},
    });
    expect(document.artifacts).toEqual([place]);
  });
});
