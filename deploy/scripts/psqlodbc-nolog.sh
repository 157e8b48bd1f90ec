#!/bin/sh
# Switch off psqlODBC's own log files (psqlodbc_<prog>_<user><pid>.log in /tmp, one per process).
#
# psqlODBC reads CommLog/Debug from its driver section in odbcinst.ini when the driver loads;
# CommLog=0 in the connection string comes too late to stop the file. Debian/Ubuntu's
# odbc-postgresql package ships CommLog=1. This sets CommLog=0 and Debug=0 in every section
# whose name starts with "PostgreSQL" (other drivers are left alone); idempotent.
#
# usage: psqlodbc-nolog.sh [path/to/odbcinst.ini]   (default: the file `odbcinst -j` names)
set -e
ini="$1"
if [ -z "$ini" ]; then
    ini=$(odbcinst -j 2>/dev/null | sed -n 's/^DRIVERS[^:]*:[[:space:]]*//p')
    ini=${ini:-/etc/odbcinst.ini}
fi
if [ ! -f "$ini" ]; then
    echo "no $ini: nothing to change" >&2
    exit 0
fi
tmp="$ini.mi-worker.$$"
awk '
    /^[[:space:]]*\[/ { pg = ($0 ~ /^[[:space:]]*\[PostgreSQL/) }
    pg && /^[[:space:]]*(CommLog|Debug)[[:space:]]*=/ { sub(/=.*/, "=0") }
    { print }
' "$ini" > "$tmp"
cat "$tmp" > "$ini"
rm -f "$tmp"
echo "psqlODBC logging off in $ini"
