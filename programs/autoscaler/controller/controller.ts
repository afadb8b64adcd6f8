import * as fs from "node:fs";
import { randomBytes } from "node:crypto";
import { parseWindows } from "../../../stacks/windows";
import { decide, initialState } from "../decision";
import type { AutoscalerState, Decision, PolicyConfig } from "../types";
import {
  Actuator,
  ActuatorState,
  asActuatorState,
  DispatchRequest,
  emptyActuatorState,
  Pipeline,
  WantOutcome,
} from "./actuator";
import type { BillingReader } from "./billing";
import {
  asExternalSpend,
  ControllerFile,
  EXTERNAL_SPEND_FILE,
  externalMonthUsd,
  parseControllerFile,
} from "./contract";
import { DEMAND_METRIC, demandCounters } from "../demand";
import { budgetReplicaCap } from "../budget-cap";
import { type HostResolver, withPresentReplicas } from "./kubernetes";
import {
  asLedger,
  emptyLedger,
  LedgerState,
  ledgerTimeAfterRestart,
  monthNodeSeconds,
  monthOf,
  monthStartMs,
  monthToDateUsd,
  observeDroplets,
  raiseFloor,
  recoveredLedger,
} from "./ledger";
import { errorText, Logger } from "./log";
import { ControllerMetrics } from "./metrics";
import { offAnswer, OffAnswer } from "./off-answer";
import { CounterDeltas, Fetcher, healthy, ReplicaReading, replicaReading, scrape } from "./signals";
import { JsonStore } from "./store";
import { DemandState, demandThisTick, emptyDemandState } from "../../holding/demand";

/**
 * The controller: every tick it reads the config file the deploy rendered (which GPU replicas the
 * stack has, the policy, the pin), the demand (the gatekeeper's allowed `llm` decisions) and each replica's queue, keeps the
 * ledger, calls the pure decision, and asks the pipeline for the wanted node count. Its view is
 * rebuilt from that file and live metrics on every tick; only the learned traffic, the ledger and
 * the actuator's last request are kept on disk, so a restart resumes them and sends no duplicate.
 */

export const STATE_FILE = "state.json";
export const LEDGER_FILE = "ledger.json";
/** How often the optional billing cross-check asks DigitalOcean. */
const BILLING_CHECK_MS = 10 * 60_000;

export interface PersistedState {
  readonly version: 1;
  readonly decision: AutoscalerState;
  readonly actuator: ActuatorState;
  /** When the wake now under way was asked for (the wake → ready histogram). */
  readonly wakeSinceMs: number | null;
}

export interface ControllerDeps {
  readonly configFile: string;
  readonly store: JsonStore;
  readonly fetcher: Fetcher;
  /** The system clock (wall time, ms): decisions, windows, pins, dispatch ids. */
  readonly clock: () => number;
  /**
   * A monotonic clock (ms, any origin) for the time that passes while the process runs: the
   * ledger's clock moves by it, so a step of the system clock neither adds nor removes spend.
   * @default - the system clock (tests with a fake clock that never steps)
   */
  readonly monotonic?: () => number;
  readonly log: Logger;
  /** Undefined: advice mode. */
  readonly pipeline?: Pipeline;
  readonly billing?: BillingReader;
  readonly random?: () => number;
  readonly backoff?: { readonly baseMs: number; readonly maxMs: number };
  /** k8s tier: whether a replica slot's pod exists (its name resolves). @default - DNS */
  readonly resolveHost?: HostResolver;
}

export interface ReplicaStatus {
  readonly node: string;
  readonly healthy: boolean;
  readonly reading?: ReplicaReading;
}

/** What /status reports, and what `npm run hub -- autoscale` reads from it. */
export interface ControllerStatus {
  readonly stack: string;
  readonly mode: "act" | "advice";
  readonly atMs: number;
  readonly deployedNodes: number;
  readonly nodes: { readonly ready: number; readonly starting: number; readonly draining: number };
  readonly replicas: readonly ReplicaStatus[];
  /** Allowed `llm` requests since the previous tick: the demand. Absent when the gatekeeper's counts could not be read. */
  readonly coderRequests?: number;
  /** The demand counters as read this tick (one per key id), for `hub autoscale`'s own deltas. */
  readonly demandCounters?: Readonly<Record<string, number>>;
  readonly signalsUp: boolean;
  readonly decision?: {
    readonly wantedNodes: number;
    readonly reason: string;
    readonly message: string;
    readonly numbers: Readonly<Record<string, number>>;
  };
  readonly dispatch: ActuatorState & { readonly lastOutcome?: WantOutcome };
  readonly ledger: {
    readonly month: string;
    readonly monthToDateUsd: number;
    readonly nodeSeconds: number;
    readonly gpuBudgetUsd: number;
    readonly floorReason?: string;
    readonly accountMonthToDateUsd?: number;
    readonly externalUsd?: number;
  };
  readonly pin?: { readonly nodes: number; readonly untilMs: number };
  readonly wakeSinceMs?: number;
}

