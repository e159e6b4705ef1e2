#!/usr/bin/env bash
# push-tracking.sh: push one carrier file to VTEX from cron, and keep what failed for the next
# run. A recipe: copy it and adapt it.
#
#   push-tracking.sh INPUT [vtex-tracking push options...]
#
# crontab, every 15 minutes, a CSV saved by Excel on a Brazilian Windows machine:
#   */15 * * * *  INPUT_ENCODING=cp1252 INPUT_DATE_FORMAT=dd/mm/yyyy \
#                 /opt/carrier/push-tracking.sh /srv/vtex/inbox/eventos.csv >>/var/log/vtex.log 2>&1
#
# Credentials come from VTEX_ACCOUNT_NAME, VTEX_APP_KEY and VTEX_APP_TOKEN (or --accounts FILE
# among the options): never put a token on the command line, where every user of the machine
# can read it in the process list.
#
# Other settings, all optional:
#   STATE_DIR          where done/ and failed.jsonl live (default: the input's directory)
#   INPUT_ENCODING     --encoding of INPUT only (e.g. cp1252)
#   INPUT_DATE_FORMAT  --date-format of INPUT only (e.g. dd/mm/yyyy)
#   VTEX_TRACKING      the command (default: vtex-tracking)
#   PYTHON             the Python that reads the JSON summaries (default: python3)
#
# Exit status: 0 everything confirmed; 1 some updates failed (kept in $STATE_DIR/failed.jsonl,
# retried first by the next run); 2 usage error, bad credentials or unreadable input (nothing
# moved: fix it and the next run picks it up); 130 interrupted (what was not confirmed is
# kept); 70 the command ended without a JSON summary (a crash: nothing moved).

# No `set -e`: the exit status of vtex-tracking is information, acted on below, not a failure.
set -u

INPUT=${1:?usage: push-tracking.sh INPUT [vtex-tracking push options...]}
shift
STATE_DIR=${STATE_DIR:-$(dirname -- "$INPUT")}
VTEX_TRACKING=${VTEX_TRACKING:-vtex-tracking}
PYTHON=${PYTHON:-python3}
FAILED="$STATE_DIR/failed.jsonl"
mkdir -p -- "$STATE_DIR/done" || exit 2

# cron starts the next run on time even when this one is still going (a long Retry-After):
# two runs retrying the same failures file would send the same updates twice, out of order.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$STATE_DIR/.push-tracking.lock"
    if ! flock -n 9; then
        echo "push-tracking: another run is still going; this one skips" >&2
        exit 0
    fi
fi

log() { echo "push-tracking: $(date '+%Y-%m-%d %H:%M:%S') $*" >&2; }

# status JSON_FILE: print "summary TOTAL SUCCEEDED FAILED UNREAD" or "error KIND", from the one
# JSON object that `push --json` writes on stdout; "none" when there is none (a crash). Python
# rather than jq, which many servers lack; the message of an error goes to the log.
status() {
    "$PYTHON" - "$1" <<'PY'
import json
import sys

try:
    with open(sys.argv[1], encoding="utf-8") as stream:
        doc = json.load(stream)
except (OSError, ValueError):
    print("none")
    raise SystemExit(0)
if "error" in doc:
    print("push-tracking:", doc["error"]["message"], file=sys.stderr)
    print("error", doc["error"]["kind"])
else:
    unread = 0 if doc["unread_after"] is None else 1
    print("summary", doc["total"], doc["succeeded"], doc["failed"], unread)
PY
}

# push OUT_JSON FAILED_FILE ARGS...: one push, its JSON summary in OUT_JSON, every update not
# confirmed in FAILED_FILE (created even when empty: an explicit --failed always is).
push() {
    local out=$1 failed=$2
    shift 2
    "$VTEX_TRACKING" push "$@" --json -q --failed "$failed" >"$out"
}

work=$(mktemp -d "$STATE_DIR/.push-tracking.XXXXXX") || exit 2
trap 'rm -rf -- "$work"' EXIT

