import { DO_GPU_FEATURES, DO_GPU_IMAGES, DO_PRICING, DO_REGIONS, Source, src, unverified } from "./sources";

/**
 * DigitalOcean bills a droplet per second, at least this many seconds per droplet, since
 * 2026-01-01; a powered-off droplet is still billed (source: DO_PRICING). The ledger and the
 * simulator both bill by it.
 */
export const DROPLET_MIN_BILLED_SECONDS = 60;

/** Hours in an average month (8760 / 12); the "always on" figure. */
export const HOURS_PER_MONTH = 730;

export type GpuVendor = "nvidia" | "amd";

export interface CpuSize {
  readonly kind: "cpu";
  readonly slug: string;
  readonly vcpu: number;
  readonly dedicatedCpu: boolean;
  readonly ramGiB: number;
  readonly diskGiB: number;
  /** Published monthly price: DO caps a CPU droplet's month at this figure. */
  readonly pricePerMonth: number;
  readonly regions: readonly string[];
  readonly image: string;
  readonly sources: { readonly price: Source; readonly shape: Source; readonly regions: Source };
}

export interface GpuSize {
  readonly kind: "gpu";
  readonly slug: string;
  readonly gpuModel: string;
  readonly vendor: GpuVendor;
  readonly gpuCount: number;
  /** GPU memory of one GPU, in GB as DigitalOcean lists it. */
  readonly gpuMemoryGBPerGpu: number;
  readonly ramGiB: number;
  readonly vcpu: number;
  readonly bootDiskGiB: number;
  /** Local NVMe scratch; lost when the droplet is destroyed. */
  readonly scratchDiskGiB: number;
  readonly pricePerHour: number;
  /** FP8 (W8A8) kernels: NVIDIA compute capability >= 8.9, or MI300X (ROCm FP8). */
  readonly fp8: boolean;
  readonly regions: readonly string[];
  readonly image: string;
  readonly sources: { readonly price: Source; readonly shape: Source; readonly regions: Source; readonly fp8: Source };
}

export type DropletSize = CpuSize | GpuSize;

const ALL_REGIONS = [
  "nyc1",
  "nyc2",
  "nyc3",
  "sfo2",
  "sfo3",
  "ams3",
  "sgp1",
  "lon1",
  "fra1",
  "tor1",
  "blr1",
  "syd1",
  "atl1",
] as const;
const CPU_REGIONS_SRC = unverified(
  "docs.digitalocean.com/platform/regional-availability (CPU plans listed in every datacenter)",
  "2026-11-26",
);
const CPU_IMAGE = "ubuntu-24-04-x64";

const cpu = (
  slug: string,
  vcpu: number,
  ramGiB: number,
  diskGiB: number,
  pricePerMonth: number,
  price: Source,
  dedicatedCpu = true,
): CpuSize => ({
  kind: "cpu",
  slug,
  vcpu,
  dedicatedCpu,
  ramGiB,
  diskGiB,
  pricePerMonth,
  regions: ALL_REGIONS,
  image: CPU_IMAGE,
  sources: { price, shape: price, regions: CPU_REGIONS_SRC },
});

const LADDER_NOTE =
  "not in FACTS.md; follows DO's linear CPU-Optimized/Basic price ladder from the c-4 and s-4vcpu-8gb figures; check `doctl compute size list`";

export const CPU_SIZES: readonly CpuSize[] = [
  cpu("s-2vcpu-4gb", 2, 4, 80, 24, unverified("digitalocean.com/pricing/droplets", "2026-12-07", LADDER_NOTE), false),
  cpu("s-4vcpu-8gb", 4, 8, 160, 48, unverified(DO_PRICING, "2026-05-28", "shared CPU"), false),
  cpu(
    "s-8vcpu-16gb",
    8,
    16,
    320,
    96,
    unverified("digitalocean.com/pricing/droplets", "2026-11-26", LADDER_NOTE),
    false,
  ),
  cpu(
    "c-4",
    4,
    8,
    50,
    84,
    unverified(DO_PRICING, "2026-05-28", "the seed design says $24/month, which matches no c-4 price"),
  ),
  cpu("c-8", 8, 16, 100, 168, unverified("digitalocean.com/pricing/droplets", "2026-11-26", LADDER_NOTE)),
  cpu("c-16", 16, 32, 200, 336, unverified("digitalocean.com/pricing/droplets", "2026-11-26", LADDER_NOTE)),
];

