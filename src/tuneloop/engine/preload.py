"""Loading the bundled model's fast engine while a chat command is still starting up.

`tuneloop ask` spends about half a second importing what it needs and a third of a second building the model's
onnxruntime session. onnxruntime lets go of the GIL while it builds one, so the CLI starts :func:`preload` in a
thread before its own imports: by the time the command asks for the engine, it is loaded (``get_fast_engine``
hands back the same one). Only what is ready is loaded, for the model the command will use by default: nothing
is converted, printed or raised here, and the command's own path does all of that as before.
"""

from __future__ import annotations

import contextlib
import threading


def preload() -> threading.Thread:
    # Not a daemon: a command that ends first (an error, Ctrl-C) waits for the load to finish, since a thread
    # stopped inside onnxruntime at exit aborts the process ("terminate called without an active exception").
    thread = threading.Thread(target=_load_quietly, name="tuneloop-preload")
    thread.start()
    return thread


def _load_quietly() -> None:
    with contextlib.suppress(Exception):  # the command's own path loads it again and says what is wrong
        _load()


def _load() -> None:
    # Lazy: this runs in a thread beside the CLI's imports, which is the point of the preload.
    from tuneloop.config import load_settings
    from tuneloop.engine.convert import current_fast, engine_mode
    from tuneloop.engine.weights import BASE_MODEL_ID, checkpoint_dir, is_converted

    settings = load_settings()
    if (settings.model or BASE_MODEL_ID) != BASE_MODEL_ID or settings.default_provider != "local":
        return
    mode = engine_mode(settings)
    models_dir = settings.resolved_models_dir
    if mode == "reference" or not is_converted(models_dir):
        return
    folder = current_fast(models_dir, checkpoint_dir(models_dir), None, mode)
    if folder is None:
        return
    # Lazy: nothing more is imported when no converted model is there to load.
    from tuneloop.engine.fast import get_fast_engine
    from tuneloop.util.home import lock_path

    get_fast_engine(folder, model_id=BASE_MODEL_ID, training_lock=lock_path(settings), max_batch=settings.max_batch)
