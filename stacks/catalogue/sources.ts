/**
 * Where a catalogue figure comes from. Every price, size and model figure carries one, so a
 * reader can check it and see how old it is. `verified: false` marks a figure that sources
 * disagree on or that no source confirmed (⚠ in ../shared/FACTS.md): a default to verify.
 */
export interface Source {
  readonly source: string;
  /** ISO date the source was read. */
  readonly read: string;
  readonly verified: boolean;
  readonly note?: string;
}

export const src = (source: string, read: string, note?: string): Source => ({ source, read, verified: true, note });
export const unverified = (source: string, read: string, note?: string): Source => ({
  source,
  read,
  verified: false,
  note,
});

export const DO_GPU_FEATURES =
  "docs.digitalocean.com/products/droplets/details/features (GPU sizes), via shared/FACTS.md";
export const DO_PRICING =
  "docs.digitalocean.com/products/droplets/details/pricing (validated 2026-05-28), via shared/FACTS.md";
export const DO_REGIONS =
  "DO release notes + third-party summaries, via shared/FACTS.md; authority: GET /v2/sizes `regions`";
export const DO_VOLUMES = "docs.digitalocean.com/products/volumes/details/pricing, via shared/FACTS.md";
export const DO_GPU_IMAGES = "DO 'Recommended GPU setup' page (2025-08), via shared/FACTS.md";
export const HF = (repo: string, file = "config.json") => `huggingface.co/${repo}/blob/main/${file}`;
