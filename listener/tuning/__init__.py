"""Tuning tools: see what the model hears (`top`), calibrate thresholds to a false-alarm
budget (`calibrate`) and plot a recording's score timeline (`scan --plot`).

All three consume the detector's results like any other sink (`top` reads them live,
`calibrate` and the plot through :mod:`listener.tuning.recorder`), so they see exactly
what the daemon would act on.
"""
