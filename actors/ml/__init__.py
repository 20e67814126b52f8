"""Machine-learning inference: preprocessing over _native, runtimes, tasks."""
