"""The micro-batch search behind `crashguard find-batch`: the largest micro-batch whose measured peak memory stays
under a budget, found with real training steps of the recipe (probe.py), a search that closes in on the limit
(search.py), real training crops to probe with (samples.py), and the report: table, JSON, plot and the size written
into the config (report.py)."""