function asPersisted(v: unknown): PersistedState | undefined {
  if (typeof v !== "object" || v === null) return undefined;
  const s = v as Record<string, unknown>;
  const decision = s.decision as AutoscalerState | undefined;
  const actuator = asActuatorState(s.actuator);
  if (
    s.version !== 1 ||
    !decision ||
    decision.version !== 1 ||
    typeof decision.wantedNodes !== "number" ||
    !Array.isArray(decision.learned?.startBySlot) ||
    !actuator
  )
    return undefined;
  if (s.wakeSinceMs !== null && typeof s.wakeSinceMs !== "number") return undefined;
  return { version: 1, decision, actuator, wakeSinceMs: s.wakeSinceMs as number | null };
}

export const policyFromFile = (file: ControllerFile): PolicyConfig => {
  const { gpuWindows, ...rest } = file.policy;
  return { ...rest, windows: parseWindows(gpuWindows).windows };
};

export class Controller {
  readonly metrics = new ControllerMetrics();
  private file: ControllerFile;
  private state: AutoscalerState;
  private ledger: LedgerState;
  private readonly actuator: Actuator;
  private readonly deltas = new CounterDeltas();
  private wakeSinceMs: number | null;
  private offAnswered = 0;
  private holderDone = 0;
  private immediateTickMs = -Infinity;
  private demandState: DemandState = emptyDemandState();
  private last?: ControllerStatus;
  private lastDecision?: Decision;
  private billingCheckedMs = -Infinity;
  /** The monotonic clock's reading when the ledger was last updated by this process (undefined before the first tick). */
  private monotonicAtLedger?: number;
  private accountMonthToDateUsd?: number;
  /** Fine-tuning jobs' spend this month (EXTERNAL_SPEND_FILE), as last read. */
  private externalUsd = 0;
  private externalMonth?: string;
  private ticking: Promise<ControllerStatus | undefined> | undefined;
  private tickAgain = false;

  private constructor(
    private readonly deps: ControllerDeps,
    file: ControllerFile,
    persisted: PersistedState | undefined,
    ledger: LedgerState,
  ) {
    this.file = file;
    // A fresh start has no request history: its idle clock starts now, or a running GPU would look idle forever and be let go on the first tick.
    this.state = persisted?.decision ?? { ...initialState(file.replicas.length), lastRequestMs: deps.clock() };
    this.wakeSinceMs = persisted?.wakeSinceMs ?? null;
    this.ledger = ledger;
    this.actuator = new Actuator(
      deps.pipeline,
      {
        // A wake's pipeline run holds until vLLM answers; past twice a cold start (and 10 min) the stack is taken not to be coming, and the count may be asked for again.
        catchUpMs: (2 * file.policy.coldStartSeconds + 600) * 1000,
        backoff: deps.backoff,
        random: deps.random,
        events: {
          onAttempt: (request, result, next) => {
            if (result.ok)
              deps.log.info("dispatch accepted", {
                nodes: request.nodes,
                reason: request.reason,
                decisionId: request.decisionId,
                status: result.status,
              });
            else {
              this.metrics.dispatchFailures.inc();
              deps.log.warn("dispatch failed; will retry", {
                nodes: request.nodes,
                decisionId: request.decisionId,
                status: result.status,
                error: result.message,
                retryAtMs: next,
                retryInSeconds: next === undefined ? undefined : Math.round((next - deps.clock()) / 1000),
              });
            }
          },
        },
      },
      persisted?.actuator ?? emptyActuatorState(),
    );
  }

