"""The Redis state backend (scale-out: several replicas sharing one store), built one
protocol at a time like ``sqlite/``. Until every protocol of ``engine.store.base.Store``
is here, ``open_store`` refuses ``redis://`` URLs with that reason: a backend that holds
part of the state is never chosen silently."""
