"""The events process (``manage.py watch_hosts``): libvirt events in, database rows and browser pushes out.

- ``supervisor``: one ``HostWatcher`` per enabled host, kept in step with the hosts table (told at
  once through the ``watcher.hosts`` Channels group, re-checked every 30 s).
- ``host``: a host's event connection, its reconnect loop with backoff, the reconcile after every
  (re)connect, and the unreachable mark when the connection dies (keepalive).
- ``coalesce``: a burst of events for one object costs one fetch and one message.
- ``apply``: the database writes, run in threads; ``executors``: those threads.
- ``plan``: which hosts to watch; ``backoff``: when to retry.

Everything runs on one asyncio loop, on which libvirt's own events are dispatched (libvirtaio).
Blocking work never runs on it: libvirt calls go to the host's own thread, ORM calls to a small
pool of database threads, and messages are awaited ``apublish`` calls on the loop itself.
"""
