// Connects this window to the user's ONE memory monitor on this host, started from the bundled launcher
// (`<python> -I -S bundled/tool/sidecar.py --ensure`, in a folder no workspace controls) when none runs: it runs
// detached, outlives this window, and serves every window over a unix socket (monitorConnection.ts). Where the
// platform cannot host a shared one (macOS) or crashGuard.monitorPerWindow says so, the window runs a monitor of
// its own over stdio instead, from the same launcher, argv and environment (monitorTransport.ts). Not at all
// in Restricted Mode (extension.ts connects when trust is granted). One (re)connect at a time (RestartQueue); a
// fresh LanguageClient for every connection; popups are never awaited here. A monitor that dies is started again by
// the first window to notice (the others find it running). Everything the monitor sends is checked (protocol.ts)
// before any handler sees it.
import type * as net from 'node:net';
import * as vscode from 'vscode';
import {
  CloseAction, ErrorAction, LanguageClient, RevealOutputChannelOn, State,
  type LanguageClientOptions, type ServerOptions,
} from 'vscode-languageclient/node';
import { ContainedError, PayloadError, type Checker, type Drops } from './check';
import { displayCommand } from './cli';
import type { SidecarState } from './format';
import type { Log } from './logger';
import { connectMonitor, ensureMonitor, MonitorUnavailable, nodeConnectDeps, type Connected } from './monitorConnection';
import {
  chooseTransport, knownOutcome, transportLogLine, transportNote, type PerWindowReason,
} from './monitorTransport';
import * as P from './protocol';
import { sidecarArgs, type SidecarChoice } from './python';
import { CrashBudget, RestartQueue } from './restartQueue';

export interface SidecarHandlers {
  onState(state: SidecarState, detail?: string): void;
  /** The sidecar is up (first start and every restart): a moment to ask for runs that crashed meanwhile. */
  onStarted(interpreter: SidecarChoice): void;
  onSample(sample: P.Sample): void;
  onWarning(warning: P.WarningParams): void;
  onRunEvent(event: P.RunEventParams): void;
  onAction(action: P.ActionParams): void;
  /** The sidecar failed to start or keeps dying: show an error with "Restart Sidecar" / "Show Logs". */
  onFailure(message: string): void;
  /** The sidecar speaks another protocol or sent a payload that fails its check: one clear error. */
  onIncompatible(message: string): void;
}

export interface SidecarDeps {
  log: Log;
  outputChannel: vscode.OutputChannel;
  settings(): P.SidecarSettings;
  /** The interpreter for the monitor (Python >= 3.10), or why there is none. */
  interpreter(): Promise<SidecarChoice | { passedOver: string[] }>;
  /** bundled/tool/sidecar.py inside the installed extension. */
  launcher: string;
  /** An extension host started for development (F5 "Run Crash Guard Extension"): the monitor may run from the
   *  source checkout the launcher sits in (never from a packaged extension). */
  development: boolean;
  /** A working directory outside every workspace folder (the extension's global storage). */
  cwd(): Promise<string>;
  /** Whether the workspace is trusted: the sidecar never starts in Restricted Mode. */
  trusted(): boolean;
  /** Whether this window has focus now (the monitor shows a warning in one window: the focused one). */
  focused(): boolean;
  /** crashGuard.monitorPerWindow: a monitor of this window's own over stdio, never the shared one. */
  perWindow(): boolean;
}

/** How this window reaches its monitor (Sidecar.reach). */
interface Reached {
  server: ServerOptions;
  /** The shared monitor: where the starter said it listens, and this window's connection to it. */
  connected?: Connected;
  /** A monitor of this window's own, and why. */
  own?: PerWindowReason;
}

const isChoice = (c: SidecarChoice | { passedOver: string[] }): c is SidecarChoice => 'interpreter' in c;

