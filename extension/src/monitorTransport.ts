// How this window reaches a memory monitor: the host's shared one (the starter's `--ensure`, then its unix socket,
// monitorConnection.ts) or one of its own over stdio, the model from before Crash Guard shared one (a child of the
// extension host, ended with it). Its own where the user asked for it (crashGuard.monitorPerWindow) and where the
// starter said this platform cannot host a shared one (no peer credentials: macOS). A refusal of a socket or lock
// that is not this user's is NOT a reason: it stays a visible failure (docs/extension.md says why).
// Pure: no 'vscode' import.

/** The starter's exit code for "no shared monitor on this platform" (crashguard/sidecar/main.py, a test compares). */
export const EXIT_NO_SHARED_MONITOR = 7;
/** The starter's exit code for a runtime folder, socket or lock that is not this user's own. */
export const EXIT_UNSAFE = 5;

export type PerWindowReason = 'setting' | 'platform';

/** What this window knows of the starter for the interpreter it is about to use. */
export type StarterOutcome =
  | { kind: 'notAsked' }
  | { kind: 'answered' }
  /** It exited with `code` (a number), or failed otherwise (not started, timed out, killed): `code` undefined. */
  | { kind: 'failed'; code: number | undefined };

export type Transport =
  /** Run the starter (`--ensure`) and connect to the socket it prints. */
  | { kind: 'askStarter' }
  /** Connect to the socket the starter printed. */
  | { kind: 'shared' }
  /** Start a monitor of this window's own over stdio. */
  | { kind: 'perWindow'; reason: PerWindowReason }
  /** No monitor: the starter's failure is the message (a refusal, a monitor that did not come up). */
  | { kind: 'fail' };

/** Which transport, given the setting and the starter's outcome so far. */
export function chooseTransport(perWindowSetting: boolean, starter: StarterOutcome): Transport {
  if (perWindowSetting) return { kind: 'perWindow', reason: 'setting' };
  switch (starter.kind) {
    case 'notAsked': return { kind: 'askStarter' };
    case 'answered': return { kind: 'shared' };
    case 'failed': return starter.code === EXIT_NO_SHARED_MONITOR ? { kind: 'perWindow', reason: 'platform' } : { kind: 'fail' };
  }
}

/**
 * What the window knows before it asks: the interpreter that already said "no shared monitor on this platform"
 * in this window is not asked again (the platform does not change; another interpreter is asked once).
 */
export function knownOutcome(python: string, noSharedSaidBy: ReadonlySet<string>): StarterOutcome {
  return noSharedSaidBy.has(python) ? { kind: 'failed', code: EXIT_NO_SHARED_MONITOR } : { kind: 'notAsked' };
}

/** The gauge tooltip's line for a monitor of this window's own; null for the shared one. */
export function transportNote(reason: PerWindowReason | undefined): string | null {
  if (reason === 'platform') {
    return '**This platform: one memory monitor per window** (it has no peer credentials, which a monitor shared by ' +
      'every window needs to admit only your windows). Each window samples, warns and acts on its own.';
  }
  if (reason === 'setting') {
    return '**One memory monitor per window** (`crashGuard.monitorPerWindow`): this window samples, warns and acts ' +
      'on its own, not through the monitor its host\'s windows share.';
  }
  return null;
}

/** The log's line, said once per window when it first runs a monitor of its own. */
export function transportLogLine(reason: PerWindowReason): string {
  return reason === 'platform'
    ? 'this platform: one memory monitor per window (no peer credentials for a shared one); this window runs its own over stdio'
    : 'crashGuard.monitorPerWindow is on: this window runs a memory monitor of its own over stdio';
}