const FEATURES = src(DO_GPU_FEATURES, "2025-11-20");
const PRICE = src(DO_PRICING, "2026-05-28");
const PRICE_UNVERIFIED = unverified(DO_PRICING, "2026-05-28", "not on the pricing page read; third-party figure");
const GPU_REGIONS_SRC = unverified(DO_REGIONS, "2026-11-26");
const FP8_NVIDIA = src("vLLM docs, FP8 W8A8: compute capability >= 8.9 (via shared/FACTS.md)", "2026-11-26");
const FP8_NONE = src(
  "NVIDIA: compute capability below 8.9 has no FP8 tensor cores (via shared/FACTS.md)",
  "2026-11-26",
);
const FP8_AMD = unverified("vLLM ROCm docs: MI300X FP8 (e4m3fnuz)", "2026-11-26", "not stated in FACTS.md");
const IMAGE_1 = "gpu-h100x1-base";
const IMAGE_8 = "gpu-h100x8-base";
const IMAGE_AMD = "gpu-amd-base";

interface GpuShape {
  slug: string;
  gpuModel: string;
  vendor: GpuVendor;
  gpuCount: number;
  gpuMemoryGBPerGpu: number;
  ramGiB: number;
  vcpu: number;
  bootDiskGiB: number;
  scratchDiskGiB: number;
  pricePerHour: number;
  fp8: boolean;
  regions: readonly string[];
  price: Source;
}

const gpu = (s: GpuShape): GpuSize => ({
  kind: "gpu",
  slug: s.slug,
  gpuModel: s.gpuModel,
  vendor: s.vendor,
  gpuCount: s.gpuCount,
  gpuMemoryGBPerGpu: s.gpuMemoryGBPerGpu,
  ramGiB: s.ramGiB,
  vcpu: s.vcpu,
  bootDiskGiB: s.bootDiskGiB,
  scratchDiskGiB: s.scratchDiskGiB,
  pricePerHour: s.pricePerHour,
  fp8: s.fp8,
  regions: s.regions,
  image: s.vendor === "amd" ? IMAGE_AMD : s.gpuCount > 1 ? IMAGE_8 : IMAGE_1,
  sources: {
    price: s.price,
    shape: FEATURES,
    regions: GPU_REGIONS_SRC,
    fp8: s.vendor === "amd" ? FP8_AMD : s.fp8 ? FP8_NVIDIA : FP8_NONE,
  },
});

