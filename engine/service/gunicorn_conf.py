"""gunicorn's configuration file under ``recovery serve`` (``engine.service.supervisor`` passes it
with ``--config``): the ``gunicorn.conf.py`` of the working directory, as gunicorn would
read it without ``--config``, plus one hook.

``child_exit``: when an http worker exits, ``prometheus_client.multiprocess
.mark_process_dead(pid)``, the bookkeeping prometheus_client's multiprocess mode asks
for (it drops the dead process's live-gauge files; counter and histogram files stay: what a
recycled worker counted still counts). A ``child_exit`` of the working directory's file runs
first.

``logconfig_dict`` (unless the working directory's file sets its own logging): its lines
and the webhook's in the service's format, text or JSON (engine.service.log_format).

gunicorn reads every global here whose name is one of its settings: ours start with an
underscore, apart from ``child_exit`` and ``logconfig_dict``.
"""

import os as _os
import runpy as _runpy

_LOCAL = _os.path.join(_os.path.abspath(_os.getcwd()), "gunicorn.conf.py")

if _os.path.exists(_LOCAL):   # what gunicorn does with it when no --config is given
    globals().update({_k: _v for _k, _v in _runpy.run_path(_LOCAL, run_name="__config__")
                      .items() if not _k.startswith("_")})

_their_child_exit = globals().get("child_exit")

if not any(globals().get(_k) for _k in ("logconfig_dict", "logconfig_json", "logconfig")):
    from engine.service.log_format import gunicorn_logconfig as _gunicorn_logconfig
    from engine.service.log_format import said_through_logging as _said_through_logging

    logconfig_dict = _gunicorn_logconfig()
    _said_through_logging()


def child_exit(server, worker):
    if callable(_their_child_exit):
        _their_child_exit(server, worker)
    if _os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        try:
            multiprocess.mark_process_dead(worker.pid)
        except OSError as exc:
            server.log.warning("metrics: mark_process_dead(%s): %s", worker.pid, exc)
