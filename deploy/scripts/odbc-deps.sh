#!/bin/sh
# Make sure unixODBC and the PostgreSQL ODBC driver are installed (Debian/Ubuntu).
# pyodbc's wheel does not bundle unixODBC: without libodbc.so.2, `import pyodbc` fails.
set -e
if ldconfig -p 2>/dev/null | grep -q 'libodbc.so.2' && odbcinst -q -d 2>/dev/null | grep -q 'PostgreSQL Unicode'; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing unixodbc and odbc-postgresql (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq unixodbc odbc-postgresql >/dev/null 2>&1 || {
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq unixodbc odbc-postgresql >/dev/null; }
    exit 0
fi
echo "unixODBC / psqlODBC missing. Install them, e.g.:" >&2
echo "  sudo apt-get install unixodbc odbc-postgresql      (Debian/Ubuntu)" >&2
echo "  sudo dnf install unixODBC postgresql-odbc          (RHEL/Kylin/openEuler)" >&2
exit 1
