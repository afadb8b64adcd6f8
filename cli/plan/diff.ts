import type { Problem } from "../../stacks";
import type { CostLine } from "../../stacks/cost";
import { SECRET_MARK, UNKNOWN_MARK } from "./mock-engine";
import { FailedPlanDocument, PLAN_SCHEMA_VERSION, PlanDocument, PlannedContainer } from "./document";

/**
 * Compares two plan documents (`npm run plan -- --json`), base branch against a pull request,
 * and renders the PR comment. Pure: the CLI (cli/plan-diff.ts) does the file handling.
 */

export type AnyPlan = PlanDocument | FailedPlanDocument;
type PlanResource = PlanDocument["resources"][number];

export const VOLUME_TYPE = "digitalocean:index/volume:Volume";
const CONTAINER_TYPE = "docker:index/container:Container";
/**
 * Volume inputs that are create-only in the DigitalOcean provider: changing one replaces the
 * volume, i.e. a new empty disk. The same list as test/tier-switch.test.ts. Size grows in place.
 */
export const VOLUME_REPLACING_INPUTS: readonly string[] = [
  "name",
  "region",
  "initialFilesystemType",
  "initialFilesystemLabel",
  "filesystemType",
  "snapshotId",
  "description",
];

/** Marks the comment so the workflow (and a reader) can tell it from others. */
export const COMMENT_MARKER = "<!-- inference-hub:plan-diff -->";

// GitHub refuses comments above 65,536 characters; lists are cut long before that.
const MAX_LISTED = 60;
const MAX_VALUE_CHARS = 60;

export interface InputChange {
  readonly key: string;
  /** Short scalar values only; absent for objects, long strings and secrets. */
  readonly before?: string;
  readonly after?: string;
  /** Either side is a secret: never shown, and a change inside a secret cannot be seen at all. */
  readonly secret: boolean;
}

export interface ResourceRef {
  readonly urn: string;
  readonly type: string;
  readonly name: string;
}

export interface ResourceChange extends ResourceRef {
  readonly inputs: readonly InputChange[];
  /** Resource options that differ (protect, retainOnDelete, ignoreChanges, ...). */
  readonly options: readonly string[];
}

export interface ResourceDiff {
  readonly added: readonly ResourceRef[];
  readonly removed: readonly ResourceRef[];
  readonly changed: readonly ResourceChange[];
}

export interface ContainerRef {
  readonly node: string;
  readonly name: string;
  readonly image: string;
}

export interface ContainerDiff {
  readonly added: readonly ContainerRef[];
  readonly removed: readonly ContainerRef[];
  readonly imageChanged: readonly {
    readonly node: string;
    readonly name: string;
    readonly before: string;
    readonly after: string;
  }[];
  /** Same image, other arguments (a model or flag change): Docker recreates the container. */
  readonly reconfigured: readonly {
    readonly node: string;
    readonly name: string;
    readonly inputs: readonly InputChange[];
  }[];
  /** A workload (coder, ocr, stt, ...) serving another model on the same node. */
  readonly modelChanged: readonly {
    readonly node: string;
    readonly role: string;
    readonly before: string;
    readonly after: string;
  }[];
}

export interface CostLineChange {
  readonly item: string;
  readonly before?: CostLine;
  readonly after?: CostLine;
}

export interface CostDiff {
  /** Absent when the base has no plan to compare against. */
  readonly monthlyBefore?: number;
  readonly monthlyAfter: number;
  readonly hourlyGpuOnBefore?: number;
  readonly hourlyGpuOnAfter: number;
  readonly hourlyNowBefore?: number;
  readonly hourlyNowAfter: number;
  readonly lines: readonly CostLineChange[];
}

export interface VolumeRisk {
  readonly urn: string;
  readonly name: string;
  readonly kind: "removed" | "replaced" | "shrunk" | "unprotected";
  readonly detail: string;
}

export type PlanState = "ok" | "failed" | "missing";

