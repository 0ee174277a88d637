// "Select Python for the Memory Monitor": when no Python >= 3.10 is found (the gauge reads "RAM: needs Python
// 3.10+"), or whenever the user wants another one, a quick pick of the interpreters on this machine that can run
// the monitor (PATH, system and package-manager folders, pyenv, conda, uv, the Python extensions' environments),
// Browse…, and how to install one. The choice is the monitor's only (training keeps crashGuard.pythonPath), kept in
// the extension's global state: on a remote host that is the host's, where the interpreter is.
import * as os from 'node:os';
import * as vscode from 'vscode';
import type { Log } from './logger';
import type { Memento } from './monitorSwitch';
import { findInterpreters, MINIMUM_SIDECAR_PYTHON, usableForMonitor, versionAtLeast, type Probe } from './python';
import { knownInterpreters } from './pythonExtension';

export const MONITOR_PYTHON_KEY = 'crashGuard.monitorPython';
/** Probes run this many at a time (each starts one Python). */
const PROBE_CONCURRENCY = 4;
const MINIMUM = MINIMUM_SIDECAR_PYTHON.join('.');

export const INSTALL_GUIDE = [
  `The memory monitor runs on any Python ${MINIMUM} or newer and needs nothing installed into it (its libraries ship `,
  'with the extension). Any one of these gives you one without touching the system\'s python3:\n\n',
  '• Debian / Ubuntu: sudo apt install python3.11 (Ubuntu 22.04 and Debian 12 ship 3.10 or newer)\n',
  '• Fedora / RHEL 9: sudo dnf install python3.11\n',
  '• macOS: brew install python@3.12\n',
  '• uv (no root): uv python install 3.12\n',
  '• pyenv (no root): pyenv install 3.12\n',
  '• conda / miniforge (no root): conda create -n crashguard-monitor python=3.12\n\n',
  'Then run "Crash Guard: Select Python for the Memory Monitor" again and pick it, or set crashGuard.pythonPath.',
].join('');

export interface MonitorPythonDeps {
  log: Log;
  /** The extension's global state (the machine's, on a remote host). */
  state: Memento;
  probe(python: string): Promise<Probe>;
  trusted(): boolean;
  /** Start the monitor again with the new choice. */
  restart(): Promise<void>;
}

type Item = vscode.QuickPickItem & { action: 'use' | 'browse' | 'install' | 'forget'; path?: string };

async function probeAll(paths: readonly string[], probe: (p: string) => Promise<Probe>): Promise<{ path: string; probe: Probe }[]> {
  const out = new Array<{ path: string; probe: Probe }>(paths.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < paths.length) {
      const i = next++;
      const file = paths[i] as string;
      out[i] = { path: file, probe: await probe(file) };
    }
  };
  await Promise.all(Array.from({ length: Math.min(PROBE_CONCURRENCY, paths.length) }, worker));
  return out;
}

export class MonitorPython {
  constructor(private readonly deps: MonitorPythonDeps) {}

  /** The interpreter the user picked for the monitor, if any (discovery tries it first). */
  get choice(): string | undefined {
    return this.deps.state.get<string | undefined>(MONITOR_PYTHON_KEY, undefined) || undefined;
  }

  private async use(python: string, version: string): Promise<void> {
    await this.deps.state.update(MONITOR_PYTHON_KEY, python);
    this.deps.log.info(`memory monitor interpreter chosen: ${python} (Python ${version})`);
    await this.deps.restart();
  }

  async select(): Promise<void> {
    if (!this.deps.trusted()) {
      // Probing runs interpreters, some of them the workspace's: never in Restricted Mode.
      void vscode.window.showInformationMessage('Crash Guard: trust this workspace first; nothing runs in Restricted Mode.');
      return;
    }
    const qp = vscode.window.createQuickPick<Item>();
    qp.title = `Python for the Crash Guard memory monitor (${MINIMUM} or newer)`;
    qp.placeholder = 'Looking for interpreters on this machine…';
    qp.busy = true;
    const fixed: Item[] = [
      { label: '$(folder-opened) Browse…', action: 'browse', description: 'an interpreter somewhere else' },
      { label: `$(info) How to install Python ${MINIMUM} or newer`, action: 'install' },
      ...this.choice ? [{ label: '$(discard) Forget my choice', action: 'forget' as const, description: this.choice }] : [],
    ];
    qp.items = fixed;
    qp.show();
    const found = findInterpreters({ env: process.env, home: os.homedir(), extra: await knownInterpreters().catch(() => []) });
    const { usable, passedOver } = usableForMonitor(await probeAll(found, (p) => this.deps.probe(p)));
    for (const line of passedOver) this.deps.log.info(`not offered for the memory monitor: ${line}`);
    qp.items = [
      ...usable.map((u): Item => ({ label: `Python ${u.info.version}`, description: u.path,
        detail: u.path === this.choice ? 'your current choice' : u.info.executable !== u.path ? u.info.executable : undefined,
        action: 'use', path: u.path })),
      { label: '', kind: vscode.QuickPickItemKind.Separator, action: 'browse' },
      ...fixed,
    ];
    qp.placeholder = usable.length > 0 ? `${usable.length} found; the monitor needs nothing installed into it`
      : `No Python ${MINIMUM}+ found here: browse for one, or see how to install one`;
    qp.busy = false;
    const picked = await new Promise<Item | undefined>((resolve) => {
      qp.onDidAccept(() => resolve(qp.selectedItems[0]));
      qp.onDidHide(() => resolve(undefined));
    });
    qp.dispose();
    if (!picked) return;
    if (picked.action === 'use' && picked.path) {
      const u = usable.find((x) => x.path === picked.path);
      await this.use(picked.path, u?.info.version ?? '?');
    } else if (picked.action === 'forget') {
      await this.deps.state.update(MONITOR_PYTHON_KEY, undefined);
      await this.deps.restart();
    } else if (picked.action === 'install') {
      await vscode.window.showInformationMessage(`Install Python ${MINIMUM} or newer`, { modal: true, detail: INSTALL_GUIDE });
    } else {
      await this.browse();
    }
  }

  private async browse(): Promise<void> {
    const uris = await vscode.window.showOpenDialog({ canSelectMany: false, title: `A Python ${MINIMUM}+ interpreter`,
      openLabel: 'Use for the Memory Monitor' });
    const file = uris?.[0]?.fsPath;
    if (!file) return;
    const probe = await this.deps.probe(file);
    if (!probe.ok) {
      void vscode.window.showWarningMessage(`Crash Guard: ${file} cannot run the memory monitor: ${probe.reason}`);
    } else if (!versionAtLeast(probe.info.version, MINIMUM_SIDECAR_PYTHON)) {
      void vscode.window.showWarningMessage(`Crash Guard: ${file} is Python ${probe.info.version}; the memory monitor ` +
        `needs ${MINIMUM} or newer.`, `How to Install Python ${MINIMUM}+`).then((c) => c && void vscode.window
        .showInformationMessage(`Install Python ${MINIMUM} or newer`, { modal: true, detail: INSTALL_GUIDE }));
    } else {
      await this.use(file, probe.info.version);
    }
  }
}
