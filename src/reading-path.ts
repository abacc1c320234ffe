/**
 * The one place that wires the reading path, for every command (run, snapshot,
 * top, check): settings -> users source (with limits.maxUsers) -> mark map ->
 * sources -> collector -> totals. A new command gets the same path by building
 * one; a new source is added to the list of sources in the constructor and nowhere else.
 */
import { addressMarkMap, buildMarkMap, EMPTY_MARK_MAP, markMapSteps, type MarkMap } from './attribution/mark-map.js';
import { UsersSourceError } from './errors.js';
import type { Logger } from './log.js';
import type { Settings } from './settings.js';
import { Collector, type SourceReport } from './sources/collect.js';
import { choiceMessage, type BackendChoice, type BackendSelector } from './sources/iptables/backend.js';
import type { CommandRunner } from './sources/iptables/save-command.js';
import { iptablesSources } from './sources/iptables/source.js';
import { tcSources } from './sources/tc/source.js';
import type { Source } from './sources/source.js';
import { Accumulator, type SeriesLookUp } from './totals/accumulator.js';
import { parseUsersDocument, parseUsersDocumentInSlices, type UsersSnapshot } from './users/document.js';
import { usersSource } from './users/from-settings.js';
import { ConfigManager } from './users/manager.js';
import { inSlices } from './users/slices.js';
import type { UsersSource } from './users/source.js';

export interface ReadingPathOptions {
  settings: Settings;
  log: Logger;
  /** Keep every source's memory between readings (run, top); off: each reading counts whole (snapshot, check). */
  remember: boolean;
  /** List the marks of rules no user owns (check). */
  listUnowned?: boolean;
  /** Saved dumps to read instead of the save commands (snapshot --input/--input6). */
  inputs?: { ipv4?: string; ipv6?: string };
  runner?: CommandRunner;
}

/** What a users update did: the users taken and those refused by limits.maxUsers. */
export interface UsersApplied {
  snapshot: UsersSnapshot;
  map: MarkMap;
  refused: number;
}

export class ReadingPath {
  readonly accumulator = new Accumulator();
  readonly collector: Collector;
  readonly sources: readonly Source[];
  /** The iptables backend choice (auto-detected, or the setting). */
  readonly backend: BackendSelector;
  /** Where the users document comes from; undefined when neither users.file nor users.url is set (users are then known by address). */
  readonly usersSource: UsersSource | undefined;
  private mapping: MarkMap = EMPTY_MARK_MAP;
  /** The users manager of watchUsers(), asked before each reading whether the document changed. */
  private manager: ConfigManager | undefined;
  /** The syncs of watchUsers() not yet done (each waits for the one before): a new mapping being made. */
  private syncing: Promise<void> | undefined;
  /** Whether a users document's mapping is in force (until then, readings wait for the first one). */
  private documentInForce = false;
  /** Readings running now: a new mapping is put in force only when there are none. */
  private readings = 0;
  /** What puts a mapping made during a reading in force, once it ends. */
  private installAfterReading: (() => void) | undefined;
  /** Readings waiting for a sync, told when it pauses (it is large): they go ahead. */
  private readonly waitingForSync = new Set<() => void>();

  constructor(private readonly options: ReadingPathOptions) {
    const { settings, log } = options;
    // An empty table is re-detected every 30 s: the choice is logged when it changes, not each time.
    let loggedChoice: string | undefined;
    const iptables = iptablesSources(settings, {
      remember: options.remember,
      listUnowned: options.listUnowned,
      runner: options.runner,
      inputs: options.inputs,
      onBackend: (choice, previous) => {
        if (choiceKind(choice) === loggedChoice) return;
        loggedChoice = choiceKind(choice);
        log.info(choiceMessage(choice, previous), { backend: choice.backend, rules: choice.rules });
      },
    });
    this.backend = iptables.selector;
    // Every source, in the order of collect.sources: a new source is added here.
    const kinds = settings.collect.sources;
    this.sources = [
      ...(kinds.includes('iptables') ? iptables.sources : []),
      ...(kinds.includes('tc') && !options.inputs?.ipv4 && !options.inputs?.ipv6 ? tcSources(settings, { remember: options.remember, runner: options.runner }) : []),
    ];
    this.collector = new Collector(this.sources, this.accumulator, () => this.mapping);
    this.usersSource = usersSource(settings.users);
    if (!this.usersSource) {
      // No users document at all: users are known by the addresses their rules carry (phase 1).
      this.mapping = addressMarkMap(settings.limits.maxUsers);
      this.accumulator.setUsers(this.mapping, Date.now());
    }
  }

  /** The mapping readings use now. */
  get markMap(): MarkMap {
    return this.mapping;
  }

  /**
   * Reads every source once into the totals. A users document that changed
   * is put in force first when that takes one slice of work (any usual
   * document); a large one is read and mapped in slices while this reading
   * and others run, and is in force from the first reading after it is
   * whole. A reading always runs with one whole mapping.
   */
  async collect(): Promise<SourceReport[]> {
    await this.usersSettled();
    this.readings++;
    try {
      return await this.collector.collect();
    } finally {
      if (--this.readings === 0) {
        const install = this.installAfterReading;
        this.installAfterReading = undefined;
        install?.();
      }
    }
  }

