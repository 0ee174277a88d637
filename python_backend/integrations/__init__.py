"""Crash Guard in the user's own training: a plain loop or notebook (`guarded_run`), MONAI / Ignite
(`monai.CrashGuardHandler`) and Lightning (`lightning.CrashGuardCallback`), all on one guarded step
(training/guarded_step.py) and one registration (runs/hook.py). The public names are in the `crashguard` package.

Importing this package is light; each module imports torch (and its framework) itself.
"""