export interface StackDiff {
  readonly stack: string;
  readonly base: PlanState;
  readonly head: PlanState;
  readonly baseProblems: readonly Problem[];
  readonly headProblems: readonly Problem[];
  /** Whenever the head planned. */
  readonly cost?: CostDiff;
  /** When the head planned and the base planned or has no plan (then everything is added). */
  readonly resources?: ResourceDiff;
  readonly containers?: ContainerDiff;
  readonly volumeRisks: readonly VolumeRisk[];
}

// ---- reading ----

/** A parsed file as a plan document, or a failure naming what is wrong with it. */
export function asPlan(value: unknown, source: string): AnyPlan {
  const doc = value as Partial<PlanDocument> & Partial<FailedPlanDocument>;
  if (!doc || typeof doc !== "object" || typeof doc.ok !== "boolean")
    return unreadable(source, "is not a plan document (no boolean `ok`)");
  if (doc.ok && (!Array.isArray(doc.resources) || !doc.cost || !Array.isArray(doc.containers)))
    return unreadable(source, "is a plan document without resources, cost or containers");
  if (!doc.ok && !Array.isArray(doc.problems)) return unreadable(source, "is a failed plan without problems");
  return doc as AnyPlan;
}

/** What a crashed or empty plan run becomes: a failed plan with one problem saying so. */
export function unreadable(source: string, why: string, stack = ""): FailedPlanDocument {
  return {
    schemaVersion: PLAN_SCHEMA_VERSION,
    ok: false,
    stack,
    configFile: source,
    problems: [
      {
        keys: ["plan"],
        message: `${source} ${why}.`,
        fix: `Run \`npm run plan -- --stack ${stack || "<name>"} --json\` locally to see the error.`,
      },
    ],
    warnings: [],
  };
}

// ---- comparing ----

const ADDRESS = /\b(?:192\.0\.2|198\.51\.100|203\.0\.113)\.\d{1,3}\b/g;
const DROPLET_ID = /^999\d{5}$/;

/**
 * The mock engine hands out stand-in addresses and droplet ids in registration order, so adding
 * a droplet shifts every later one. They mean "known after deploy": compare them as that.
 */
export function normalize(value: unknown): unknown {
  if (typeof value === "string") return DROPLET_ID.test(value) ? UNKNOWN_MARK : value.replace(ADDRESS, "<address>");
  if (typeof value === "number" && DROPLET_ID.test(String(value))) return UNKNOWN_MARK;
  if (Array.isArray(value)) return value.map(normalize);
  if (value && typeof value === "object")
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalize(v)]));
  return value;
}

/** Key order must not count as a change. */
function canonical(value: unknown): string {
  const sort = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sort);
    if (v && typeof v === "object")
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .map((k) => [k, sort((v as Record<string, unknown>)[k])]),
      );
    return v;
  };
  // Absent and null inputs mean the same to the engine.
  return JSON.stringify(sort(normalize(value ?? null)));
}

const containsSecret = (value: unknown): boolean => {
  if (value === SECRET_MARK) return true;
  if (Array.isArray(value)) return value.some(containsSecret);
  if (value && typeof value === "object") return Object.values(value).some(containsSecret);
  return false;
};

/** A value short and plain enough to print in a comment; secrets never are. */
function printable(value: unknown): string | undefined {
  if (value === undefined) return "(unset)";
  if (value === null || typeof value === "number" || typeof value === "boolean") return String(value);
  if (typeof value === "string" && value.length <= MAX_VALUE_CHARS && !value.includes("\n"))
    return String(normalize(value));
  return undefined;
}

export function diffInputs(before: Record<string, unknown>, after: Record<string, unknown>): InputChange[] {
  const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
  const changes: InputChange[] = [];
  for (const key of keys) {
    if (canonical(before[key]) === canonical(after[key])) continue;
    const secret = containsSecret(before[key]) || containsSecret(after[key]);
    const b = secret ? undefined : printable(before[key]);
    const a = secret ? undefined : printable(after[key]);
    changes.push(b !== undefined && a !== undefined ? { key, before: b, after: a, secret } : { key, secret });
  }
  return changes;
}