  /** Reads the config file (required) and what was persisted; a corrupt state or ledger is logged and started afresh, the ledger never below what may have been spent. */
  static async start(deps: ControllerDeps): Promise<Controller> {
    const file = parseControllerFile(fs.readFileSync(deps.configFile, "utf8"));
    const now = deps.clock();
    const stateRead = deps.store.read(STATE_FILE, asPersisted);
    let persisted: PersistedState | undefined;
    if (stateRead.kind === "ok") {
      persisted = stateRead.value;
      if (stateRead.from === "previous")
        deps.log.warn("state file unreadable; resumed from its previous copy", { problem: stateRead.problem });
    } else if (stateRead.kind === "corrupt") {
      deps.log.error(
        "state file unreadable: learned traffic starts afresh, the view is rebuilt from the config file and live metrics",
        { problem: stateRead.problem },
      );
      deps.store.quarantine(STATE_FILE, now);
    }
    const ledgerRead = deps.store.read(LEDGER_FILE, asLedger);
    let ledger: LedgerState;
    if (ledgerRead.kind === "ok") {
      ledger = ledgerRead.value;
      // The copy is one tick older: the droplets open in it stay open, so nothing is lost but a tick, which the next observation counts again.
      if (ledgerRead.from === "previous")
        deps.log.warn("ledger unreadable; resumed from its previous copy (one tick older)", {
          problem: ledgerRead.problem,
        });
    } else if (ledgerRead.kind === "missing" && stateRead.kind === "missing" && !deps.store.hasAnyFile()) {
      // A first start: nothing was ever written here. (A billing token's figure still raises it at the first tick.)
      ledger = emptyLedger(now);
    } else {
      // Unreadable, or missing beside a previous run's files: lost either way, and money is never forgotten.
      const problem =
        ledgerRead.kind === "missing"
          ? `${LEDGER_FILE} and its copy are missing, though ${deps.store.dir} holds a previous run's files`
          : ledgerRead.problem;
      const account = deps.billing ? await deps.billing.monthToDateUsd() : undefined;
      ledger = recoveredLedger(now, problem, {
        accountMonthToDateUsd: account,
        maxNodes: file.policy.maxNodes,
        nodeHourlyUsd: file.policy.nodeHourlyUsd,
      });
      deps.log.error("ledger lost: started again from a bound, so spend is never under-counted", {
        problem,
        floorUsd: ledger.floorUsd,
        reason: ledger.floorReason,
      });
      if (ledgerRead.kind === "corrupt") deps.store.quarantine(LEDGER_FILE, now);
    }
    const controller = new Controller(deps, file, persisted, ledger);
    controller.metrics.gpuBudget.set(file.policy.gpuBudgetUsd);
    controller.metrics.ledgerFloor.set(ledger.floorUsd);
    return controller;
  }

  get acting(): boolean {
    return this.actuator.acting;
  }

  status(): ControllerStatus | undefined {
    return this.last;
  }

  /**
   * A request met the off state: answer it and tick now. It is demand only when it came through
   * the door (`allowed`: Traefik forwarded the gatekeeper's key id with it); the off port serves
   * the CPU node's Docker network, where anything else could call it.
   */
  answerOff(allowed = true): OffAnswer {
    this.holderArrived(allowed);
    return this.offAnswerNow();
  }

  /** The holder (programs/holding/) received a coder request: demand (when it came through the door, as above), and a tick now so it wakes the GPU. */
  holderArrived(allowed = true): void {
    if (allowed) this.offAnswered++;
    // Only a request that may wake the GPU is worth a tick now, and one a second at most: fallback traffic must not set off a tick per request.
    const now = this.deps.clock();
    if ((this.lastDecision?.wantedNodes ?? 0) > 0 || now - this.immediateTickMs < 1000) return;
    this.immediateTickMs = now;
    this.requestTick().catch((err: unknown) => this.deps.log.error("tick failed", { error: errorText(err) }));
  }

  /** The holder finished answering one: the gateway's completion-time counter will count it again (programs/holding/demand.ts). */
  holderFinished(): void {
    this.holderDone++;
  }

  /** The file's view the holder needs: where the replicas answer, what it may hold, where the CPU stand-in is. */
  get holdingView(): { readonly replicas: ControllerFile["replicas"]; readonly holding: ControllerFile["holding"] } {
    return { replicas: this.file.replicas, holding: this.file.holding };
  }

  /** What a request that nothing serves is answered now (state, Retry-After), without counting it. */
  offAnswerNow(): OffAnswer {
    const now = this.deps.clock();
    return offAnswer({
      nowMs: now,
      acting: this.actuator.acting,
      lastReason: this.lastDecision?.reason,
      pin: this.file.pin ?? undefined,
      wakeSinceMs: this.wakeSinceMs ?? this.actuator.outstanding(now, this.file.replicas.length)?.sinceMs,
      coldStartSeconds: this.file.policy.coldStartSeconds,
      monthToDateUsd: monthToDateUsd(
        this.ledger,
        this.ledgerTime(now).ledgerMs,
        this.file.policy.nodeHourlyUsd,
        this.externalUsd,
      ),
      gpuBudgetUsd: this.file.policy.gpuBudgetUsd,
    });
  }

