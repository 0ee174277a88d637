// Starts, restarts and stops the bundled Python sidecar over stdio: `<python> -I -S bundled/tool/sidecar.py`, in a
// folder no workspace controls. Not at all in Restricted Mode (extension.ts starts it when trust is granted).
// One restart at a time (RestartQueue); a fresh LanguageClient for every start; popups are never awaited here.
// Everything the sidecar sends is checked (protocol.ts) before any handler sees it.
import * as vscode from 'vscode';
import {
  CloseAction, ErrorAction, LanguageClient, RevealOutputChannelOn, State,
  type LanguageClientOptions, type ServerOptions,
} from 'vscode-languageclient/node';
import { ContainedError, PayloadError, type Checker, type Drops } from './check';
import { displayCommand } from './cli';
import type { SidecarState } from './format';
import type { Log } from './logger';
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
}

export class Sidecar implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private readonly queue: RestartQueue;
  private readonly budget = new CrashBudget();
  private retryTimer: NodeJS.Timeout | undefined;
  private disposed = false;
  /** Whether the sidecar should run (false after Stop Memory Monitor). */
  private wanted = true;
  private state: SidecarState = 'down';
  private chosen: SidecarChoice | undefined;
  private pid: number | undefined;
  /** The client whose payload failed a check (reported once, then stopped). */
  private incompatible: LanguageClient | undefined;
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

  /** Starts or restarts the sidecar; concurrent calls collapse into at most one more restart. */
  restart(): Promise<void> {
    this.wanted = true;
    this.clearRetry();
    this.budget.reset();
    return this.queue.request();
  }

  /** Stops the sidecar (Stop Memory Monitor); goes through the same queue, so it never races a restart. */
  stop(): Promise<void> {
    this.wanted = false;
    this.clearRetry();
    return this.queue.request();
  }

  /** A request whose result is checked against `result` before anyone reads it. */
  async request<R>(method: string, params: unknown, result: Checker<R>): Promise<R> {
    const client = this.client;
    if (!client || client.state !== State.Running) throw new Error('the Crash Guard sidecar is not running');
    const raw: unknown = await client.sendRequest(method, params);
    const checked = this.check(client, method, result, raw);
    if (checked === undefined) throw new Error(`the sidecar's answer to ${method} did not match the protocol`);
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
      this.deps.log.info('Restricted Mode: the sidecar starts when the workspace is trusted');
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
    const choice = await this.deps.interpreter();
    for (const line of choice.passedOver) this.deps.log.warn(`interpreter passed over: ${line}`);
    if (!('interpreter' in choice)) {
      this.deps.log.error('no Python 3.10 or newer found for the memory monitor');
      this.setState('down', 'no Python 3.10+ found; set crashGuard.pythonPath');
      return;
    }
    this.chosen = choice;
    const python = choice.interpreter;
    this.deps.log.info(`monitor interpreter: ${python.path} (source: ${python.source}), Python ${choice.info.version} ` +
      `at ${choice.info.executable}`);
    if (this.isDisposed()) return; // deactivated while probing (a method: re-read after the await)
    const cwd = await this.deps.cwd();
    const sentSettings = this.deps.settings();
    const client = this.createClient(python.path, cwd, sentSettings);
    this.client = client;
    let initError: string | undefined;
    try {
      await client.start();
      // start() can resolve after the connection already closed (the server died during initialize).
      if (!client.isRunning()) throw new Error('the sidecar exited during start-up (see Crash Guard logs)');
    } catch (error) {
      initError = String(error instanceof Error ? error.message : error);
    }
    if (initError !== undefined) {
      this.deps.log.error(`sidecar failed to start: ${initError}`);
      if (this.client === client) this.client = undefined;
      await client.dispose().catch(() => undefined);
      if (/protocol mismatch/.test(initError)) {
        this.setState('incompatible', 'the sidecar speaks another protocol version');
        this.handlers.onIncompatible(`Crash Guard: ${initError}`);
      } else {
        this.setState('down', 'failed to start');
        this.handlers.onFailure(`The Crash Guard sidecar failed to start: ${initError}`);
      }
      return;
    }
    if (this.client !== client) return; // disposed meanwhile
    const mismatch = this.handshakeProblem(client);
    if (mismatch) {
      this.deps.log.error(mismatch);
      await this.stopClient();
      this.setState('incompatible', 'the sidecar speaks another protocol version');
      this.handlers.onIncompatible(`Crash Guard: ${mismatch}`);
      return;
    }
    this.pid = this.serverPid(client);
    this.deps.log.info(`sidecar running (pid ${this.pid ?? '?'}), started in ${Date.now() - started} ms`);
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

  /** The sidecar's announced protocol version must be ours (an older sidecar announces none). */
  private handshakeProblem(client: LanguageClient): string | undefined {
    const experimental = client.initializeResult?.capabilities.experimental as Record<string, unknown> | undefined;
    const raw = experimental?.crashGuard;
    let announced: P.Announcement;
    try {
      announced = P.Announcement(raw, 'capabilities.experimental.crashGuard');
    } catch (error) {
      return `protocol mismatch: the sidecar does not announce its protocol version (${String(error)}); ` +
        `this extension speaks protocol ${P.PROTOCOL_VERSION}`;
    }
    if (announced.protocolVersion !== P.PROTOCOL_VERSION) {
      return `protocol mismatch: this extension speaks protocol ${P.PROTOCOL_VERSION}, the sidecar (crashguard ` +
        `${announced.version}) speaks protocol ${announced.protocolVersion}; install matching versions`;
    }
    this.deps.log.info(`sidecar crashguard ${announced.version}, protocol ${announced.protocolVersion}`);
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
      const message = `the sidecar sent a ${method} this extension does not understand (${error.message})`;
      this.deps.log.error(message);
      if (this.incompatible !== client && this.client === client) {
        this.incompatible = client;
        void this.stopClient().then(() => {
          this.setState('incompatible', 'the sidecar sent a payload of another protocol');
          this.handlers.onIncompatible(`Crash Guard: ${message}. Reinstall the extension (its sidecar is bundled).`);
        });
      }
      return undefined;
    }
  }

  private serverPid(client: LanguageClient): number | undefined {
    // vscode-languageclient keeps the child process privately; the pid only feeds log lines.
    const proc = (client as unknown as { _serverProcess?: { pid?: number } })._serverProcess;
    return proc?.pid;
  }

  private createClient(python: string, cwd: string, settings: P.SidecarSettings): LanguageClient {
    const args = sidecarArgs(this.deps.launcher, this.deps.development);
    this.deps.log.info(`starting sidecar: ${displayCommand(python, args)} (cwd ${cwd})`);
    // -I already ignores PYTHON* variables; dropping them keeps the logged environment honest too.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PYTHON')));
    const serverOptions: ServerOptions = {
      command: python,
      args,
      // No `transport`: plain stdio without the `--stdio` flag the launcher does not take.
      options: { cwd, env: { ...env, PYTHONUNBUFFERED: '1' } },
    };
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
    const client = new LanguageClient('crashGuard', 'Crash Guard sidecar', serverOptions, clientOptions);
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
    this.pid = undefined;
    this.deps.log.warn('sidecar exited unexpectedly');
    this.setState('down', 'exited unexpectedly');
    const delay = this.budget.nextDelay();
    if (delay === undefined) {
      this.handlers.onFailure('The Crash Guard sidecar keeps exiting; automatic restarts are paused.');
      return;
    }
    this.deps.log.info(`restarting sidecar in ${delay} ms`);
    this.clearRetry();
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.wanted) void this.queue.request();
    }, delay);
  }

  private async stopClient(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.pid = undefined;
    if (!client) return;
    try {
      if (client.state === State.Running) await client.stop(2000);
    } catch (error) {
      this.deps.log.warn(`stopping the sidecar: ${String(error)}`);
    }
    await client.dispose().catch(() => undefined);
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