# 1. The failures kept by the last run go first, in a run of their own. First: an update
#    carries an invoice's whole history, so an older one must never follow a newer one of the
#    same invoice. Of their own: the failures file is always UTF-8 JSONL with ISO dates, so
#    INPUT's --encoding and --date-format must not apply to it. (Caveat: if an invoice's older
#    update keeps failing while a newer one is confirmed, retrying the older one would put the
#    older history back; check failed.jsonl when the same invoice fails run after run.)
retry_failed="$work/retry.failed.jsonl"
: >"$retry_failed"
if [ -s "$FAILED" ]; then
    mv -- "$FAILED" "$work/previous.jsonl"
    push "$work/retry.json" "$retry_failed" "$work/previous.jsonl" "$@"
    code=$?
    read -r kind total succeeded failed unread <<<"$(status "$work/retry.json")"
    case "$code:$kind" in
        0:summary | 1:summary)
            log "retried $total kept updates: $succeeded confirmed, $failed still failing" ;;
        130:summary)
            # Stopped (SIGTERM, a shutdown): keep what was not confirmed. If reading stopped
            # early, the unread part is in no file: keep the whole previous file instead
            # (sending confirmed updates again changes nothing at VTEX).
            if [ "$unread" = 1 ]; then
                mv -- "$work/previous.jsonl" "$FAILED"
            else
                mv -- "$retry_failed" "$FAILED"
            fi
            log "interrupted while retrying; kept what was not confirmed in $FAILED"
            exit 130 ;;
        2:error)
            # Bad options or credentials: nothing was sent. Put the file back as it was.
            mv -- "$work/previous.jsonl" "$FAILED"
            exit 2 ;;
        *)
            mv -- "$work/previous.jsonl" "$FAILED"
            log "vtex-tracking ended with status $code and no summary; nothing moved"
            exit 70 ;;
    esac
fi

# 2. The new input, read as told (the Excel options apply here only).
new_failed="$work/new.failed.jsonl"
options=()
[ -n "${INPUT_ENCODING:-}" ] && options+=(--encoding "$INPUT_ENCODING")
[ -n "${INPUT_DATE_FORMAT:-}" ] && options+=(--date-format "$INPUT_DATE_FORMAT")
# (${options[@]+...}: an empty array is "unbound" to `set -u` in bash before 4.4.)
push "$work/new.json" "$new_failed" "$INPUT" ${options[@]+"${options[@]}"} "$@"
code=$?
read -r kind total succeeded failed unread <<<"$(status "$work/new.json")"

# keep_failures: what failed in both runs, oldest first, for the next run.
keep_failures() {
    cat -- "$retry_failed" "$new_failed" >"$work/all.failed.jsonl" 2>/dev/null
    if [ -s "$work/all.failed.jsonl" ]; then
        mv -- "$work/all.failed.jsonl" "$FAILED"
    fi
}

# done_with_input: every update of INPUT is confirmed or in the failures file, so INPUT has
# been dealt with: move it out of the way (with a time stamp, as file names repeat daily).
done_with_input() {
    mv -- "$INPUT" "$STATE_DIR/done/$(date +%Y%m%dT%H%M%S)-$(basename -- "$INPUT")"
}

case "$code:$kind" in
    0:summary)
        keep_failures
        done_with_input
        log "$INPUT: $total updates, all confirmed"
        [ -s "$FAILED" ] && exit 1  # the retried ones still failing
        exit 0 ;;
    1:summary)
        # Some failed (refused, or VTEX kept failing): they are in the failures file, with
        # the reason in each line's "error", and the next run retries them first.
        keep_failures
        done_with_input
        log "$INPUT: $total updates, $succeeded confirmed, $failed kept in $FAILED"
        exit 1 ;;
    130:summary)
        keep_failures
        if [ "$unread" = 1 ]; then
            # Part of INPUT was never read: leave it where it is, for the next run.
            log "$INPUT: interrupted before the end of the file; left in place"
        else
            done_with_input
            log "$INPUT: interrupted; what was not confirmed is in $FAILED"
        fi
        exit 130 ;;
    2:error)
        # Usage error, bad credentials or an unreadable INPUT: nothing was sent; leave INPUT
        # in place and say why (cron mails it). The retried failures are kept.
        keep_failures
        exit 2 ;;
    *)
        keep_failures
        log "vtex-tracking ended with status $code and no summary; $INPUT left in place"
        exit 70 ;;
esac