  /** Runs a tick unless one runs already (then one more follows it). */
  requestTick(): Promise<ControllerStatus | undefined> {
    if (this.ticking) {
      this.tickAgain = true;
      return this.ticking;
    }
    this.ticking = (async () => {
      let status: ControllerStatus | undefined;
      try {
        do {
          this.tickAgain = false;
          status = await this.tick();
        } while (this.tickAgain);
      } finally {
        this.ticking = undefined;
      }
      return status;
    })();
    return this.ticking;
  }

  get tickSeconds(): number {
    return this.file.tickSeconds;
  }

  private readFile(): ControllerFile {
    try {
      this.file = parseControllerFile(fs.readFileSync(this.deps.configFile, "utf8"));
      this.metrics.gpuBudget.set(this.file.policy.gpuBudgetUsd);
    } catch (err) {
      // A half-written or bad file: keep the last good one (the deploy writes it whole, so this is rare).
      this.deps.log.error("config file unreadable; keeping the last good one", {
        file: this.deps.configFile,
        error: errorText(err),
      });
    }
    return this.file;
  }

  private async tick(): Promise<ControllerStatus> {
    const { fetcher, clock, log } = this.deps;
    // In the k8s tier only the StatefulSet slots whose pods exist are deployed.
    const file = await withPresentReplicas(this.readFile(), this.deps.resolveHost);
    const policy = policyFromFile(file);
    const now = clock();

    // Demand: the gatekeeper's allowed `llm` decisions. A scrape without its counter family is not
    // the gatekeeper's (or not yet): as blind as no answer. Requests this controller answered while
    // off are demand too, but only beside a readable count (they cover the first tick after a restart).
    // The gatekeeper counts a request when it arrives, as the holder does: a held one counts once (programs/holding/demand.ts).
    const scraped = await scrape(fetcher, file.demand.metricsUrl);
    const counters = scraped?.has(DEMAND_METRIC) ? demandCounters(scraped) : undefined;
    const holder = { arrived: this.offAnswered, finished: this.holderDone };
    this.offAnswered = 0;
    this.holderDone = 0;
    let coderRequests: number | undefined;
    if (counters) {
      const baseline = this.deltas.snapshot() === undefined;
      const counted = demandThisTick("arrival", this.deltas.next(counters), holder, this.demandState, baseline);
      this.demandState = counted.state;
      coderRequests = counted.demand;
    }

    const replicas: ReplicaStatus[] = await Promise.all(
      file.replicas.map(async (r) => {
        if (!(await healthy(fetcher, r.healthUrl))) return { node: r.node, healthy: false };
        const families = await scrape(fetcher, r.metricsUrl);
        return { node: r.node, healthy: true, reading: families ? replicaReading(families) : undefined };
      }),
    );
    const ready = replicas.filter((r) => r.healthy);
    const readings = ready.every((r) => r.reading) ? ready.map((r) => r.reading!) : undefined;

    // Nodes the deploy dropped but that still answer: draining (they left the routes first).
    const named = new Set(file.replicas.map((r) => r.node));
    const leaving = Object.entries(this.ledger.open).filter(([node]) => !named.has(node));
    const stillAnswering = new Set<string>();
    await Promise.all(
      leaving.map(async ([node, d]) => (await healthy(fetcher, d.healthUrl)) && stillAnswering.add(node)),
    );

    const deployed = file.replicas.length;
    const outstanding = this.actuator.outstanding(now, deployed);
    // The accepted request that brought the stack to its count, even once the deploy caught up (this tick is when new nodes appear).
    const accepted = this.actuator.snapshot().accepted;
    const { ledgerMs, monotonicMs } = this.ledgerTime(now);
    this.ledger = observeDroplets(this.ledger, {
      nowMs: ledgerMs,
      wallMs: now,
      deployed: file.replicas.map((r) => ({ node: r.node, healthUrl: r.healthUrl })),
      stillAnswering,
      wakeAcceptedMs:
        accepted && accepted.request.nodes > 0 && accepted.request.nodes >= deployed ? accepted.acceptedMs : undefined,
      createSeconds: file.timing.createSeconds,
      destroySeconds: file.timing.destroySeconds,
    });
    this.monotonicAtLedger = monotonicMs;
    this.readExternalSpend(now);
    await this.checkBilling(ledgerMs, file);
    const spend = monthToDateUsd(this.ledger, ledgerMs, policy.nodeHourlyUsd, this.externalUsd);

    const starting =
      deployed - ready.length + (outstanding && outstanding.nodes > deployed ? outstanding.nodes - deployed : 0);
    const nodes = { ready: ready.length, starting, draining: stillAnswering.size };
    const pin = file.pin ?? undefined;
    const decision = decide(
      policy,
      { nowMs: now, nodes, coderRequests, replicas: readings, monthToDateUsd: spend, pin },
      this.state,
    );
    this.state = decision.state;
    this.lastDecision = decision;

    if (ready.length > 0 && this.wakeSinceMs !== null) {
      const seconds = (now - this.wakeSinceMs) / 1000;
      this.metrics.wakeReady.observe(seconds);
      log.info("GPU replica ready after wake", { seconds: Math.round(seconds) });
      this.wakeSinceMs = null;
    }

    // A blind tick holds: nothing is asked of the pipeline on metrics that could not be read.
    let outcome: WantOutcome | undefined;
    if (decision.reason !== "hold-metrics-missing") {
      const request: DispatchRequest = {
        stack: file.stack,
        nodes: decision.wantedNodes,
        reason: decision.reason,
        decisionId: `${new Date(now).toISOString().replace(/[-:.]/g, "")}-${decision.wantedNodes}-${randomBytes(3).toString("hex")}`,
      };
      outcome = this.actuator.want(request, deployed, now);
      if (
        (outcome === "queued" || outcome === "replaced") &&
        deployed === 0 &&
        ready.length === 0 &&
        decision.wantedNodes > 0
      )
        this.wakeSinceMs ??= now;
      if (decision.wantedNodes === 0 && ready.length === 0) this.wakeSinceMs = null;
    }
    await this.actuator.step(clock(), clock);
    // What the status and metrics show: a dispatch this very tick made a node starting.
    const afterStep = this.actuator.outstanding(clock(), deployed);
    const shown = {
      ...nodes,
      starting: Math.max(
        nodes.starting,
        deployed - ready.length + (afterStep && afterStep.nodes > deployed ? afterStep.nodes - deployed : 0),
      ),
    };

    const signalsUp = coderRequests !== undefined && (ready.length === 0 || readings !== undefined);
    this.persist();

    const m = this.metrics;
    m.wantedNodes.set(decision.wantedNodes);
    m.nodes.set({ state: "ready" }, shown.ready);
    m.nodes.set({ state: "starting" }, shown.starting);
    m.nodes.set({ state: "draining" }, shown.draining);
    m.decided(decision.reason);
    m.monthSpend.set(spend);
    m.ledgerFloor.set(this.ledger.floorUsd);
    m.budgetMaxReplicas.set(budgetReplicaCap(policy, spend));
    m.signalsUp.set(signalsUp ? 1 : 0);
    const snapshot = this.actuator.snapshot();
    m.dispatchPending.set(snapshot.pending && snapshot.pending.failures > 0 ? 1 : 0);

    log.info("decision", {
      stack: file.stack,
      reason: decision.reason,
      wantedNodes: decision.wantedNodes,
      message: decision.message,
      numbers: decision.numbers,
      mode: this.actuator.acting ? "act" : "advice",
      dispatch: outcome ?? "held",
      ...(outcome === "advice"
        ? { advice: `would ask the pipeline for ${decision.wantedNodes} GPU node(s); no dispatch token is set` }
        : {}),
    });

    this.last = {
      stack: file.stack,
      mode: this.actuator.acting ? "act" : "advice",
      atMs: now,
      deployedNodes: deployed,
      nodes: shown,
      replicas,
      coderRequests,
      demandCounters: counters ? Object.fromEntries(counters) : undefined,
      signalsUp,
      decision: {
        wantedNodes: decision.wantedNodes,
        reason: decision.reason,
        message: decision.message,
        numbers: decision.numbers,
      },
      dispatch: { ...snapshot, lastOutcome: outcome },
      ledger: {
        month: this.ledger.month,
        monthToDateUsd: spend,
        nodeSeconds: monthNodeSeconds(this.ledger, ledgerMs),
        gpuBudgetUsd: policy.gpuBudgetUsd,
        floorReason: this.ledger.floorReason,
        accountMonthToDateUsd: this.accountMonthToDateUsd,
        externalUsd: this.externalUsd,
      },
      pin,
      wakeSinceMs: this.wakeSinceMs ?? undefined,
    };
    return this.last;
  }

