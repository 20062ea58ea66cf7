#!/usr/bin/env bash
# Install the front-end packages named in package.json (from package-lock.json when it exists)
# and copy only the files the pages load into static/vendor/, which is generated and gitignored.
#
#   scripts/vendor_assets.sh            install (npm ci) and copy
#   scripts/vendor_assets.sh --check    exit 1 if static/vendor/ is missing a file or out of date
#
# Nothing is fetched at run time: the pages load these copies from /static/vendor/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENDOR="$ROOT/static/vendor"
NM="$ROOT/node_modules"
STAMP="$VENDOR/.stamp"

# Every file the templates reference, as "source (under node_modules) -> destination (under static/vendor)".
# CSS source maps and every font the icon stylesheet names are copied too, so that Django's
# ManifestStaticFilesStorage can resolve each url() and sourceMappingURL during collectstatic.
FILES=(
  "@tabler/core/dist/css/tabler.min.css            tabler/css/tabler.min.css"
  "@tabler/core/dist/css/tabler.min.css.map        tabler/css/tabler.min.css.map"
  "@tabler/core/dist/js/tabler.min.js              tabler/js/tabler.min.js"
  "@tabler/core/dist/js/tabler.min.js.map          tabler/js/tabler.min.js.map"
  "@tabler/icons-webfont/dist/tabler-icons.min.css tabler-icons/tabler-icons.min.css"
  "@tabler/icons-webfont/dist/fonts/tabler-icons.woff2 tabler-icons/fonts/tabler-icons.woff2"
  "@tabler/icons-webfont/dist/fonts/tabler-icons.woff  tabler-icons/fonts/tabler-icons.woff"
  "@tabler/icons-webfont/dist/fonts/tabler-icons.ttf   tabler-icons/fonts/tabler-icons.ttf"
  "@tabler/icons-webfont/LICENSE                   tabler-icons/LICENSE"
  "uplot/dist/uPlot.iife.min.js                    uplot/uPlot.iife.min.js"
  "uplot/dist/uPlot.min.css                        uplot/uPlot.min.css"
  "uplot/LICENSE                                   uplot/LICENSE"
  "@novnc/novnc/LICENSE.txt                        novnc/LICENSE.txt"
  "@xterm/xterm/lib/xterm.js                       xterm/xterm.js"
  "@xterm/xterm/lib/xterm.js.map                   xterm/xterm.js.map"
  "@xterm/xterm/css/xterm.css                      xterm/xterm.css"
  "@xterm/xterm/LICENSE                            xterm/LICENSE"
  "@xterm/addon-fit/lib/addon-fit.js               xterm/addon-fit.js"
  "@xterm/addon-fit/lib/addon-fit.js.map           xterm/addon-fit.js.map"
  "@xterm/addon-fit/LICENSE                        xterm/LICENSE.addon-fit"
)

# Whole directories, copied as they are: noVNC ships ES modules that import each other by
# relative path (core/rfb.js -> ../vendor/pako/...), so its tree keeps its shape.
# Each entry is "source dir -> destination dir | a file that must be in it" (checked by --check).
DIRS=(
  "@novnc/novnc/core    novnc/core    rfb.js"
  "@novnc/novnc/vendor  novnc/vendor  pako/lib/zlib/inflate.js"
)

lock_hash() {
  if [[ -f "$ROOT/package-lock.json" ]]; then
    sha256sum "$ROOT/package.json" "$ROOT/package-lock.json" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1
  else
    sha256sum "$ROOT/package.json" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1
  fi
}

if [[ "${1:-}" == "--check" ]]; then
  for entry in "${FILES[@]}"; do
    read -r _src dst <<<"$entry"
    [[ -s "$VENDOR/$dst" ]] || { echo "static/vendor/$dst is missing: run scripts/vendor_assets.sh" >&2; exit 1; }
  done
  for entry in "${DIRS[@]}"; do
    read -r _src dst probe <<<"$entry"
    [[ -s "$VENDOR/$dst/$probe" ]] || { echo "static/vendor/$dst/$probe is missing: run scripts/vendor_assets.sh" >&2; exit 1; }
  done
  [[ "$(cat "$STAMP" 2>/dev/null)" == "$(lock_hash)" ]] || {
    echo "static/vendor/ is older than package.json/package-lock.json: run scripts/vendor_assets.sh" >&2
    exit 1
  }
  echo "static/vendor/ is up to date."
  exit 0
fi

command -v npm >/dev/null || { echo "npm is required (apt-get install nodejs npm)" >&2; exit 1; }

cd "$ROOT"
if [[ -f package-lock.json ]]; then
  npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
else
  npm install --no-audit --no-fund --ignore-scripts --loglevel=error
fi

rm -rf "$VENDOR"
for entry in "${FILES[@]}"; do
  read -r src dst <<<"$entry"
  if [[ ! -f "$NM/$src" ]]; then
    echo "node_modules/$src is missing: has the package layout changed?" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$VENDOR/$dst")"
  cp "$NM/$src" "$VENDOR/$dst"
done
for entry in "${DIRS[@]}"; do
  read -r src dst probe <<<"$entry"
  if [[ ! -f "$NM/$src/$probe" ]]; then
    echo "node_modules/$src/$probe is missing: has the package layout changed?" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$VENDOR/$dst")"
  cp -R "$NM/$src" "$VENDOR/$dst"
done
lock_hash >"$STAMP"
echo "Copied ${#FILES[@]} files and ${#DIRS[@]} directories into static/vendor/."
