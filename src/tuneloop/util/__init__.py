"""The bottom utilities: files written atomically and privately, the hardware, the paths under TUNELOOP_HOME, the
retry policy for remote calls."""