  /** A file it cannot read keeps the last value it could: spend is never forgotten by a bad write. */
  private readExternalSpend(now: number): void {
    const read = this.deps.store.read(EXTERNAL_SPEND_FILE, asExternalSpend);
    if (read.kind === "ok") {
      // Within a month the figure only rises: a file rewritten from an older copy does not lower spend.
      const month = monthOf(now);
      const usd = externalMonthUsd(read.value, now);
      this.externalUsd = month === this.externalMonth ? Math.max(this.externalUsd, usd) : usd;
      this.externalMonth = month;
    } else if (read.kind === "corrupt")
      this.deps.log.error("external spend file unreadable; keeping the last value read", {
        problem: read.problem,
        externalUsd: this.externalUsd,
      });
  }

  /**
   * Every 10 minutes with a billing token: DigitalOcean's month-to-date usage, less the always-on
   * costs accrued so far this month (the file's fixedMonthlyUsd, pro rata), is what the GPU has
   * at least cost; a ledger below it is raised to it (droplets the controller never saw, a ledger
   * restored from an old copy). A figure below the ledger changes nothing: the ledger errs high on purpose.
   */
  private async checkBilling(at: number, file: ControllerFile): Promise<void> {
    // On the ledger's clock, which never runs back: a clock stepped back does not make it ask every tick.
    if (!this.deps.billing || at - this.billingCheckedMs < BILLING_CHECK_MS) return;
    this.billingCheckedMs = at;
    const account = await this.deps.billing.monthToDateUsd();
    if (account === undefined) {
      this.deps.log.warn("billing cross-check: DigitalOcean's month-to-date usage could not be read");
      return;
    }
    this.accountMonthToDateUsd = account;
    const start = monthStartMs(at);
    const end = Date.UTC(new Date(at).getUTCFullYear(), new Date(at).getUTCMonth() + 1, 1);
    const fixedSoFar = (file.fixedMonthlyUsd * (at - start)) / (end - start);
    const gpuShare = Math.max(0, account - fixedSoFar);
    const ledgerUsd = monthToDateUsd(this.ledger, at, file.policy.nodeHourlyUsd);
    const raise = gpuShare > ledgerUsd;
    if (raise)
      this.ledger = raiseFloor(
        this.ledger,
        at,
        gpuShare,
        `DigitalOcean's month-to-date usage ($${account.toFixed(2)}, less $${fixedSoFar.toFixed(2)} of always-on costs so far) is above what the ledger counted ($${ledgerUsd.toFixed(2)}); the month's GPU spend is taken as at least $${gpuShare.toFixed(2)}`,
      );
    this.deps.log[raise ? "warn" : "info"]("billing cross-check", {
      ledgerGpuUsd: Math.round(ledgerUsd * 100) / 100,
      accountMonthToDateUsd: account,
      accountGpuShareUsd: Math.round(gpuShare * 100) / 100,
      ledgerRaised: raise,
    });
  }

