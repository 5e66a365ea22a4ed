#!/usr/bin/env bash
# Render the man pages from their sources (man/*.rst, one per page) into OUTDIR:
#   scripts/build-man.sh OUTDIR   ->  OUTDIR/netcfg-service.8 netcfgctl.8 netcfg.yaml.5
# With docutils' manpage writer (rst2man; PyPI `docutils`, Debian python3-docutils),
# run by $PYTHON, else the repo's .venv, else python3.  Fails if a page does not render.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:?usage: $0 OUTDIR}"
PY="${PYTHON:-}"
if [[ -z $PY ]]; then
    if [[ -x $REPO/.venv/bin/python ]]; then PY="$REPO/.venv/bin/python"; else PY=python3; fi
fi
mkdir -p "$OUT"
for src in "$REPO"/man/*.rst; do
    page="$(basename "$src" .rst)"
    "$PY" -c 'import sys; from docutils.core import publish_cmdline
publish_cmdline(writer_name="manpage", argv=["--quiet", "--halt=warning", "--no-generator", sys.argv[1], sys.argv[2]])' \
        "$src" "$OUT/$page"
done
ls "$OUT"
