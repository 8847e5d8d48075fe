"""Tuning tools: see what the model hears (`top`), calibrate thresholds to a false-alarm
budget (`calibrate`) and plot a recording's score timeline (`scan --plot`).

All three consume the engine's output through one recording sink
(:mod:`listener.tuning.scoresink`), so they see exactly what the daemon would act on.
"""