  /**
   * The ledger's clock now: its last update plus the monotonic time since, or, before this
   * process's first tick, plus the system clock's time since (the downtime).
   */
  private ledgerTime(wallMs: number): { ledgerMs: number; monotonicMs: number } {
    const monotonicMs = this.deps.monotonic ? this.deps.monotonic() : wallMs;
    const ledgerMs =
      this.monotonicAtLedger === undefined
        ? ledgerTimeAfterRestart(this.ledger, wallMs)
        : this.ledger.updatedMs + Math.max(0, monotonicMs - this.monotonicAtLedger);
    return { ledgerMs, monotonicMs };
  }

  private persist(): void {
    const state: PersistedState = {
      version: 1,
      decision: this.state,
      actuator: this.actuator.snapshot(),
      wakeSinceMs: this.wakeSinceMs,
    };
    try {
      this.deps.store.write(STATE_FILE, state);
      this.deps.store.write(LEDGER_FILE, this.ledger);
    } catch (err) {
      // A full or read-only disk: keep deciding from memory; the next tick tries again.
      this.deps.log.error("could not persist state and ledger", { dir: this.deps.store.dir, error: errorText(err) });
    }
  }

  /** For tests and /status: the decision input's last reading of the ledger. */
  ledgerSnapshot(): LedgerState {
    return this.ledger;
  }
}
