import { z } from "zod";
import { MeasuredStage, STAGE_NAMES } from "../programs/autoscaler/serving-model";

/**
 * A measured GPU wake, stage by stage, in the model's stage names: what `npm run smoke -- --wake`
 * and `npm run hub -- gpu on --stages-out FILE` write, and what `npm run simulate -- --stages FILE`
 * reads back in place of the modelled stages. A measurement that could not tell stages apart
 * covers several (e.g. the pipeline and the droplet's creation, seen from outside).
 */
export const STAGES_FILE_VERSION = 1;

const stageSchema = z.strictObject({
  covers: z.array(z.enum(STAGE_NAMES)).min(1),
  seconds: z.number().finite().nonnegative(),
  /** What the model said for the same stages, for the report (not read back). */
  modelSeconds: z.number().finite().nonnegative().optional(),
});

const fileSchema = z.strictObject({
  version: z.literal(STAGES_FILE_VERSION),
  /** Which command measured it, and against what. */
  source: z.string().min(1),
  measuredAt: z.iso.datetime({ offset: true }),
  stack: z.string().optional(),
  stages: z.array(stageSchema).min(1),
});

export type StagesFile = z.infer<typeof fileSchema>;

export class StagesFileError extends Error {
  constructor(
    readonly file: string,
    readonly problems: readonly string[],
  ) {
    super(
      `${file}: ${problems.length} problem${problems.length === 1 ? "" : "s"}:\n${problems.map((p) => `  - ${p}`).join("\n")}`,
    );
    this.name = "StagesFileError";
  }
}

/** Parses a stages file, every problem at once; stages must come in the model's order without overlap. */
export function parseStagesFile(text: string, file: string): StagesFile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new StagesFileError(file, [`not JSON: ${(err as Error).message}`]);
  }
  const parsed = fileSchema.safeParse(json);
  if (!parsed.success)
    throw new StagesFileError(
      file,
      parsed.error.issues.map(
        (i) =>
          `${i.path.join(".") || "(file)"}: ${i.message}${i.path.includes("covers") ? ` (stages: ${STAGE_NAMES.join(", ")})` : ""}`,
      ),
    );
  const problems: string[] = [];
  let last = -1;
  parsed.data.stages.forEach((stage, i) => {
    const at = stage.covers.map((name) => STAGE_NAMES.indexOf(name));
    if (at.some((x, j) => j > 0 && x !== at[j - 1] + 1))
      problems.push(
        `stages[${i}].covers: ${stage.covers.join(", ")} are not consecutive stages of the model (${STAGE_NAMES.join(", ")})`,
      );
    if (at[0] <= last)
      problems.push(
        `stages[${i}].covers: ${stage.covers[0]} comes before or inside an earlier entry; list stages once, in the model's order`,
      );
    last = Math.max(last, ...at);
  });
  if (problems.length) throw new StagesFileError(file, problems);
  return parsed.data;
}

export function measuredStages(file: StagesFile): MeasuredStage[] {
  return file.stages.map((s) => ({ covers: s.covers, seconds: s.seconds, how: `${file.source}, ${file.measuredAt}` }));
}

export function renderStagesFile(
  source: string,
  measuredAt: Date,
  stages: readonly {
    readonly covers: readonly (typeof STAGE_NAMES)[number][];
    readonly seconds: number;
    readonly modelSeconds?: number;
  }[],
  stack?: string,
): string {
  const doc: StagesFile = {
    version: STAGES_FILE_VERSION,
    source,
    measuredAt: measuredAt.toISOString(),
    ...(stack ? { stack } : {}),
    stages: stages.map((s) => ({
      covers: [...s.covers],
      seconds: Math.round(s.seconds * 10) / 10,
      ...(s.modelSeconds !== undefined ? { modelSeconds: Math.round(s.modelSeconds * 10) / 10 } : {}),
    })),
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}
