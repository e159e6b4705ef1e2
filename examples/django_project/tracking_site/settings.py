"""Minimal settings for the Django recipe: one app, no database, VTEX from the environment.

Credentials are read by ``TrackingClient.from_env`` (``VTEX_ACCOUNT_NAME``, ``VTEX_APP_KEY``,
``VTEX_APP_TOKEN`` or ``VTEX_USER_TOKEN``), never written here.
"""

import os

from vtex_tracking import RetryPolicy

# A development default; set DJANGO_SECRET_KEY in production.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "insecure-recipe-only-key")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",")

INSTALLED_APPS = ["shipments"]
# No sessions, auth or CSRF: the one view is an API for machines (put it behind your own
# authentication in a real project).
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "tracking_site.urls"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
TIME_ZONE = "America/Sao_Paulo"

#: Extra arguments of the project's TrackingClient (shipments/tracking.py). A web request
#: should end before the proxy in front gives up, so a view waits at most about 30 s: 5 s for
#: the account's pace, 2 attempts of 10 s, a Retry-After of at most 5 s. VTEX_BASE_URL (read by
#: this recipe, not the SDK) sends elsewhere: a proxy, or `vtex-tracking fake-server`.
VTEX_TRACKING = {
    "base_url": os.environ.get("VTEX_BASE_URL") or None,
    "timeout": 10.0,
    "pace_timeout": 5.0,
    "retry": RetryPolicy(max_attempts=2, max_retry_after=5.0),
}
