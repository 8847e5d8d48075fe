"""The CLAP model at run time: model directory, sessions, log-mel, towers, prompt bank."""
