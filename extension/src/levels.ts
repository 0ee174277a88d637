// Threshold levels → colours, and which level changes deserve a notification. Pure: no 'vscode' import.
import type { Level, WarningParams } from './protocol';

const RANK: Record<Level, number> = { normal: 0, warning: 1, critical: 2 };

export function rank(level: Level): number {
  return RANK[level];
}

export function worst(levels: Iterable<Level>): Level {
  let out: Level = 'normal';
  for (const l of levels) if (rank(l) > rank(out)) out = l;
  return out;
}

/** Level of a percentage without hysteresis (the sidecar's level, which has hysteresis, wins when present). */
export function levelFor(percent: number, warningPercent: number, criticalPercent: number): Level {
  if (percent >= criticalPercent) return 'critical';
  if (percent >= warningPercent) return 'warning';
  return 'normal';
}

/** ThemeColor id for a status bar item's background at this level; undefined = the theme's default. */
export function backgroundColorId(level: Level): string | undefined {
  if (level === 'critical') return 'statusBarItem.errorBackground';
  if (level === 'warning') return 'statusBarItem.warningBackground';
  return undefined;
}

/** The status-bar icon at this level: the gauge's own icon when normal, a distinct one at warning and critical,
 *  so a level never shows by colour alone (colour-blind users, themes without those colours, screen readers). */
export function levelIcon(level: Level, normalIcon: string): string {
  if (level === 'critical') return '$(error)';
  if (level === 'warning') return '$(warning)';
  return `$(${normalIcon})`;
}

/** Matching foreground colour ids (VS Code pairs them with the backgrounds above). */
export function foregroundColorId(level: Level): string | undefined {
  if (level === 'critical') return 'statusBarItem.errorForeground';
  if (level === 'warning') return 'statusBarItem.warningForeground';
  return undefined;
}

/**
 * Decides which level changes deserve a notification: one per resource each time it enters a non-normal
 * level it was not already notified about; nothing while it stays there; a return to normal re-arms it.
 */
export class WarningTracker {
  private readonly shown = new Map<string, Level>();

  /** Records `level` for `resource`; true when a notification should be shown now. */
  update(resource: string, level: Level): boolean {
    const previous = this.shown.get(resource) ?? 'normal';
    if (level === 'normal') {
      this.shown.delete(resource);
      return false;
    }
    if (level === previous) return false;
    this.shown.set(resource, level);
    // Entering critical from warning is news; falling back from critical to warning is not.
    return rank(level) > rank(previous);
  }

  current(resource: string): Level {
    return this.shown.get(resource) ?? 'normal';
  }

  reset(): void {
    this.shown.clear();
  }
}

/**
 * Which of one sample's level changes deserve a notification (warnings.ts shows them as one toast):
 * - a resource entering a higher level it was not notified about (WarningTracker);
 * - but not the same resource at the same level again within the cooldown (a use hovering around a threshold
 *   crosses it back and forth: one toast, not one every few minutes);
 * - and not a warning (critical always notifies) while every run it names is one the user said not to warn about.
 */
export class WarningPolicy {
  private readonly tracker = new WarningTracker();
  private readonly lastShown = new Map<string, number>();

  constructor(private readonly cooldownMs: () => number, private readonly now: () => number = Date.now) {}

  decide(batch: readonly WarningParams[], silencedRun: (run: string) => boolean): WarningParams[] {
    const out: WarningParams[] = [];
    for (const w of batch) {
      if (!this.tracker.update(w.resource, w.level)) continue;
      const key = `${w.resource}#${w.level}`;
      const last = this.lastShown.get(key);
      if (last !== undefined && this.now() - last < this.cooldownMs()) continue;
      if (w.level === 'warning' && w.runs.length > 0 && w.runs.every(silencedRun)) continue;
      this.lastShown.set(key, this.now());
      out.push(w);
    }
    return out;
  }

  current(resource: string): Level {
    return this.tracker.current(resource);
  }
}