const TIB = 1024;
export const GPU_SIZES: readonly GpuSize[] = [
  gpu({
    slug: "gpu-h100x1-80gb",
    gpuModel: "H100",
    vendor: "nvidia",
    gpuCount: 1,
    gpuMemoryGBPerGpu: 80,
    ramGiB: 240,
    vcpu: 20,
    bootDiskGiB: 720,
    scratchDiskGiB: 5 * TIB,
    pricePerHour: 3.39,
    fp8: true,
    regions: ["nyc2", "tor1", "ams3"],
    price: src(DO_PRICING, "2026-05-28", "seed says $4.49/h; third-party lists say $4.41 or $4.89"),
  }),
  gpu({
    slug: "gpu-h100x8-640gb",
    gpuModel: "H100",
    vendor: "nvidia",
    gpuCount: 8,
    gpuMemoryGBPerGpu: 80,
    ramGiB: 1920,
    vcpu: 160,
    bootDiskGiB: 2046,
    scratchDiskGiB: 40 * TIB,
    pricePerHour: 23.92,
    fp8: true,
    regions: ["nyc2", "tor1", "ams3"],
    price: PRICE,
  }),
  gpu({
    slug: "gpu-h200x1-141gb",
    gpuModel: "H200",
    vendor: "nvidia",
    gpuCount: 1,
    gpuMemoryGBPerGpu: 141,
    ramGiB: 240,
    vcpu: 24,
    bootDiskGiB: 720,
    scratchDiskGiB: 5 * TIB,
    pricePerHour: 3.44,
    fp8: true,
    regions: ["nyc2", "atl1"],
    price: PRICE_UNVERIFIED,
  }),
  gpu({
    slug: "gpu-h200x8-1128gb",
    gpuModel: "H200",
    vendor: "nvidia",
    gpuCount: 8,
    gpuMemoryGBPerGpu: 141,
    ramGiB: 1920,
    vcpu: 192,
    bootDiskGiB: 2046,
    scratchDiskGiB: 40 * TIB,
    pricePerHour: 27.52,
    fp8: true,
    regions: ["nyc2", "atl1"],
    price: PRICE_UNVERIFIED,
  }),
  gpu({
    slug: "gpu-l40sx1-48gb",
    gpuModel: "L40S",
    vendor: "nvidia",
    gpuCount: 1,
    gpuMemoryGBPerGpu: 48,
    ramGiB: 64,
    vcpu: 8,
    bootDiskGiB: 500,
    scratchDiskGiB: 0,
    pricePerHour: 1.57,
    fp8: true,
    regions: ["tor1"],
    price: PRICE,
  }),
  gpu({
    slug: "gpu-4000adax1-20gb",
    gpuModel: "RTX 4000 Ada",
    vendor: "nvidia",
    gpuCount: 1,
    gpuMemoryGBPerGpu: 20,
    ramGiB: 32,
    vcpu: 8,
    bootDiskGiB: 500,
    scratchDiskGiB: 0,
    pricePerHour: 0.76,
    fp8: true,
    regions: ["tor1"],
    price: PRICE,
  }),
  gpu({
    slug: "gpu-6000adax1-48gb",
    gpuModel: "RTX 6000 Ada",
    vendor: "nvidia",
    gpuCount: 1,
    gpuMemoryGBPerGpu: 48,
    ramGiB: 64,
    vcpu: 8,
    bootDiskGiB: 500,
    scratchDiskGiB: 0,
    pricePerHour: 1.89,
    fp8: true,
    regions: ["tor1"],
    price: unverified(DO_PRICING, "2026-05-28"),
  }),
  gpu({
    slug: "gpu-mi300x1-192gb",
    gpuModel: "MI300X",
    vendor: "amd",
    gpuCount: 1,
    gpuMemoryGBPerGpu: 192,
    ramGiB: 240,
    vcpu: 20,
    bootDiskGiB: 720,
    scratchDiskGiB: 5 * TIB,
    pricePerHour: 1.99,
    fp8: true,
    regions: ["atl1"],
    price: PRICE,
  }),
  gpu({
    slug: "gpu-mi300x8-1536gb",
    gpuModel: "MI300X",
    vendor: "amd",
    gpuCount: 8,
    gpuMemoryGBPerGpu: 192,
    ramGiB: 1920,
    vcpu: 160,
    bootDiskGiB: 2046,
    scratchDiskGiB: 40 * TIB,
    pricePerHour: 15.92,
    fp8: true,
    regions: ["atl1"],
    price: PRICE,
  }),
];

export const GPU_IMAGES_SOURCE = src(DO_GPU_IMAGES, "2025-08-01", "no GPU image ships Docker; user data installs it");

export const REGIONS: readonly string[] = ALL_REGIONS;

/**
 * The local tier's "node": the deployer's own Docker engine. 13 GiB is what the CPU services need
 * (12.7 GiB with embeddings); the fit check uses it like any size.
 */
export const LOCAL_MACHINE: CpuSize = {
  kind: "cpu",
  slug: "local",
  vcpu: 4,
  dedicatedCpu: false,
  ramGiB: 13,
  diskGiB: 0,
  pricePerMonth: 0,
  regions: ["local"],
  image: "(your Docker engine)",
  sources: {
    price: src("runs on your own machine", "2026-11-26"),
    shape: unverified(
      "assumption: Docker may use 4 CPUs and 13 GiB (raise Docker Desktop's memory limit on a 16 GB laptop)",
      "2026-11-26",
    ),
    regions: src("runs on your own machine", "2026-11-26"),
  },
};

export function findCpuSize(slug: string): CpuSize | undefined {
  return CPU_SIZES.find((s) => s.slug === slug);
}

export function findGpuSize(slug: string): GpuSize | undefined {
  return GPU_SIZES.find((s) => s.slug === slug);
}

export function gpuMemoryGB(size: GpuSize): number {
  return size.gpuMemoryGBPerGpu * size.gpuCount;
}

/** DO bills a CPU droplet by the hour up to 672 h a month, so its hourly rate is month / 672. */
export const CPU_BILLABLE_HOURS_CAP = 672;

export function cpuHourly(size: CpuSize): number {
  return size.pricePerMonth / CPU_BILLABLE_HOURS_CAP;
}
