#!/bin/sh
# Start the machine's PostgreSQL cluster if it is not running (tests make their own scratch
# databases on it). PostgreSQL refuses to run as root, so pg_ctlcluster starts it as postgres.
set -eu
command -v pg_lsclusters >/dev/null || exit 0
pg_lsclusters -h | while read -r ver name port status _rest; do
  case "$status" in
    online*) ;;
    *) SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
       $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start ;;
  esac
done