const ref = (r: PlanResource): ResourceRef => ({ urn: r.urn, type: r.type, name: r.name });

export function diffResources(base: readonly PlanResource[], head: readonly PlanResource[]): ResourceDiff {
  const before = new Map(base.map((r) => [r.urn, r]));
  const after = new Map(head.map((r) => [r.urn, r]));
  const changed: ResourceChange[] = [];
  for (const [urn, h] of after) {
    const b = before.get(urn);
    if (!b) continue;
    const inputs = diffInputs(b.inputs ?? {}, h.inputs ?? {});
    const options = [...new Set([...Object.keys(b.options ?? {}), ...Object.keys(h.options ?? {})])]
      .filter(
        (k) =>
          canonical((b.options as Record<string, unknown>)?.[k]) !==
          canonical((h.options as Record<string, unknown>)?.[k]),
      )
      .sort();
    if (inputs.length > 0 || options.length > 0) changed.push({ ...ref(h), inputs, options });
  }
  // By URN: the comment reads the same whatever order the program registered resources in.
  const byUrn = <T extends ResourceRef>(list: T[]): T[] =>
    list.sort((x, y) => (x.urn < y.urn ? -1 : x.urn > y.urn ? 1 : 0));
  return {
    added: byUrn(head.filter((r) => !before.has(r.urn)).map(ref)),
    removed: byUrn(base.filter((r) => !after.has(r.urn)).map(ref)),
    changed: byUrn(changed),
  };
}

/**
 * The planned container a docker Container resource runs: infra/containers.ts names it
 * `<node>-containers-<name>` (the ContainerHost is `<node>-containers`).
 */
function containerOf(resource: ResourceRef, containers: readonly PlannedContainer[]): PlannedContainer | undefined {
  return containers.find((c) => resource.name === `${c.node}-containers-${c.name}`);
}

type Nodes = PlanDocument["nodes"];

function modelChanges(base: Nodes, head: Nodes): ContainerDiff["modelChanged"] {
  const models = (nodes: Nodes) =>
    new Map(
      nodes
        .flatMap((n) => n.workloads)
        .filter((w) => w.model !== undefined)
        .map((w) => [`${w.node}/${w.role}`, { node: w.node, role: w.role, model: String(w.model) }]),
    );
  const before = models(base);
  return [...models(head).values()].flatMap((w) => {
    const b = before.get(`${w.node}/${w.role}`);
    return b && b.model !== w.model ? [{ node: w.node, role: w.role, before: b.model, after: w.model }] : [];
  });
}

export function diffContainers(
  base: readonly PlannedContainer[],
  head: readonly PlannedContainer[],
  changedResources: readonly ResourceChange[] = [],
  nodes: { readonly base: Nodes; readonly head: Nodes } = { base: [], head: [] },
): ContainerDiff {
  const id = (c: PlannedContainer) => `${c.node}/${c.name}`;
  const before = new Map(base.map((c) => [id(c), c]));
  const after = new Map(head.map((c) => [id(c), c]));
  const plain = (c: PlannedContainer): ContainerRef => ({ node: c.node, name: c.name, image: c.image });
  return {
    added: head.filter((c) => !before.has(id(c))).map(plain),
    removed: base.filter((c) => !after.has(id(c))).map(plain),
    imageChanged: head.flatMap((c) => {
      const b = before.get(id(c));
      return b && b.image !== c.image ? [{ node: c.node, name: c.name, before: b.image, after: c.image }] : [];
    }),
    reconfigured: changedResources.flatMap((r) => {
      const c = r.type === CONTAINER_TYPE ? containerOf(r, head) : undefined;
      const b = c && before.get(id(c));
      // An image change is listed as such; its `image` input changes with it.
      const inputs = r.inputs.filter((i) => i.key !== "image");
      return c && b && b.image === c.image && inputs.length > 0 ? [{ node: c.node, name: c.name, inputs }] : [];
    }),
    modelChanged: modelChanges(nodes.base, nodes.head),
  };
}

