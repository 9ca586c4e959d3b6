#!/bin/sh
# Install Gatehouse on this machine: `sudo make install` (README, "Install on a guard-room
# PC / an office"). Run from the source tree; POSIX sh.
#
#   /opt/gatehouse/.venv                  the project and its runtime dependencies only
#   /etc/gatehouse/gatehouse.toml         the edge's config     } never overwritten: a newer
#   /etc/gatehouse/office.toml            the office's config   } example lands as *.new
#   /etc/gatehouse/credentials/           secrets (0750 root:gatehouse): sync-token,
#                                         mqtt-password, notify-duty, notify-director
#                                         (the channels' URLs), made empty if missing
#   /etc/mosquitto/conf.d/gatehouse.conf  the broker's queue limits (config/mosquitto/)
#   $PREFIX/lib/systemd/system/           gatehouse-edge.service, gatehouse-office.service
#   $PREFIX/lib/sysusers.d/gatehouse.conf the user gatehouse (in group dialout)
#   $PREFIX/lib/tmpfiles.d/gatehouse.conf /var/lib/gatehouse, /etc/gatehouse, backups
#   $PREFIX/bin/gatehouse                 the CLI on /etc/gatehouse/gatehouse.toml, run as
#   $PREFIX/bin/gatehouse-office          gatehouse; the same on office.toml
#
# Variables: DESTDIR (default empty: this machine) lays the files out under another root
# and does nothing else (no user, no directories' owners, no systemctl); PREFIX (default
# /usr; /usr/local works too, systemd reads both); PYTHON (default /usr/bin/python3: the
# service's interpreter, which must not live under /home or /root, hidden by ProtectHome=).
# With DESTDIR empty it must run as root, and then also runs systemd-sysusers,
# systemd-tmpfiles --create and (with systemd running) systemctl daemon-reload.
set -eu

# DESTDIR=…, PREFIX=…, PYTHON=… may also be given as arguments, as to make; nothing else.
for arg in "$@"; do
  case "$arg" in
    DESTDIR=* | PREFIX=* | PYTHON=*) export "${arg%%=*}=${arg#*=}" ;;
    *) printf 'install.sh: unknown argument %s (DESTDIR=DIR PREFIX=DIR PYTHON=FILE)\n' "$arg" >&2
       exit 2 ;;
  esac
