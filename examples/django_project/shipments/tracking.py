"""The project's one ``TrackingClient``, at module level, shared by every view and command.

Module level is safe with this SDK, and it is the point:

* Creating it connects nothing: the connection pool and the client's background thread start
  on the first call, so importing this module (``manage.py check``, migrations, tests) costs
  nothing and needs no network.
* One client per process means one connection pool and one pace per VTEX account shared by
  all the threads serving requests (the client is thread-safe), so concurrent views keep
  under the account's rate limit together instead of each meeting 429s.
* Prefork servers (gunicorn ``--preload``, uWSGI, Celery prefork) import this module in the
  parent and fork workers, sometimes after the parent has used the client: a forked worker
  notices and starts its own thread and pool on first use, never touching the parent's
  sockets, instead of hanging on a thread that does not exist in the child.
* A forgotten ``close()`` is done at interpreter exit, promptly and quietly.

Missing credentials raise ``ConfigurationError`` at import: the project refuses to start
rather than failing on every request.
"""

from django.conf import settings

from vtex_tracking import TrackingClient

client = TrackingClient.from_env(**settings.VTEX_TRACKING)
