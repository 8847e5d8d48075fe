"""listener: an open-vocabulary sound-event daemon for small Linux devices.

The audio flows through the modules in this order: ``sources`` -> ``ringbuffer``
-> ``windows`` -> ``logmel`` -> ``audio_tower`` -> ``triggers`` (scores against
``prompts``) -> ``hysteresis`` -> ``events`` -> ``mqtt`` / logs.
"""

__version__ = "0.1.0"