  /**
   * Until the users document read before this reading is in force, or (once
   * one is in force) until its sync first pauses: a reading is held back by
   * at most a slice of a sync's work, never by all of it.
   */
  private async usersSettled(): Promise<void> {
    const manager = this.manager;
    if (!manager) return;
    const settled = (async () => {
      await manager.refresh();
      await this.syncing;
    })();
    if (!this.documentInForce) return settled;
    let goAhead = () => {};
    const paused = new Promise<void>((resolve) => this.waitingForSync.add((goAhead = resolve)));
    await Promise.race([settled, paused]);
    this.waitingForSync.delete(goAhead);
  }

  /** A sync pauses between slices: the readings waiting for it go ahead. */
  private readonly syncPaused = () => {
    for (const goAhead of this.waitingForSync) goAhead();
    this.waitingForSync.clear();
  };

  /** Puts a users document in force: limits.maxUsers applied, the mark map rebuilt, the totals lined up with it. */
  applyUsers(document: UsersSnapshot): UsersApplied {
    const { snapshot, refused } = this.limitUsers(document);
    return this.install(snapshot, buildMarkMap(snapshot, this.options.settings.attribution.breakdown), refused);
  }

  /** limits.maxUsers bounds memory and the series sent on: refuses the rest, and says so. */
  private limitUsers(document: UsersSnapshot): { snapshot: UsersSnapshot; refused: number } {
    const { settings, log } = this.options;
    const { maxUsers } = settings.limits;
    const refused = Math.max(0, document.users.length - maxUsers);
    const snapshot = refused > 0 ? { ...document, users: document.users.slice(0, maxUsers) } : document;
    if (refused > 0) {
      log.warn(
        `the users document lists ${document.users.length} users, more than limits.maxUsers (${maxUsers}): the last ${refused} are not exported and their traffic counts as unattributed; raise limits.maxUsers`,
        { source: document.source },
      );
    }
    return { snapshot, refused };
  }

  /** The one step that changes the mapping in force: the map and the totals together, between readings. */
  private install(snapshot: UsersSnapshot, map: MarkMap, refused: number, lookUp?: SeriesLookUp): UsersApplied {
    this.mapping = map;
    this.accumulator.setUsers(map, Date.now(), lookUp);
    for (const conflict of map.conflicts) {
      this.options.log.warn(`mark ${conflict.mark_id} lists the addresses of several users; it is counted for the first`, conflict);
    }
    return { snapshot, map, refused };
  }

  /**
   * A sync of watchUsers(): the map made and its owners' series looked up in
   * slices, then put in force now, or after the running reading.
   */
  private async syncUsers(document: UsersSnapshot, onApplied: (applied: UsersApplied) => void): Promise<void> {
    const { snapshot, refused } = this.limitUsers(document);
    const map = await inSlices(markMapSteps(snapshot, this.options.settings.attribution.breakdown), this.syncPaused);
    const lookUp = await inSlices(this.accumulator.lookUpSteps(map), this.syncPaused);
    const install = () => {
      this.documentInForce = true;
      onApplied(this.install(snapshot, map, refused, lookUp));
    };
    if (this.readings === 0) install();
    else {
      const earlier = this.installAfterReading;
      this.installAfterReading = () => {
        earlier?.();
        install();
      };
    }
  }

  /**
   * For the long-running commands (run, top): a manager that loads the users
   * document, watches it, and puts every new version in force (see
   * collect()), then tells `onApplied`; undefined without a users source. Its
   * 'error' events are the caller's.
   */
  watchUsers(onApplied: (applied: UsersApplied) => void = () => {}): ConfigManager | undefined {
    if (!this.usersSource) return undefined;
    const manager = new ConfigManager(this.usersSource, undefined, (text, source, previous) => parseUsersDocumentInSlices(text, source, this.syncPaused, previous));
    manager.on('sync', (snapshot) => {
      const sync = (this.syncing ?? Promise.resolve())
        .then(() => this.syncUsers(snapshot, onApplied))
        .catch((error: unknown) => this.options.log.error('putting the users document in force failed unexpectedly; the last mapping stays', { error }));
      this.syncing = sync;
      void sync.finally(() => {
        if (this.syncing === sync) this.syncing = undefined;
      });
    });
    this.manager = manager;
    return manager;
  }

  /**
   * For the one-shot commands (snapshot, check): loads the users document once
   * and puts it in force. Throws UsersSourceError when it cannot be read or
   * fetched, UsersDocumentError when it is invalid; undefined without a source.
   */
  async loadUsersOnce(): Promise<UsersApplied | undefined> {
    const source = this.usersSource;
    if (!source) return undefined;
    let text: string;
    try {
      text = await source.read();
    } catch (error) {
      throw new UsersSourceError(source.name, (error as Error).message, { cause: error });
    }
    return this.applyUsers(parseUsersDocument(text, source.name));
  }
}

/** A backend choice without its rule counts: the backend, and which tables hold rules, are empty or cannot be read. */
function choiceKind({ backend, rules }: BackendChoice): string {
  const state = (n: number | undefined) => (n === undefined ? 'unreadable' : n > 0 ? 'rules' : 'empty');
  return `${backend} (nft ${state(rules.nft)}, legacy ${state(rules.legacy)})`;
}
