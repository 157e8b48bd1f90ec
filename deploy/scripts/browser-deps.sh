#!/bin/sh
# Headless Chromium from the distribution's packages for the dashboard's browser test
# (tests/test_dashboard_browser.py drives /usr/bin/chromium with Playwright; Playwright's own
# browser download needs the internet, a hospital build host or CI may not have it).
# Installs only as root with apt-get; anywhere else it says what is missing and succeeds, and
# the browser test skips with that reason (CI=true makes the test fail instead).
# A CJK font too (fonts-wqy-microhei, 5 MB), or the screenshots show boxes for Chinese.
set -e
have_font() { fc-list 2>/dev/null | grep -qi -e 'wqy' -e 'noto.*cjk' -e 'droid.*fallback'; }
if { command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; } && have_font; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium (apt-get) for the dashboard browser test"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null 2>&1 || {
        apt-get update -qq >/dev/null &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null; } || {
        echo "chromium could not be installed: the dashboard browser test will skip" >&2; exit 0; }
    exit 0
fi
echo "chromium not installed (not root or no apt-get): the dashboard browser test will skip;" >&2
echo "  sudo apt-get install chromium    to run it" >&2
exit 0
