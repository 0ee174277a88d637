// Starts, restarts and stops the Python sidecar (`python -m python_backend serve`) over stdio.
// One restart at a time (RestartQueue); a fresh LanguageClient for every start; popups are never awaited here.
import * as vscode from 'vscode';
import {
  CloseAction, ErrorAction, LanguageClient, RevealOutputChannelOn, State,
  type LanguageClientOptions, type ServerOptions,
} from 'vscode-languageclient/node';
import { displayCommand, serveArgs } from './cli';
import type { SidecarState } from './format';
import type { Log } from './logger';
import * as P from './protocol';
import { checkBackend, type Interpreter } from './python';
import { CrashBudget, RestartQueue } from './restartQueue';
import { sidecarSettings, type ExtensionSettings } from './settings';

export interface SidecarHandlers {
  onState(state: SidecarState, detail?: string): void;
  onSample(sample: P.Sample): void;
  onWarning(warning: P.WarningParams): void;
  onRunEvent(event: P.RunEventParams): void;
  onAction(action: P.ActionParams): void;
  /** python_backend is not importable with the chosen interpreter (show "Select Python"). */
  onBackendMissing(interpreter: Interpreter, reason: string): void;
  /** The sidecar failed to start or keeps dying: show an error with "Restart Sidecar" / "Show Logs". */
  onFailure(message: string): void;
}

export interface SidecarDeps {
  log: Log;
  outputChannel: vscode.OutputChannel;
  settings(): ExtensionSettings;
  interpreter(): Promise<Interpreter>;
  cwd(): string | undefined;
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
  private pythonInUse: Interpreter | undefined;
  private pid: number | undefined;

  constructor(private readonly deps: SidecarDeps, private readonly handlers: SidecarHandlers) {
    this.queue = new RestartQueue(() => this.restartNow(), (error) => deps.log.error(`restart failed: ${String(error)}`));
  }

  get currentState(): SidecarState {
    return this.state;
  }

  get interpreter(): Interpreter | undefined {
    return this.pythonInUse;
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

  async request<R>(method: string, params: unknown): Promise<R> {
    const client = this.client;
    if (!client || client.state !== State.Running) throw new Error('the Crash Guard sidecar is not running');
    return client.sendRequest<R>(method, params);
  }

  /** Sends the sidecar's settings (all of them, so critical >= warning always holds on the other side). */
  async pushSettings(settings: ExtensionSettings): Promise<void> {
    const client = this.client;
    if (!client || client.state !== State.Running) return; // the next start sends them in initializationOptions
    await client.sendNotification(P.METHOD_DID_CHANGE_CONFIGURATION, { settings: { crashGuard: sidecarSettings(settings) } });
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
    if (!this.wanted) {
      this.deps.log.info('memory monitor stopped');
      this.setState('stopped');
      return;
    }
    this.setState('starting');
    const started = Date.now();
    const python = await this.deps.interpreter();
    this.pythonInUse = python;
    this.deps.log.info(`Python interpreter: ${python.path} (source: ${python.source})`);
    const cwd = this.deps.cwd();
    const check = await checkBackend(python.path, cwd);
    if (!check.ok) {
      const reason = check.reason ?? 'unknown error';
      this.deps.log.error(`python_backend is not importable with ${python.path}: ${reason}`);
      this.setState('down', `python_backend not importable (${python.path})`);
      this.handlers.onBackendMissing(python, reason);
      return;
    }
    if (this.isDisposed()) return; // deactivated while the check ran
    const sentSettings = sidecarSettings(this.deps.settings());
    const client = this.createClient(python, cwd, sentSettings);
    this.client = client;
    try {
      await client.start();
      // start() can resolve after the connection already closed (the server died during initialize).
      if (!client.isRunning()) throw new Error(`the sidecar exited during start-up (see Crash Guard logs)`);
    } catch (error) {
      this.deps.log.error(`sidecar failed to start: ${String(error)}`);
      if (this.client === client) this.client = undefined;
      await client.dispose().catch(() => undefined);
      this.setState('down', 'failed to start');
      this.handlers.onFailure(`The Crash Guard sidecar failed to start: ${String(error)}`);
      return;
    }
    if (this.client !== client) return; // disposed meanwhile
    this.pid = this.serverPid(client);
    this.deps.log.info(`sidecar running (pid ${this.pid ?? '?'}), started in ${Date.now() - started} ms`);
    this.setState('running');
    // Settings changed while it was starting went nowhere: send the current ones.
    if (JSON.stringify(sidecarSettings(this.deps.settings())) !== JSON.stringify(sentSettings)) {
      await this.pushSettings(this.deps.settings()).catch((e: unknown) => this.deps.log.warn(`sending settings: ${String(e)}`));
    }
    // The first gauge should not wait for the first periodic sample.
    try {
      this.handlers.onSample(await client.sendRequest<P.Sample>(P.METHOD_STATUS, {}));
    } catch (error) {
      this.deps.log.warn(`first status request failed: ${String(error)}`);
    }
  }

  private serverPid(client: LanguageClient): number | undefined {
    // vscode-languageclient keeps the child process privately; the pid only feeds log lines.
    const proc = (client as unknown as { _serverProcess?: { pid?: number } })._serverProcess;
    return proc?.pid;
  }

  private createClient(python: Interpreter, cwd: string | undefined, settings: P.SidecarSettings): LanguageClient {
    const args = serveArgs();
    this.deps.log.info(`starting sidecar: ${displayCommand(python.path, args)} (cwd ${cwd ?? process.cwd()})`);
    const serverOptions: ServerOptions = {
      command: python.path,
      args,
      // No `transport`: plain stdio without the `--stdio` flag the serve command does not take.
      options: { cwd, env: { ...process.env, PYTHONUNBUFFERED: '1' } },
    };
    let reachedRunning = false;
    const clientOptions: LanguageClientOptions = {
      documentSelector: [],
      outputChannel: this.deps.outputChannel,
      revealOutputChannelOn: RevealOutputChannelOn.Never,
      initializationOptions: { settings },
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
    client.onNotification(P.METHOD_SAMPLE, (s: P.Sample) => {
      if (this.client === client) this.handlers.onSample(s);
    });
    client.onNotification(P.METHOD_WARNING, (w: P.WarningParams) => this.handlers.onWarning(w));
    client.onNotification(P.METHOD_RUN_EVENT, (e: P.RunEventParams) => this.handlers.onRunEvent(e));
    client.onNotification(P.METHOD_ACTION, (a: P.ActionParams) => this.handlers.onAction(a));
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
