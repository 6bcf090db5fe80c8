"""The data plane: whole requests (`predict`, `infer`, `activations`) → model cache → batching
scheduler → engine → results; the one path /v1 and /v2 share, with its metrics and statistics.

dataplane.py holds DataPlane and the model cache, scheduler.py the dynamic batcher, batching.py
the per-model configuration it applies (`/v1/models/{name}/config`), defaults.py the data plane's
size defaults (which the configuration shares). Import them from their modules: this file imports
nothing, so reading the configuration (service.config, the CLI) does not load the data plane and
its Prometheus metrics, which need the serving process's set-up.
"""