export function diffCost(base: PlanDocument | undefined, head: PlanDocument): CostDiff {
  const beforeLines = new Map((base?.cost.lines ?? []).map((l) => [l.item, l]));
  const afterLines = new Map(head.cost.lines.map((l) => [l.item, l]));
  const items = [...new Set([...beforeLines.keys(), ...afterLines.keys()])];
  const lines: CostLineChange[] = [];
  for (const item of items) {
    const b = beforeLines.get(item);
    const a = afterLines.get(item);
    if (b && a && b.monthlyUsd === a.monthlyUsd && b.detail === a.detail && b.hourlyUsd === a.hourlyUsd) continue;
    lines.push({ item, before: b, after: a });
  }
  return {
    monthlyBefore: base?.cost.monthlyUsd,
    monthlyAfter: head.cost.monthlyUsd,
    hourlyGpuOnBefore: base?.cost.hourlyGpuOnUsd,
    hourlyGpuOnAfter: head.cost.hourlyGpuOnUsd,
    hourlyNowBefore: base?.cost.hourlyNowUsd,
    hourlyNowAfter: head.cost.hourlyNowUsd,
    lines,
  };
}

/** What would lose a volume's data, or fail on it: the volumes hold the model cache and TLS state. */
export function volumeRisks(base: readonly PlanResource[], head: readonly PlanResource[]): VolumeRisk[] {
  const after = new Map(head.map((r) => [r.urn, r]));
  const risks: VolumeRisk[] = [];
  for (const b of base.filter((r) => r.type === VOLUME_TYPE)) {
    const label = String(b.inputs?.name ?? b.name);
    const h = after.get(b.urn);
    if (!h || h.type !== VOLUME_TYPE) {
      const fate = b.options?.retainOnDelete
        ? "Pulumi would drop it from the stack (retainOnDelete leaves the disk, detached and billed, and the program forgets it)"
        : "Pulumi would delete it and its data";
      risks.push({
        urn: b.urn,
        name: label,
        kind: "removed",
        detail: `is no longer in the program (its URN is gone): ${fate}${b.options?.protect ? "; protect makes the update fail first" : ""}.`,
      });
      continue;
    }
    const replacing = VOLUME_REPLACING_INPUTS.filter((k) => canonical(b.inputs?.[k]) !== canonical(h.inputs?.[k]));
    if (replacing.length > 0) {
      risks.push({
        urn: b.urn,
        name: label,
        kind: "replaced",
        detail: `changes ${replacing.map((k) => `\`${k}\``).join(", ")}, which DigitalOcean cannot change in place: the volume would be replaced by a new empty one${b.options?.protect ? " (protect makes the update fail instead)" : ""}.`,
      });
    }
    const sizeBefore = Number(b.inputs?.size);
    const sizeAfter = Number(h.inputs?.size);
    if (Number.isFinite(sizeBefore) && Number.isFinite(sizeAfter) && sizeAfter < sizeBefore) {
      risks.push({
        urn: b.urn,
        name: label,
        kind: "shrunk",
        detail: `shrinks from ${sizeBefore} to ${sizeAfter} GiB: DigitalOcean volumes only grow, so the update would fail.`,
      });
    }
    if (b.options?.protect && !h.options?.protect) {
      risks.push({
        urn: b.urn,
        name: label,
        kind: "unprotected",
        detail: "loses `protect`: Pulumi would no longer refuse to delete or replace it.",
      });
    }
  }
  return risks;
}

export function diffPlans(stack: string, base: AnyPlan | undefined, head: AnyPlan | undefined): StackDiff {
  const state = (p: AnyPlan | undefined): PlanState => (p === undefined ? "missing" : p.ok ? "ok" : "failed");
  const problems = (p: AnyPlan | undefined) => (p && !p.ok ? p.problems : []);
  const common = {
    stack,
    base: state(base),
    head: state(head),
    baseProblems: problems(base),
    headProblems: problems(head),
  };
  if (!head?.ok) return { ...common, volumeRisks: [] };
  const okBase = base?.ok ? base : undefined;
  // A refused base has no resources to compare: show the head's cost, not a wall of "added".
  if (base && !base.ok) return { ...common, cost: diffCost(undefined, head), volumeRisks: [] };
  const resources = diffResources(okBase?.resources ?? [], head.resources);
  return {
    ...common,
    cost: diffCost(okBase, head),
    resources,
    containers: diffContainers(okBase?.containers ?? [], head.containers, resources.changed, {
      base: okBase?.nodes ?? [],
      head: head.nodes,
    }),
    volumeRisks: volumeRisks(okBase?.resources ?? [], head.resources),
  };
}

export const hasVolumeRisk = (diffs: readonly StackDiff[]): boolean => diffs.some((d) => d.volumeRisks.length > 0);

export function isUnchanged(d: StackDiff): boolean {
  if (d.base !== "ok" || d.head !== "ok" || !d.cost || !d.resources || !d.containers) return false;
  const { resources: r, containers: c } = d;
  return (
    d.cost.lines.length === 0 &&
    d.cost.monthlyBefore === d.cost.monthlyAfter &&
    d.cost.hourlyGpuOnBefore === d.cost.hourlyGpuOnAfter &&
    d.cost.hourlyNowBefore === d.cost.hourlyNowAfter &&
    r.added.length + r.removed.length + r.changed.length === 0 &&
    c.added.length + c.removed.length + c.imageChanged.length + c.reconfigured.length + c.modelChanged.length === 0
  );
}

// ---- rendering ----

const usd = (n: number) => `$${n.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
const signed = (n: number) => (Math.abs(n) < 0.005 ? "±$0.00" : `${n > 0 ? "+" : "−"}${usd(Math.abs(n))}`);
const code = (s: string) => `\`${s.replace(/`/g, "'")}\``;
const deltaOf = (before: number | undefined, after: number) => (before === undefined ? "new" : signed(after - before));
const arrow = (before: number | undefined, after: number, unit = "") =>
  before === undefined
    ? `${usd(after)}${unit}`
    : before === after
      ? `${usd(after)}${unit} (unchanged)`
      : `${usd(before)}${unit} → ${usd(after)}${unit} (${signed(after - before)}${unit})`;
const shortType = (type: string) =>
  type
    .replace(/^digitalocean:index\/\w+:/, "do:")
    .replace(/^docker:index\/\w+:/, "docker:")
    .replace(/^command:remote:/, "command:");

/** Cut a list for the comment, saying how many were left out. */
function listed<T>(items: readonly T[], render: (item: T) => string): string[] {
  const lines = items.slice(0, MAX_LISTED).map(render);
  if (items.length > MAX_LISTED) lines.push(`- … and ${items.length - MAX_LISTED} more`);
  return lines;
}

function renderInputChange(c: InputChange): string {
  if (c.secret) return `${code(c.key)} (secret)`;
  return c.before !== undefined && c.after !== undefined
    ? `${code(c.key)} ${code(c.before)} → ${code(c.after)}`
    : code(c.key);
}

function renderProblems(problems: readonly Problem[]): string[] {
  return listed(problems, (p) => `- ${p.keys.map(code).join(", ")}: ${p.message}${p.fix ? ` ${p.fix}` : ""}`);
}

export function volumeWarning(risks: readonly VolumeRisk[]): string {
  return `> [!CAUTION]\n> 🛑 **Volume at risk: ${risks.length} volume change${risks.length === 1 ? "" : "s"} could lose the model cache or fail the deploy.**\n${risks.map((r) => `> - ${code(r.name)} ${r.detail}`).join("\n")}`;
}

export function renderStack(d: StackDiff): string {
  const out: string[] = [];
  const title = d.cost
    ? `### ${code(d.stack)}: ${arrow(d.cost.monthlyBefore, d.cost.monthlyAfter, "/month")}`
    : `### ${code(d.stack)}`;
  out.push(title, "");
  if (d.head === "missing") {
    out.push(
      d.base === "missing"
        ? "No plan on either side."
        : "The stack file is gone in this PR: nothing will plan or deploy it from here. Deleting a stack file destroys nothing by itself.",
    );
    return out.join("\n");
  }
  if (d.head === "failed") {
    out.push(
      `> [!WARNING]\n> ⛔ **This PR's plan is refused** (${d.headProblems.length} problem${d.headProblems.length === 1 ? "" : "s"}); \`pulumi up\` would refuse it too.`,
      "",
      ...renderProblems(d.headProblems),
    );
    return out.join("\n");
  }
  if (d.volumeRisks.length > 0) out.push(volumeWarning(d.volumeRisks), "");
  if (d.base === "missing") out.push("_New stack: no plan on the base branch, so everything below is added._", "");
  if (d.base === "failed")
    out.push(
      "_The base branch's plan was refused, so there is nothing to compare against; the cost is this PR's._",
      "",
      "<details><summary>Base problems</summary>",
      "",
      ...renderProblems(d.baseProblems),
      "",
      "</details>",
      "",
    );
  if (isUnchanged(d)) {
    out.push("No changes: same cost, resources and containers.");
    return out.join("\n");
  }

  const cost = d.cost!;
  out.push(`- **Per month:** ${arrow(cost.monthlyBefore, cost.monthlyAfter)}`);
  out.push(`- **Burn with the GPU on:** ${arrow(cost.hourlyGpuOnBefore, cost.hourlyGpuOnAfter, "/h")}`);
  if (cost.hourlyNowBefore !== cost.hourlyNowAfter)
    out.push(`- **Burn as deployed now:** ${arrow(cost.hourlyNowBefore, cost.hourlyNowAfter, "/h")}`);
  if (cost.lines.length > 0) {
    out.push("", "| cost line | before | after | Δ per month |", "| --- | --- | --- | --- |");
    for (const l of cost.lines) {
      const cell = (c: CostLine | undefined) => (c ? `${usd(c.monthlyUsd)} — ${c.detail.replace(/\|/g, "\\|")}` : "—");
      out.push(
        `| ${l.item} | ${cell(l.before)} | ${cell(l.after)} | ${deltaOf(l.before?.monthlyUsd ?? (d.base === "ok" ? 0 : undefined), l.after?.monthlyUsd ?? 0)} |`,
      );
    }
  }

  const r = d.resources;
  if (r && r.added.length + r.removed.length + r.changed.length > 0) {
    out.push(
      "",
      `**Resources:** ${r.added.length} added, ${r.removed.length} removed, ${r.changed.length} changed`,
      "",
    );
    const many = r.added.length + r.removed.length + r.changed.length > 12;
    if (many) out.push("<details><summary>Resource list</summary>", "");
    out.push(...listed(r.added, (x) => `- ➕ ${code(shortType(x.type))} ${code(x.name)}`));
    out.push(...listed(r.removed, (x) => `- ➖ ${code(shortType(x.type))} ${code(x.name)}`));
    out.push(
      ...listed(
        r.changed,
        (x) =>
          `- ✏️ ${code(shortType(x.type))} ${code(x.name)}: ${[...x.inputs.map(renderInputChange), ...x.options.map((o) => `${code(`options.${o}`)}`)].join(", ")}`,
      ),
    );
    if (many) out.push("", "</details>");
  }

  const c = d.containers;
  if (
    c &&
    c.added.length + c.removed.length + c.imageChanged.length + c.reconfigured.length + c.modelChanged.length > 0
  ) {
    const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
    const counts = [
      c.added.length > 0 ? `${c.added.length} added` : "",
      c.removed.length > 0 ? `${c.removed.length} removed` : "",
      c.imageChanged.length > 0 ? plural(c.imageChanged.length, "new image") : "",
      c.modelChanged.length > 0 ? plural(c.modelChanged.length, "new model") : "",
      c.reconfigured.length > 0 ? `${c.reconfigured.length} recreated with new settings` : "",
    ].filter(Boolean);
    out.push("", `**Containers:** ${counts.join(", ")}`, "");
    out.push(...listed(c.added, (x) => `- ➕ ${code(`${x.node}/${x.name}`)} ${code(x.image)}`));
    out.push(...listed(c.removed, (x) => `- ➖ ${code(`${x.node}/${x.name}`)} ${code(x.image)}`));
    out.push(
      ...listed(c.imageChanged, (x) => `- 🔁 ${code(`${x.node}/${x.name}`)} ${code(x.before)} → ${code(x.after)}`),
    );
    out.push(
      ...listed(
        c.modelChanged,
        (x) => `- 🧠 ${code(`${x.node}/${x.role}`)} model ${code(x.before)} → ${code(x.after)}`,
      ),
    );
    out.push(
      ...listed(
        c.reconfigured,
        (x) => `- 🔧 ${code(`${x.node}/${x.name}`)} recreated: ${x.inputs.map(renderInputChange).join(", ")}`,
      ),
    );
  }
  return out.join("\n");
}

function summaryRow(d: StackDiff): string {
  const cell = (n: number | undefined) => (n === undefined ? "—" : usd(n));
  if (d.head !== "ok" || !d.cost)
    return `| ${code(d.stack)} | ${d.head === "failed" ? "⛔ refused" : "removed"} | | | | |`;
  const r = d.resources;
  const resources = r ? `+${r.added.length} −${r.removed.length} ~${r.changed.length}` : "—";
  const risk = d.volumeRisks.length > 0 ? `🛑 ${d.volumeRisks.length}` : "ok";
  return `| ${code(d.stack)} | ${cell(d.cost.monthlyBefore)} → ${cell(d.cost.monthlyAfter)} | ${deltaOf(d.cost.monthlyBefore, d.cost.monthlyAfter)} | ${cell(d.cost.hourlyGpuOnBefore)} → ${cell(d.cost.hourlyGpuOnAfter)} | ${resources} | ${risk} |`;
}

/** The whole comment: a summary table, the loud volume line if any, then one section per stack. */
export function renderComment(
  diffs: readonly StackDiff[],
  opts: { readonly title?: string; readonly footer?: string } = {},
): string {
  const out: string[] = [COMMENT_MARKER, `## ${opts.title ?? "Plan diff"}`, ""];
  const risky = diffs.filter((d) => d.volumeRisks.length > 0);
  if (risky.length > 0)
    out.push(
      `> [!CAUTION]\n> 🛑 **VOLUME AT RISK in ${risky.map((d) => code(d.stack)).join(", ")}**: a model-cache or CPU-cache volume would be removed, replaced, shrunk or unprotected. See below before merging.`,
      "",
    );
  if (diffs.length === 0) out.push("No stacks to compare.");
  else {
    out.push(
      "| stack | per month | Δ | burn, GPU on (per hour) | resources (+ − ~) | volumes |",
      "| --- | --- | --- | --- | --- | --- |",
      ...diffs.map(summaryRow),
      "",
    );
    for (const d of diffs) out.push(renderStack(d), "");
  }
  out.push(
    opts.footer ??
      "<sub>Offline plans (`npm run plan -- --json`) of the base branch and this PR under Pulumi's mock engine: stand-in addresses and ids are ignored, secrets are never shown. `pulumi preview` against the real stack is the authority.</sub>",
  );
  return `${out.join("\n").trimEnd()}\n`;
}
