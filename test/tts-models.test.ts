import { describe, expect, it } from "vitest";
import { ttsSpec } from "../services/speech";
import { TTS_MODELS } from "../stacks/catalogue/models";
import { loadSettings, mustLoad } from "./helpers/load";

const XTTS = "tts_models/multilingual/multi-dataset/xtts_v2";

describe("TTS models and their licences", () => {
  it("records each model's licence as Coqui's model list states it", () => {
    // idiap/coqui-ai-TTS v0.27.2 TTS/.models.json: xtts_v2 "license": "CPML", "tos_required": true;
    // tacotron2-DDC and vits "apache 2.0", no tos_required.
    expect(TTS_MODELS[XTTS].license).toMatchObject({ requiresAgreement: true });
    expect(TTS_MODELS[XTTS].license.name).toContain("Coqui Public Model License");
    for (const id of ["tts_models/en/ljspeech/tacotron2-DDC", "tts_models/en/ljspeech/vits"])
      expect(TTS_MODELS[id].license).toMatchObject({ name: "Apache 2.0", requiresAgreement: false });
  });

  it("refuses XTTS until the user accepts its licence, naming the licence and both ways out", () => {
    const r = loadSettings({ tier: "cpu", ttsModel: XTTS });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const problem = r.problems.find((p) => p.keys.includes("ttsAcceptModelLicense"));
    expect(problem?.keys).toEqual(["ttsModel", "ttsAcceptModelLicense"]);
    expect(problem?.value).toBe(XTTS);
    expect(problem?.message).toContain("Coqui Public Model License");
    expect(problem?.message).toContain("https://tts-hub.github.io/cpml/");
    expect(problem?.fix).toContain("set ttsAcceptModelLicense to true");
    expect(problem?.fix).toContain("tts_models/en/ljspeech/tacotron2-DDC");
  });

  it("with the licence accepted, tells Coqui so instead of letting it prompt", () => {
    const tts = ttsSpec(
      mustLoad({ tier: "cpu", cpuSize: "c-16", budgetUsd: 600, ttsModel: XTTS, ttsAcceptModelLicense: true }),
    );
    // TTS/utils/manage.py tos_agreed: os.environ.get("COQUI_TOS_AGREED") == "1" skips ask_tos's input().
    expect(tts.env.COQUI_TOS_AGREED).toBe("1");
  });

  it("accepting a licence changes nothing for a model that needs no agreement", () => {
    expect(ttsSpec(mustLoad({ tier: "cpu", ttsAcceptModelLicense: true })).env).not.toHaveProperty("COQUI_TOS_AGREED");
  });
});
