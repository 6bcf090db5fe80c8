"""The WSGI entry point for gunicorn: `gunicorn -c deploy/gunicorn.conf.py service.wsgi:app`."""

from service.runtime import tune_process

tune_process()  # this process serves: the engine's process-wide settings (see the function)

from service.app import create_app  # noqa: E402 - after the settings that precede NumPy

app = create_app()
# A serving process follows the repository states (load/unload) any worker sets.
app.extensions["convserve"].serving.start_sync()
