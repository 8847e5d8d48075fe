"""From an embedding to decisions: trigger settings, scores, hysteresis, events, detector."""
