#!/bin/sh
# Make sure unixODBC and the PostgreSQL ODBC driver ("PostgreSQL Unicode") are installed.
# pyodbc's wheel does not bundle unixODBC: without libodbc.so.2, `import pyodbc` fails.
# Debian/Ubuntu/UOS (apt-get) and RHEL/Kylin/openEuler (dnf/yum) are handled when run as root.
# SQL Server drivers are not installed here: see deploy/systemd/INSTALL.md (msodbcsql18/FreeTDS).
set -e
have_deps() {
    ldconfig -p 2>/dev/null | grep -q 'libodbc.so.2' &&
        odbcinst -q -d 2>/dev/null | grep -q 'PostgreSQL Unicode'
}
if have_deps; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing unixodbc and odbc-postgresql (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq unixodbc odbc-postgresql >/dev/null 2>&1 || {
        apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq unixodbc odbc-postgresql >/dev/null; }
    exit 0
fi
if [ "$(id -u)" = "0" ] && { command -v dnf >/dev/null 2>&1 || command -v yum >/dev/null 2>&1; }; then
    pm=$(command -v dnf || command -v yum)
    echo "installing unixODBC and postgresql-odbc ($(basename "$pm"))"
    "$pm" install -y -q unixODBC postgresql-odbc >/dev/null
    # RHEL's psqlODBC package registers its drivers as "PostgreSQL"; add the Unicode name the
    # project's URLs use by default, pointing at the same library.
    if ! odbcinst -q -d 2>/dev/null | grep -q 'PostgreSQL Unicode'; then
        lib=$(ls /usr/lib64/psqlodbcw.so /usr/lib/psqlodbcw.so 2>/dev/null | head -n 1)
        if [ -n "$lib" ]; then
            ini=$(mktemp)
            printf '[PostgreSQL Unicode]\nDescription=PostgreSQL ODBC driver (Unicode)\nDriver=%s\n' "$lib" > "$ini"
            odbcinst -i -d -f "$ini" >/dev/null
            rm -f "$ini"
        fi
    fi
    have_deps && exit 0
    echo "unixODBC installed, but no 'PostgreSQL Unicode' driver is registered (odbcinst -q -d)" >&2
    exit 1
fi
echo "unixODBC / psqlODBC missing. Install them, e.g.:" >&2
echo "  sudo apt-get install unixodbc odbc-postgresql      (Debian/Ubuntu/UOS)" >&2
echo "  sudo dnf install unixODBC postgresql-odbc          (RHEL/Kylin/openEuler)" >&2
exit 1