export class Sidecar implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private readonly queue: RestartQueue;
  /** A monitor that dies is started again at once (every window notices at the same moment; one starts it). */
  private readonly budget = new CrashBudget(5, 180_000, 100);
  /** After an unexpected exit the interpreter chosen last time starts the monitor again (no new probe). */
  private reuseInterpreter = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private disposed = false;
  /** Whether the sidecar should run (false after Stop Memory Monitor). */
  private wanted = true;
  private state: SidecarState = 'down';
  private chosen: SidecarChoice | undefined;
  private pid: number | undefined;
  private socket: net.Socket | undefined;
  /** Stop Memory Monitor: tell the monitor before leaving (it exits once no other window is connected). */
  private release = false;
  /** Restart Memory Monitor asked for a new monitor: the next leave tells the running one to make way. */
  private replace = false;
  /** The client whose payload failed a check (reported once, then stopped). */
  private incompatible: LanguageClient | undefined;
  /** Why this window runs a monitor of its own (undefined: it uses the shared one, or none yet). */
  private ownReason: PerWindowReason | undefined;
  /** Interpreters whose starter said "no shared monitor on this platform": not asked again by this window. */
  private readonly noSharedSaidBy = new Set<string>();
  /** Reasons already said in the log (once per window). */
  private readonly told = new Set<PerWindowReason>();
  /** Bad runs already logged (a bad run is in every sample: logged once, C2). */
  private readonly loggedBadRuns = new Set<string>();

  constructor(private readonly deps: SidecarDeps, private readonly handlers: SidecarHandlers) {
    this.queue = new RestartQueue(() => this.restartNow(), (error) => deps.log.error(`restart failed: ${String(error)}`));
  }

  get currentState(): SidecarState {
    return this.state;
  }

  /** The interpreter the running (or last) sidecar uses. */
  get interpreter(): SidecarChoice | undefined {
    return this.chosen;
  }

  get processId(): number | undefined {
    return this.pid;
  }

  /** The gauge tooltip's line about a monitor of this window's own (null: the shared one). */
  get transportNote(): string | null {
    return transportNote(this.ownReason);
  }

  /** Connects this window to the monitor (starting one if none runs), again if it was connected; `replace`
   *  (Restart Memory Monitor): the running monitor exits for every window and this window starts a new one, which
   *  the others reconnect to. Concurrent calls collapse into at most one more restart. */
  restart(replace = false): Promise<void> {
    this.wanted = true;
    this.release = false;
    this.replace = replace;
    this.clearRetry();
    this.budget.reset();
    return this.queue.request();
  }

  /** Stop Memory Monitor: this window leaves the monitor (which exits if no other window uses it); goes through
   *  the same queue, so it never races a restart. */
  stop(): Promise<void> {
    this.wanted = false;
    this.release = true;
    this.clearRetry();
    return this.queue.request();
  }

  /** This window gained or lost focus: the monitor sends a warning to the focused window only. */
  reportFocus(focused: boolean): void {
    const client = this.client;
    if (!client || client.state !== State.Running) return; // sent again after every (re)connect
    client.sendNotification(P.METHOD_WINDOW_STATE, { focused })
      .catch((e: unknown) => this.deps.log.warn(`sending the window state: ${String(e)}`));
  }

  /** A request whose result is checked against `result` before anyone reads it. */
  async request<R>(method: string, params: unknown, result: Checker<R>): Promise<R> {
    const client = this.client;
    if (!client || client.state !== State.Running) throw new Error('the Crash Guard memory monitor is not running');
    const raw: unknown = await client.sendRequest(method, params);
    const checked = this.check(client, method, result, raw);
    if (checked === undefined) throw new Error(`the memory monitor's answer to ${method} did not match the protocol`);
    return checked;
  }

  /** Sends the sidecar's settings (all of them, so critical >= warning always holds on the other side). */
  async pushSettings(): Promise<void> {
    const client = this.client;
    if (!client || client.state !== State.Running) return; // the next start sends them in initializationOptions
    await client.sendNotification(P.METHOD_DID_CHANGE_CONFIGURATION, { settings: { crashGuard: this.deps.settings() } });
  }

  private isDisposed(): boolean {
    return this.disposed;
  }

  private setState(state: SidecarState, detail?: string): void {
    this.state = state;
    this.handlers.onState(state, detail);
  }

  private clearRetry(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private async restartNow(): Promise<void> {
    if (this.disposed) return;
    await this.stopClient();
    if (!this.deps.trusted()) {
      this.deps.log.info('Restricted Mode: the memory monitor starts when the workspace is trusted');
      this.setState('restricted');
      return;
    }
    if (!this.wanted) {
      this.deps.log.info('memory monitor stopped');
      this.setState('stopped');
      return;
    }
    this.setState('starting');
    const started = Date.now();
    const reuse = this.reuseInterpreter ? this.chosen : undefined;
    this.reuseInterpreter = false;
    const choice = reuse ?? await this.deps.interpreter();
    if (!reuse) for (const line of choice.passedOver) this.deps.log.warn(`interpreter passed over: ${line}`);
    if (!isChoice(choice)) {
      // Not an error toast: the gauge says it and offers Select Python for the Memory Monitor.
      this.deps.log.warn('no Python 3.10 or newer found for the memory monitor');
      this.setState('noPython', choice.passedOver.join('\n'));
      return;
    }
    this.chosen = choice;
    const python = choice.interpreter;
    this.deps.log.info(`monitor interpreter: ${python.path} (source: ${python.source}), Python ${choice.info.version} ` +
      `at ${choice.info.executable}`);
    if (this.isDisposed()) return; // deactivated while probing (a method: re-read after the await)
    const cwd = await this.deps.cwd();
    const args = sidecarArgs(this.deps.launcher, this.deps.development);
    // -I already ignores PYTHON* variables; dropping them keeps the monitor's environment honest too.
    const env = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PYTHON'))), PYTHONUNBUFFERED: '1' };
    const reached = await this.reach(python.path, args, cwd, env);
    if (!reached) return; // failed closed (said) or disposed meanwhile
    this.ownReason = reached.own;
    const sentSettings = this.deps.settings();
    const client = this.createClient(reached.server, sentSettings);
    this.client = client;
    this.socket = reached.connected?.socket;
    let initError: string | undefined;
    try {
      await client.start();
      // start() can resolve after the connection already closed (the monitor died during initialize).
      if (!client.isRunning()) throw new Error('the monitor closed the connection during start-up (see Crash Guard logs)');
    } catch (error) {
      initError = String(error instanceof Error ? error.message : error);
    }
    if (initError !== undefined) {
      this.deps.log.error(`connecting to the memory monitor failed: ${initError}`);
      if (this.client === client) {
        this.client = undefined;
        this.socket = undefined;
      }
      await client.dispose().catch(() => undefined);
      reached.connected?.socket.destroy();
      if (/protocol mismatch/.test(initError)) {
        this.setState('incompatible', 'it speaks another protocol version');
        this.handlers.onIncompatible(`Crash Guard: ${initError}`);
      } else {
        this.setState('down', 'failed to start');
        this.handlers.onFailure(`The Crash Guard memory monitor failed to start: ${initError}`);
      }
      return;
    }
    if (this.client !== client) return; // disposed meanwhile
    const mismatch = this.handshakeProblem(client);
    if (mismatch) {
      this.deps.log.error(mismatch);
      await this.stopClient();
      this.setState('incompatible', 'it speaks another protocol version');
      this.handlers.onIncompatible(`Crash Guard: ${mismatch}`);
      return;
    }
    this.pid = reached.connected ? reached.connected.endpoint.pid ?? undefined : ownServerPid(client);
    this.deps.log.info(`memory monitor connected (pid ${this.pid ?? '?'}${this.ownReason ? ', this window\'s own' : ''}), ` +
      `connected in ${Date.now() - started} ms`);
    this.reportFocus(this.deps.focused());
    this.setState('running');
    // Settings changed while it was starting went nowhere: send the current ones.
    if (JSON.stringify(this.deps.settings()) !== JSON.stringify(sentSettings)) {
      await this.pushSettings().catch((e: unknown) => this.deps.log.warn(`sending settings: ${String(e)}`));
    }
    this.handlers.onStarted(choice);
    // The first gauge should not wait for the first periodic sample.
    try {
      this.handlers.onSample(await this.request(P.METHOD_STATUS, {}, P.Sample));
    } catch (error) {
      this.deps.log.warn(`first status request failed: ${String(error)}`);
    }
  }

  /** How this window reaches a monitor now (monitorTransport.ts): the shared one's socket, from the starter, or a
   *  monitor of its own over stdio (the setting, or a platform whose starter said it cannot host a shared one).
   *  Undefined when there is none: a refusal or a failed start (said here, fail closed), or disposed meanwhile. */
  private async reach(python: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<Reached | undefined> {
    const plan = chooseTransport(this.deps.perWindow(), knownOutcome(python, this.noSharedSaidBy));
    let own = plan.kind === 'perWindow' ? plan.reason : undefined;
    let connected: Connected | undefined;
    if (plan.kind === 'askStarter') {
      this.deps.log.info(`connecting to the memory monitor: ${displayCommand(python, [...args, '--ensure'])} (cwd ${cwd})`);
      try {
        connected = await connectMonitor(nodeConnectDeps(() => ensureMonitor(python, args, cwd, env)));
      } catch (error) {
        const why = String(error instanceof Error ? error.message : error);
        const code = error instanceof MonitorUnavailable ? error.exitCode : undefined;
        const next = chooseTransport(this.deps.perWindow(), { kind: 'failed', code });
        if (next.kind !== 'perWindow') {
          // A refusal (a socket or lock that is not this user's) or a monitor that did not come up: fail closed.
          this.deps.log.error(why);
          this.setState('down', 'failed to start');
          this.handlers.onFailure(`The Crash Guard memory monitor is not available: ${why}`);
          return undefined;
        }
        if (next.reason === 'platform') this.noSharedSaidBy.add(python);
        this.deps.log.info(`the shared monitor's starter: ${why}`);
        own = next.reason;
      }
    }
    if (connected) {
      const { endpoint } = connected;
      this.deps.log.info(`memory monitor ${endpoint.build} (pid ${endpoint.pid ?? '?'}, Python ${endpoint.python ?? '?'}) ` +
        `${endpoint.started ? 'started by this window' : 'already running'}, at ${endpoint.socket}`);
      if (this.isDisposed()) {
        connected.socket.destroy();
        return undefined;
      }
      // The shared monitor is not our child: the connection is the socket (it outlives this window).
      const socket = connected.socket;
      return { server: () => Promise.resolve({ reader: socket, writer: socket }), connected };
    }
    if (own === undefined || this.isDisposed()) return undefined;
    if (!this.told.has(own)) {
      this.told.add(own);
      this.deps.log.info(transportLogLine(own));
    }
    this.deps.log.info(`starting this window's memory monitor: ${displayCommand(python, args)} (cwd ${cwd})`);
    // The model from before the shared monitor: a child of this extension host over stdio, ended with it; no
    // `transport`, so no `--stdio` flag (the launcher takes none).
    return { server: { command: python, args, options: { cwd, env } }, own };
  }

  /** The sidecar's announced protocol version must be ours (an older sidecar announces none). */
  private handshakeProblem(client: LanguageClient): string | undefined {
    const experimental = client.initializeResult?.capabilities.experimental as Record<string, unknown> | undefined;
    const raw = experimental?.crashGuard;
    let announced: P.Announcement;
    try {
      announced = P.Announcement(raw, 'capabilities.experimental.crashGuard');
    } catch (error) {
      return `protocol mismatch: the memory monitor does not announce its protocol version (${String(error)}); ` +
        `this extension speaks protocol ${P.PROTOCOL_VERSION}`;
    }
    if (announced.protocolVersion !== P.PROTOCOL_VERSION) {
      return `protocol mismatch: this extension speaks protocol ${P.PROTOCOL_VERSION}, the memory monitor (crashguard ` +
        `${announced.version}) speaks protocol ${announced.protocolVersion}; install matching versions`;
    }
    this.deps.log.info(`memory monitor crashguard ${announced.version}, protocol ${announced.protocolVersion}`);
    return undefined;
  }

  /** A run left out of a payload because a field of it failed its check: logged once (C2). */
  private badRun(method: string, error: PayloadError): void {
    const key = `${method} ${error.message.replace(/\[\d+\]/g, '[]')}`;
    if (this.loggedBadRuns.has(key) || this.loggedBadRuns.size >= 1000) return;
    this.loggedBadRuns.add(key);
    this.deps.log.warn(`a run in ${method} was left out: ${error.message} (a fault of that run's files, not of the monitor)`);
  }

  /** `raw` through `checker`; a failure is logged and reported once per sidecar, and that sidecar is stopped. A bad
   *  run inside a payload is that run's fault (C2): left out (or its event dropped) and logged once. */
  private check<T>(client: LanguageClient, method: string, checker: Checker<T>, raw: unknown): T | undefined {
    const drops: Drops = [];
    try {
      const checked = checker(raw, '$', drops);
      for (const bad of drops) this.badRun(method, bad);
      return checked;
    } catch (error) {
      if (error instanceof ContainedError) {
        this.badRun(method, error);
        return undefined;
      }
      if (!(error instanceof PayloadError)) throw error;
      const message = `the memory monitor sent a ${method} this extension does not understand (${error.message})`;
      this.deps.log.error(message);
      if (this.incompatible !== client && this.client === client) {
        this.incompatible = client;
        void this.stopClient().then(() => {
          this.setState('incompatible', 'it sent a payload of another protocol');
          this.handlers.onIncompatible(`Crash Guard: ${message}. Reinstall the extension (its memory monitor is bundled).`);
        });
      }
      return undefined;
    }
  }

  private createClient(serverOptions: ServerOptions, settings: P.SidecarSettings): LanguageClient {
    let reachedRunning = false;
    const initializationOptions: P.InitializationOptions = { protocolVersion: P.PROTOCOL_VERSION, settings };
    const clientOptions: LanguageClientOptions = {
      documentSelector: [],
      outputChannel: this.deps.outputChannel,
      revealOutputChannelOn: RevealOutputChannelOn.Never,
      initializationOptions,
      // A refused initialize (protocol mismatch, bad settings) is reported by restartNow, once.
      initializationFailedHandler: () => false,
      errorHandler: {
        error: () => ({ action: ErrorAction.Continue, handled: true }),
        closed: () => {
          // Our own restart logic replaces the client's: a fresh LanguageClient, with a crash budget.
          if (reachedRunning) this.onUnexpectedExit(client);
          return { action: CloseAction.DoNotRestart, handled: true };
        },
      },
    };
    const client = new LanguageClient('crashGuard', 'Crash Guard memory monitor', serverOptions, clientOptions);
    client.onDidChangeState((e) => {
      if (e.newState === State.Running) reachedRunning = true;
    });
    const route = <T>(method: string, checker: Checker<T>, handler: (payload: T) => void) => {
      client.onNotification(method, (raw: unknown) => {
        if (this.client !== client) return;
        const payload = this.check(client, method, checker, raw);
        if (payload !== undefined) handler(payload);
      });
    };
    route(P.METHOD_SAMPLE, P.Sample, (s) => this.handlers.onSample(s));
    route(P.METHOD_WARNING, P.WarningParams, (w) => this.handlers.onWarning(w));
    route(P.METHOD_RUN_EVENT, P.RunEventParams, (e) => this.handlers.onRunEvent(e));
    route(P.METHOD_ACTION, P.ActionParams, (a) => this.handlers.onAction(a));
    return client;
  }

  private onUnexpectedExit(client: LanguageClient): void {
    if (this.disposed || this.client !== client) return;
    this.client = undefined;
    this.socket?.destroy();
    this.socket = undefined;
    this.pid = undefined;
    this.deps.log.warn('the memory monitor closed the connection (it exited or was killed)');
    this.setState('down', 'exited unexpectedly');
    const delay = this.budget.nextDelay();
    if (delay === undefined) {
      this.handlers.onFailure('The Crash Guard memory monitor keeps exiting; automatic restarts are paused.');
      return;
    }
    this.deps.log.info(`reconnecting to the memory monitor (starting it if none runs) in ${delay} ms`);
    this.reuseInterpreter = true;
    this.clearRetry();
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.wanted) void this.queue.request();
    }, delay);
  }

  /** Leaves the monitor (shutdown, exit, close): the monitor goes on for the other windows. */
  private async stopClient(): Promise<void> {
    const client = this.client;
    const socket = this.socket;
    // A monitor of this window's own ends with its connection: nothing to tell it.
    const release = this.release && !this.ownReason;
    const replace = this.replace && !this.ownReason;
    this.replace = false;
    this.client = undefined;
    this.socket = undefined;
    this.pid = undefined;
    this.release = false;
    this.ownReason = undefined;
    if (!client) return;
    try {
      if (client.state === State.Running) {
        if (release || replace) await client.sendNotification(P.METHOD_STOP_MONITOR, replace ? { replace: true } : {});
        await client.stop(2000);
      }
    } catch (error) {
      this.deps.log.warn(`leaving the memory monitor: ${String(error)}`);
    }
    await client.dispose().catch(() => undefined);
    socket?.destroy();
  }

  /** For deactivate: stop and dispose the client, and wait for it. */
  async shutdown(): Promise<void> {
    this.disposed = true;
    this.clearRetry();
    await this.stopClient();
  }

  dispose(): void {
    void this.shutdown();
  }
}

/** The pid of a monitor this window started itself (vscode-languageclient keeps its child privately; the pid only
 *  feeds log lines). */
function ownServerPid(client: LanguageClient): number | undefined {
  return (client as unknown as { _serverProcess?: { pid?: number } })._serverProcess?.pid;
}
