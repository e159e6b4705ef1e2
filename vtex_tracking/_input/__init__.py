"""Reading tracking files: JSONL and CSV in VTEX's wire form, streamed line by line, with
their encodings and date formats, into ``TrackingUpdate`` values or ``file:line`` errors.

Shared by the command line (``vtex-tracking push``) and the Celery helpers
(``vtex_tracking.celery.enqueue_file``); it imports only the public models.
"""
