import { readFileSync } from "node:fs";
import * as path from "node:path";
import Ajv2020 from "ajv/dist/2020";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import { DOC_SECTIONS, renderDoc, renderPulumiYaml } from "../cli/docs/generate";
import { SECRET_SETTINGS, SETTING_NAMES, SETTINGS } from "../stacks/settings";
import { readJson, ROOT } from "./helpers/load";

const pulumiYaml = readFileSync(path.join(ROOT, "Pulumi.yaml"), "utf8");
const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");

describe("Pulumi.yaml", () => {
  it("validates against Pulumi's project-file schema", () => {
    const schema = readJson<object>(path.join(ROOT, "test/fixtures/pulumi/project.schema.json"));
    const validate = new Ajv2020({ strict: false }).compile(schema);
    const ok = validate(parse(pulumiYaml));
    expect(validate.errors ?? [], JSON.stringify(validate.errors)).toEqual([]);
    expect(ok).toBe(true);
  });

  it("declares settings only with a default (the CLI requires any declared key without one), and never a secret", () => {
    const project = parse(pulumiYaml) as {
      name: string;
      main: string;
      runtime: { name: string; options: Record<string, unknown> };
      config: Record<string, { type: string; description: string; default?: unknown; secret?: boolean }>;
    };
    expect(project.name).toBe("inference-hub");
    expect(project.runtime.name).toBe("nodejs");
    expect(project.main).toBe("infra/");
    for (const [name, declared] of Object.entries(project.config)) {
      expect(SETTING_NAMES, name).toContain(name);
      expect(declared.default, name).toBeDefined();
      expect(declared.secret, name).toBeUndefined();
      expect(declared.type, name).toBe(SETTINGS[name as keyof typeof SETTINGS].type);
      expect(declared.description, name).toBe(SETTINGS[name as keyof typeof SETTINGS].description);
    }
  });

  it("names every setting, declared or not, with its meaning (the others in a comment, secrets marked)", () => {
    const declared = Object.keys((parse(pulumiYaml) as { config: Record<string, unknown> }).config);
    const listed = new Map(
      [...pulumiYaml.matchAll(/^# {3}(\w+) \(([^)]*)\): (.*)$/gm)].map((m) => [
        m[1],
        { type: m[2], description: m[3] },
      ]),
    );
    expect([...declared, ...listed.keys()].sort()).toEqual([...SETTING_NAMES, ...Object.keys(SECRET_SETTINGS)].sort());
    for (const [name, { type, description }] of listed) {
      const spec =
        name in SECRET_SETTINGS
          ? SECRET_SETTINGS[name as keyof typeof SECRET_SETTINGS]
          : SETTINGS[name as keyof typeof SETTINGS];
      expect(description, name).toBe(spec.description);
      expect(type.startsWith(spec.type === "array" ? "list of strings" : spec.type), name).toBe(true);
      if (name in SECRET_SETTINGS) expect(type, name).toContain(`secret: pulumi config set --secret ${name}`);
    }
  });

  it("is what `npm run docs` generates", () => {
    expect(pulumiYaml).toBe(renderPulumiYaml());
  });
});

describe("README.md and docs/", () => {
  it.each(Object.keys(DOC_SECTIONS))("%s has the tables the code generates (run `npm run docs` to refresh)", (file) => {
    const text = readFileSync(path.join(ROOT, file), "utf8");
    expect(text).toBe(renderDoc(file, text));
  });

  it("documents every setting, secrets included, in docs/configuration.md", () => {
    const configuration = readFileSync(path.join(ROOT, "docs/configuration.md"), "utf8");
    for (const name of [...SETTING_NAMES, ...Object.keys(SECRET_SETTINGS)])
      expect(configuration).toContain(`| \`${name}\` |`);
  });

  it("gives the two set-up commands", () => {
    expect(readme).toContain("npm ci && npm run plan");
    expect(readme).toMatch(/^npm test\b/m);
  });
});

describe("package.json", () => {
  const pkg = readJson<{ name: string; dependencies: Record<string, string>; devDependencies: Record<string, string> }>(
    path.join(ROOT, "package.json"),
  );
  it("pins every dependency exactly", () => {
    for (const [name, version] of Object.entries({ ...pkg.dependencies, ...pkg.devDependencies }))
      expect(version, name).toMatch(/^\d+\.\d+\.\d+$/);
  });
  it("holds one copy of @pulumi/pulumi", () => {
    const lock = readJson<{ packages: Record<string, unknown> }>(path.join(ROOT, "package-lock.json"));
    expect(Object.keys(lock.packages).filter((p) => p.endsWith("node_modules/@pulumi/pulumi"))).toHaveLength(1);
  });
});
