/**
 * Seeded random draws for turning a rate series into arrivals. pure-rand (already installed,
 * under fast-check) exposes its generators only through package `exports` subpaths, which this
 * repo's TypeScript module resolution ("node") cannot see; so the generator is the few lines of
 * xoshiro128** (Blackman & Vigna) seeded by splitmix32, and the distributions are the textbook
 * ones: Marsaglia-Tsang for Gamma, inversion for Weibull.
 */
export interface Random {
  /** Uniform in (0, 1). */
  next(): number;
}

export function seeded(seed: number): Random {
  let s = seed >>> 0;
  const splitmix = () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = splitmix(),
    b = splitmix(),
    c = splitmix(),
    d = splitmix();
  const rotl = (x: number, k: number) => ((x << k) | (x >>> (32 - k))) >>> 0;
  return {
    next(): number {
      const result = Math.imul(rotl(Math.imul(b, 5) >>> 0, 7), 9) >>> 0;
      const t = (b << 9) >>> 0;
      c ^= a;
      d ^= b;
      b ^= c;
      a ^= d;
      c ^= t;
      d = rotl(d, 11);
      c >>>= 0;
      d >>>= 0;
      b >>>= 0;
      a >>>= 0;
      // 32 random bits, shifted off zero so logarithms stay finite.
      return (result + 0.5) / 4294967296;
    },
  };
}

function normal(rng: Random): number {
  return Math.sqrt(-2 * Math.log(rng.next())) * Math.cos(2 * Math.PI * rng.next());
}

/** Gamma(shape, 1). For shape < 1, Gamma(shape + 1) x U^(1/shape), taken in logs so tiny shapes do not underflow to NaN. */
export function gamma(rng: Random, shape: number): number {
  if (shape < 1) {
    const g = gamma(rng, shape + 1);
    return Math.exp(Math.log(g) + Math.log(rng.next()) / shape);
  }
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number, v: number;
    do {
      x = normal(rng);
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = rng.next();
    if (u < 1 - 0.0331 * x ** 4 || Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

/** Weibull(shape, 1) by inversion. */
export function weibull(rng: Random, shape: number): number {
  return (-Math.log(rng.next())) ** (1 / shape);
}

/** ln Γ(x) for x > 0 (Lanczos, g = 7). */
export function logGamma(x: number): number {
  const g = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  x -= 1;
  let a = g[0];
  const t = x + 7.5;
  for (let i = 1; i < 9; i++) a += g[i] / (x + i);
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Gamma's shape for a coefficient of variation: cv^2 = 1 / shape. */
export const gammaShapeForCv = (cv: number): number => 1 / (cv * cv);

/** Weibull's shape for a coefficient of variation: solves Γ(1+2/k) / Γ(1+1/k)^2 - 1 = cv^2 by bisection on ln k. */
export function weibullShapeForCv(cv: number): number {
  const target = Math.log(cv * cv + 1);
  const f = (k: number) => logGamma(1 + 2 / k) - 2 * logGamma(1 + 1 / k) - target;
  let lo = Math.log(0.02),
    hi = Math.log(200);
  // f falls as k grows: a larger shape means less spread.
  for (let i = 0; i < 80; i++) {
    const mid = (lo + hi) / 2;
    if (f(Math.exp(mid)) > 0) lo = mid;
    else hi = mid;
  }
  return Math.exp((lo + hi) / 2);
}