done
DESTDIR="${DESTDIR:-}"
case "$DESTDIR" in "" | /*) ;; *) DESTDIR="$PWD/$DESTDIR" ;; esac
PREFIX="${PREFIX:-/usr}"
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  [ -x /usr/bin/python3 ] && PYTHON=/usr/bin/python3
fi
SRC=$(cd "$(dirname "$0")/.." && pwd)

VENV=/opt/gatehouse/.venv
ETC=/etc/gatehouse
D="$DESTDIR"

say() { printf '%s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

if [ -z "$D" ] && [ "$(id -u)" -ne 0 ]; then
  die "installing on this machine needs root: sudo make install (or DESTDIR=DIR to lay the files out under DIR)"
fi
for f in pyproject.toml config/gatehouse.example.toml config/office.example.toml \
         config/mosquitto/gatehouse.conf systemd/gatehouse-edge.service \
         systemd/gatehouse-office.service systemd/gatehouse.sysusers systemd/gatehouse.tmpfiles; do
  [ -f "$SRC/$f" ] || die "$SRC/$f is missing: run this from Gatehouse's source tree"
done

# -- the interpreter ------------------------------------------------------------------------
command -v "$PYTHON" >/dev/null 2>&1 || die "no $PYTHON: install Debian's python3 (apt-get install python3 python3-venv)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "$PYTHON is older than Python 3.11"
if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  if [ -z "$D" ] && command -v dpkg-query >/dev/null 2>&1; then
    sh "$SRC/scripts/debian-deps.sh" python3-venv
  else
    die "$PYTHON has no venv module: apt-get install python3-venv"
  fi
fi
base=$("$PYTHON" -c 'import sys; print(sys.base_prefix)')
case "$base" in
  /home/* | /root/* | /root | /run/user/*)
    msg="$PYTHON lives in $base, which the services cannot see (ProtectHome=yes)"
    [ -z "$D" ] && die "$msg: use Debian's (PYTHON=/usr/bin/python3)"
    say "warning: $msg" ;;
esac

# -- the project, runtime dependencies only -------------------------------------------------
# Built from a copy, so that a root-owned build/ or egg-info never lands in the checkout.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
mkdir "$work/src"
(cd "$SRC" && cp -R pyproject.toml README.md edge drivers sync config systemd "$work/src/")
find "$work/src" -name __pycache__ -type d -prune -exec rm -rf {} +

if [ ! -x "$D$VENV/bin/python" ]; then
  say "creating $D$VENV"
  mkdir -p "$D/opt/gatehouse"
  "$PYTHON" -m venv "$D$VENV"
fi
say "installing Gatehouse into $D$VENV (runtime dependencies only)"
# --upgrade: the project is reinstalled even when its version is unchanged
"$D$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade \
  --upgrade-strategy only-if-needed "$work/src"
"$D$VENV/bin/python" -I -c 'import edge.cli, sync.office' \
  || die "the installed project does not import"

# -- helpers --------------------------------------------------------------------------------
# put_config FILE DEST MODE: a config the administrator edits. Never overwritten: a changed
# example goes beside it as DEST.new.
notes=""
put_config() {
  if [ ! -e "$2" ]; then
    install -m "$3" "$1" "$2"
    say "  $2"
  elif cmp -s "$1" "$2"; then
    say "  $2 (unchanged)"
  else
    install -m "$3" "$1" "$2.new"
    say "  $2 kept as it is; the new example is $2.new"
    notes="$notes
  compare $2 with $2.new (the new example), then remove $2.new"
  fi
}
# put FILE DEST MODE: a file of the package, replaced on every install.
put() {
  install -m "$3" "$1" "$2"
  say "  $2"
}

# -- configs ---------------------------------------------------------------------------------
say "configs in $D$ETC"
install -d -m 0750 "$D$ETC"
install -d -m 0750 "$D$ETC/credentials"

# The edge: the example, with its data in /var/lib/gatehouse, and where its secrets go.
awk '
  BEGIN {
    print "# Gatehouse edge node: this machine'"'"'s config, read by gatehouse-edge.service and by"
    print "# the `gatehouse` command (always this file). Installed from config/gatehouse.example.toml"
    print "# by `make install`, which never overwrites it (a newer example lands beside it as"
    print "# gatehouse.toml.new). README, \"Config reference\", lists every key. Secrets go in"
    print "# /etc/gatehouse/credentials/ and are named \"%d/<file>\" here (token_file, password_file)."
    print "# Add [mqtt] and [[readers]] for a real gate."
    print ""
  }
  !started && /^\[node\]/ { started = 1 }
  !started { next }
  /^# Relative paths in this file/ || /^# command runs in: / { next }
  /^data_dir = / { print "data_dir = \"/var/lib/gatehouse\""; next }
  /^url = "sqlite:/ { print "url = \"sqlite:////var/lib/gatehouse/edge.db\""; next }
  { print }
  /^# prefix = / && !mqtt {
    mqtt = 1
    print "# username = \"gatehouse-gate-east\"       # the broker login of this node (auth.conf)"
    print "# password_file = \"%d/mqtt-password\"     # /etc/gatehouse/credentials/mqtt-password"
  }
  END {
    print ""
    print "# The office (docs/sync.md): put the node'"'"'s token from `gatehouse office node add` in"
    print "# /etc/gatehouse/credentials/sync-token, never in this file."
    print "# [sync]"
    print "# office_url = \"https://office.example:9090\""
    print "# token_file = \"%d/sync-token\""
    print "# ca_file = \"credentials/office-ca.crt\"     # an office certificate of your own CA"
  }
' "$SRC/config/gatehouse.example.toml" >"$work/gatehouse.toml"
for want in 'data_dir = "/var/lib/gatehouse"' 'url = "sqlite:////var/lib/gatehouse/edge.db"' \
            '# password_file = "%d/mqtt-password"'; do
  grep -qF "$want" "$work/gatehouse.toml" \
    || die "config/gatehouse.example.toml changed: the installed config lacks: $want"
done
put_config "$work/gatehouse.toml" "$D$ETC/gatehouse.toml" 0640

sed 's|^data_dir = .*|data_dir = "/var/lib/gatehouse/office"|' \
  "$SRC/config/office.example.toml" >"$work/office.toml"
grep -qF 'data_dir = "/var/lib/gatehouse/office"' "$work/office.toml" \
  || die "config/office.example.toml changed: the installed config lacks its data_dir"
put_config "$work/office.toml" "$D$ETC/office.toml" 0640

# LoadCredential= fails the unit when its file is missing: an empty one until the secret is
# set (an empty secret is refused by the config only where the config names it).
for cred in sync-token mqtt-password notify-duty notify-director; do
  if [ ! -e "$D$ETC/credentials/$cred" ]; then
    : >"$D$ETC/credentials/$cred"
    chmod 0640 "$D$ETC/credentials/$cred"
    say "  $D$ETC/credentials/$cred (empty: put the secret in it)"
  fi
done

say "Mosquitto settings"
install -d -m 0755 "$D/etc/mosquitto/conf.d"
put_config "$SRC/config/mosquitto/gatehouse.conf" "$D/etc/mosquitto/conf.d/gatehouse.conf" 0644

# -- units, users, directories ---------------------------------------------------------------
say "systemd files under $D$PREFIX/lib"
install -d -m 0755 "$D$PREFIX/lib/systemd/system" "$D$PREFIX/lib/sysusers.d" \
  "$D$PREFIX/lib/tmpfiles.d" "$D$PREFIX/bin"
put "$SRC/systemd/gatehouse-edge.service" "$D$PREFIX/lib/systemd/system/gatehouse-edge.service" 0644
put "$SRC/systemd/gatehouse-office.service" "$D$PREFIX/lib/systemd/system/gatehouse-office.service" 0644
put "$SRC/systemd/gatehouse.sysusers" "$D$PREFIX/lib/sysusers.d/gatehouse.conf" 0644
put "$SRC/systemd/gatehouse.tmpfiles" "$D$PREFIX/lib/tmpfiles.d/gatehouse.conf" 0644

# -- the command line --------------------------------------------------------------------------
# wrapper NAME CONFIG: the CLI against the installed service's config, as its user, so the
# files it makes are the service's and no other database is ever written by mistake.
wrapper() {
  cat >"$work/$1" <<EOF
#!/bin/sh
# $1: Gatehouse's command line on this machine's installed service (scripts/install.sh).
# Always on $2 (--config is refused and GATEHOUSE_CONFIG ignored: for
# another config run $VENV/bin/gatehouse --config FILE), and always as the user gatehouse
# (runuser from root, sudo from anyone else), so what it makes is the service's own; but
# \`broker\` runs as root: it writes Mosquitto's files in /etc/mosquitto.
set -eu
config=$2
cmd=
for arg in "\$@"; do
  case "\$arg" in
    --config | --config=*)
      echo "$1: always uses \$config; for another config run $VENV/bin/gatehouse --config FILE" >&2
      exit 2 ;;
    -*) ;;
    *) [ -n "\$cmd" ] || cmd=\$arg ;;
  esac
done
if ! id -u gatehouse >/dev/null 2>&1; then
  echo "$1: there is no user gatehouse: run systemd-sysusers (make install does)" >&2
  exit 2
fi
unset GATEHOUSE_CONFIG
umask 077
set -- $VENV/bin/gatehouse --config "\$config" "\$@"
if [ "\$cmd" = broker ]; then
  if [ "\$(id -u)" = 0 ]; then exec "\$@"; else exec sudo -- "\$@"; fi
elif [ "\$(id -u)" = "\$(id -u gatehouse)" ]; then
  exec "\$@"
elif [ "\$(id -u)" = 0 ]; then
  exec runuser -u gatehouse -- "\$@"
elif command -v sudo >/dev/null 2>&1; then
  exec sudo -u gatehouse -- "\$@"
else
  echo "$1: run it as root (or as gatehouse): it works as the user gatehouse" >&2
  exit 2
fi
EOF
  put "$work/$1" "$D$PREFIX/bin/$1" 0755
}
say "commands in $D$PREFIX/bin"
wrapper gatehouse "$ETC/gatehouse.toml"
wrapper gatehouse-office "$ETC/office.toml"

# -- this machine ----------------------------------------------------------------------------
if [ -n "$D" ]; then
  say "laid out under $D (DESTDIR): no user, owners or units were touched"
  exit 0
fi

if command -v systemd-sysusers >/dev/null 2>&1; then
  systemd-sysusers "$PREFIX/lib/sysusers.d/gatehouse.conf"
else
  die "no systemd-sysusers: this needs a systemd machine (Debian 12)"
fi
systemd-tmpfiles --create "$PREFIX/lib/tmpfiles.d/gatehouse.conf"
# the service reads its configs and, through the wrapper, the secrets: root's, group's read
for f in "$ETC"/*.toml "$ETC"/*.toml.new "$ETC/credentials"/*; do
  [ -f "$f" ] || continue
  chgrp gatehouse "$f"
  chmod 0640 "$f"
done
say "user gatehouse: $(id gatehouse)"

if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
else
  say "systemd is not running here: no daemon-reload (the units are read when it starts)"
fi
if [ -f /etc/mosquitto/mosquitto.conf ] \
   && ! grep -q '^include_dir  */etc/mosquitto/conf.d' /etc/mosquitto/mosquitto.conf; then
  notes="$notes
  /etc/mosquitto/mosquitto.conf does not read /etc/mosquitto/conf.d: add the line
    include_dir /etc/mosquitto/conf.d
  at its end (Debian's own mosquitto.conf has it)"
fi

cat <<EOF

Installed. Next:
  1. edit $ETC/gatehouse.toml (node id, gates, readers, [mqtt], [sync]);
     an office machine edits $ETC/office.toml instead
  2. put the office's token for this node in $ETC/credentials/sync-token:
       sudo tee $ETC/credentials/sync-token >/dev/null   (paste it, then Ctrl-D)
  3. systemctl restart mosquitto        (it reads /etc/mosquitto/conf.d/gatehouse.conf)
     systemctl enable --now gatehouse-edge
     (the office: systemctl enable --now gatehouse-office)
  4. systemctl status gatehouse-edge; journalctl -u gatehouse-edge
     curl http://127.0.0.1:8080/health/ready
  5. the command line: sudo gatehouse pass list   (sudo gatehouse-office … on the office)
EOF
if [ -n "$notes" ]; then
  printf '\nAlso:%s\n' "$notes"
fi
