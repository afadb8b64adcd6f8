import { DO_VOLUMES, src, unverified } from "./sources";

export const VOLUME_PRICE_PER_GIB_MONTH = 0.1;
export const SNAPSHOT_PRICE_PER_GIB_MONTH = 0.06;
/** DO block storage: a volume holds 1 GiB to 16 TiB. */
export const VOLUME_MIN_GIB = 1;
export const VOLUME_MAX_GIB = 16 * 1024;

export const STORAGE_SOURCES = {
  volumePrice: src(DO_VOLUMES, "2026-11-26", "billed while detached"),
  volumeLimits: unverified("docs.digitalocean.com/products/volumes/details/limits", "2026-11-26"),
};

export const GB_PER_GIB = 1.073741824;
export const gbToGiB = (gb: number): number => gb / GB_PER_GIB;
