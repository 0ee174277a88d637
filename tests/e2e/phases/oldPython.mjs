// Issue 22: a remote GPU host whose python3 is older than 3.10 (and crashGuard.pythonPath a Python 3.9): the gauge
// says so plainly, with no error toast and no monitor process. When the Python extension activates later (a
// stand-in with its published API's shape, activated by a command here, by opening a Python file in real life),
// discovery runs again and the monitor starts on its interpreter. "Select Python for the Memory Monitor" offers the
// interpreters on the machine that can run the monitor; picking one restarts it there, and the choice survives a
// window reload.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  check, log, NODE, openWorkbench, PYTHON, quickPickRows, ROOT, ramGauge, RUN, runCommand, sleep, statusText,
  toasts, until,
} from '../harness.mjs';

/** The stand-in Python extension (tests/e2e/fake-python-extension), packaged as ms-python.python. */
function fakePythonExtension(dir) {
  const out = path.join(dir, 'fake-python.vsix');
  execFileSync(path.join(ROOT, 'node_modules', '.bin', 'vsce'), ['package', '--skip-license', '--no-dependencies',
    '--allow-missing-repository', '--out', out], { cwd: path.join(ROOT, 'tests', 'e2e', 'fake-python-extension'), stdio: 'ignore' });
  return out;
}

/** A Python 3.9: pyenv's when the machine has one, else a script that answers the probe as 3.9 (the probe is all
 *  the extension asks of it). */
function python39(dir) {
  const pyenv = path.join(os.homedir(), '.pyenv', 'versions');
  const real = fs.existsSync(pyenv) ? fs.readdirSync(pyenv).filter((v) => v.startsWith('3.9.'))
    .map((v) => path.join(pyenv, v, 'bin', 'python3.9')).find((p) => fs.existsSync(p)) : undefined;
  if (real) return real;
  const fake = path.join(dir, 'python3.9-fake');
  const info = { executable: fake, version: '3.9.18', prefix: '/usr', virtualEnv: false, crashguard: null,
    found: { crashguard: null, torch: null, monai: null }, crashguardScript: null, pip: false };
  fs.writeFileSync(fake, `#!/bin/sh\necho '${JSON.stringify(info)}'\nexit 0\n`, { mode: 0o755 });
  return fake;
}

/** A PATH folder with the machine's tools but no Python except python3 = that 3.9. */
function pathWithOldPython(dir, old) {
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin, { recursive: true });
  for (const name of fs.readdirSync('/usr/bin')) {
    if (/^(python|pydoc|idle|2to3)/.test(name)) continue;
    fs.symlinkSync(path.join('/usr/bin', name), path.join(bin, name));
  }
  fs.symlinkSync(old, path.join(bin, 'python3'));
  return `${path.dirname(NODE)}:${bin}`;
}

export async function oldPython() {
  const dir = path.join(RUN, 'old-python');
  const folder = path.join(dir, 'project');
  fs.mkdirSync(folder, { recursive: true });
  const old = python39(dir);
  log(`old-python: Python 3.9 is ${old}`);
  const wb = await openWorkbench('old-python', { target: `?folder=${encodeURIComponent(folder)}`,
    // VSCODE_CLI=1: the server takes this environment as it is instead of a login shell's (whose rc files put
    // pyenv's shims, and so a newer python3, first on PATH).
    env: { PATH: pathWithOldPython(dir, old), VSCODE_CLI: '1', FAKE_PYTHON_INTERPRETER: PYTHON },
    machineSettings: { 'crashGuard.pythonPath': old }, extraExtensions: [fakePythonExtension(dir)] });
  const { page } = wb;
  try {
    await until(async () => /RAM: needs Python 3\.10\+/.test(await statusText(page)), 60_000, 'the "needs Python 3.10+" gauge');
    await sleep(3000); // a toast, if any, would be up by now
    const shown = await toasts(page);
    log(`old-python: toasts ${JSON.stringify(shown)}`);
    check(!shown.some((x) => x.severity === 'error'), 'no error toast for a missing Python 3.10+');
    check(!shown.some((x) => /Crash Guard/i.test(x.text)), 'no Crash Guard notification at all: the gauge says it');
    check(wb.monitors().length === 0, 'no memory monitor process without a Python 3.10+');
    const label = await page.evaluate(() => [...document.querySelectorAll('#workbench\\.parts\\.statusbar .statusbar-item')]
      .find((el) => /needs Python/.test(el.textContent ?? ''))?.querySelector('[aria-label]')?.getAttribute('aria-label'));
    check(label === 'Crash Guard RAM: needs Python 3.10+', `the item's accessibility label says it (${label})`);
    check(/Python 3\.9\.\d+ is older than 3\.10/.test(wb.logText()), 'the log names the 3.9 that was passed over');
    await wb.shot('old-python.png');

    // The Python extension activates after Crash Guard: discovery runs again, the monitor starts on its interpreter.
    await runCommand(page, 'Fake Python: Activate');
    const lateStart = Date.now();
    await until(() => ramGauge(page), 30_000, 'the gauge once the Python extension is active', 100);
    const [fromExtension] = wb.monitors();
    log(`old-python: the Python extension activated; gauge after ${Date.now() - lateStart} ms, monitor ${fromExtension?.cmdline.join(' ')}`);
    check(fromExtension?.cmdline[0] === PYTHON && wb.logText().includes(`monitor interpreter: ${PYTHON} (source: Python extension)`),
      'a Python extension that activates later is used: the monitor starts on its interpreter');

    // Select Python for the Memory Monitor offers what can run the monitor on this machine (not on PATH here).
    await runCommand(page, 'Crash Guard: Select Python for the Memory Monitor');
    const rows = await until(async () => {
      const r = await quickPickRows(page);
      return r.some((x) => /Python 3\.1\d\.\d/.test(x)) ? r : undefined;
    }, 60_000, 'interpreters in the quick pick', 500);
    log(`old-python: offered ${JSON.stringify(rows)}`);
    check(!rows.some((x) => /Python 3\.9/.test(x)), 'the quick pick offers no Python older than 3.10');
    check(rows.some((x) => /How to install Python 3\.10/.test(x)), 'the quick pick also says how to install one');
    const first = page.locator('.quick-input-list .monaco-list-row', { hasText: /Python 3\.1\d\.\d/ }).first();
    const picked = (await first.innerText()).replace(/\s+/g, ' ');
    await first.click();
    const monitor = await until(() => wb.monitors().find((p) => p.pid !== fromExtension.pid), 30_000, 'the monitor on the pick');
    const percent = await until(() => ramGauge(page), 30_000, 'the gauge after picking an interpreter', 100);
    log(`old-python: picked ${picked}; monitor ${monitor?.cmdline.join(' ')}`);
    check(percent > 0 && monitor && /python3\.1\d|python3$/.test(monitor.cmdline[0]) && monitor.cmdline[0] !== old,
      `picking ${picked} starts the gauge on it (RAM ${percent}%)`);

    // The choice is the host's (global state): a reloaded window starts the gauge on it at once.
    await page.reload();
    await page.locator('.monaco-workbench').waitFor({ timeout: 60_000 });
    await until(() => ramGauge(page), 60_000, 'the gauge after a reload', 100);
    check(/source: chosen for the memory monitor/.test(wb.logText()), 'after a reload the monitor runs on the chosen Python');
    check(wb.consoleProblems.length === 0, `no console problems about Crash Guard (${wb.consoleProblems.join('; ')})`);
  } catch (error) {
    await wb.shot('failure-old-python.png').catch(() => undefined);
    throw error;
  } finally {
    await wb.close();
  }
}
