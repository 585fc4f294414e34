#!/usr/bin/env bash
# A real Keycloak for development, tests and CI, without Docker.
#
#   bash keycloak/start.sh          start (fetching and unpacking Keycloak the first time); idempotent
#   bash keycloak/start.sh stop     stop the Keycloak this script started
#   bash keycloak/start.sh reset    stop, drop Keycloak's dev database, start again (re-imports the realm)
#   bash keycloak/start.sh status   print whether it is ready
#
# Environment: KEYCLOAK_VERSION (26.5.5), KEYCLOAK_CACHE_DIR (~/.cache/iot-support/keycloak),
# KEYCLOAK_PORT (8180), KEYCLOAK_MANAGEMENT_PORT (9180), KEYCLOAK_START_TIMEOUT (180 s),
# JAVA_OPTS_KC_HEAP (-Xms256m -Xmx768m).
#
# The realm keycloak/realm-iotsupport.json is imported into a fresh dev database. Keycloak ignores a realm that
# already exists, so a start after that file changed drops the dev database first and imports it again. A Keycloak
# that is already running keeps its realm until it is stopped (a warning says so).
#
# The preview feature client-secret-rotation is on: the realm's client policy keeps a device's previous secret
# working after a rotation (docs/authentication.md).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
version=${KEYCLOAK_VERSION:-26.5.5}
cache=${KEYCLOAK_CACHE_DIR:-$HOME/.cache/iot-support/keycloak}
host=127.0.0.1
port=${KEYCLOAK_PORT:-8180}
mport=${KEYCLOAK_MANAGEMENT_PORT:-9180}
timeout=${KEYCLOAK_START_TIMEOUT:-180}
kc_home=$cache/keycloak-$version
zip=$cache/keycloak-quarkus-dist-$version.zip
pidfile=$cache/keycloak.pid
log=$cache/keycloak.log
realm_file=$here/realm-iotsupport.json
ready_url=http://$host:$mport/health/ready

name=Keycloak
say() { echo "keycloak: $*" >&2; }
die() { say "$*"; exit 1; }
# shellcheck source=../scripts/jvm-service.sh
source "$here/../scripts/jvm-service.sh"

is_ready() {
  local body
  body=$(curl -fsS --max-time 2 "$ready_url" 2>/dev/null) || return 1
  [[ $body == *'"UP"'* ]]
}

stamp=$kc_home/data/import/.imported.sha256
realm_hash() { sha256sum <"$realm_file" | cut -d' ' -f1; }
realm_changed() { [[ ! -f $stamp || $(cat "$stamp") != "$(realm_hash)" ]]; }

# Fetch the distribution zip with Maven (or straight from Maven Central when there is no mvn).
fetch() {
  if [[ -f $zip ]] && unzip -tqq "$zip" >/dev/null 2>&1; then return 0; fi
  rm -f "$zip"
  say "downloading keycloak-quarkus-dist $version (about 160 MB)"
  maven_fetch "org.keycloak:keycloak-quarkus-dist:$version:zip" \
    "org/keycloak/keycloak-quarkus-dist/$version/keycloak-quarkus-dist-$version.zip" "$zip"
}

unpack() {
  local tmp=$cache/.unpack-$$
  rm -rf "$tmp" && mkdir -p "$tmp"
  say "unpacking $zip"
  if command -v unzip >/dev/null 2>&1; then
    unzip -q "$zip" -d "$tmp"
  elif command -v python3 >/dev/null 2>&1; then
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$zip" "$tmp"
  elif command -v jar >/dev/null 2>&1; then
    (cd "$tmp" && jar xf "$zip")
  else
    die "need unzip, python3 or jar to unpack $zip"
  fi
  chmod +x "$tmp/keycloak-$version/bin/"*.sh
  rm -rf "$kc_home"
  mv "$tmp/keycloak-$version" "$kc_home" # kc.sh present means fully unpacked
  rm -rf "$tmp"
}

prepare() {
  if [[ ! -x $kc_home/bin/kc.sh ]]; then
    fetch
    unpack
  fi
  mkdir -p "$kc_home/data/import"
  cp "$realm_file" "$kc_home/data/import/realm-iotsupport.json"
  if [[ -d $kc_home/data/h2 ]] && realm_changed; then
    say "$realm_file changed since the last import: dropping the dev database to import it again"
    rm -rf "$kc_home/data/h2"
  fi
  [[ -d $kc_home/data/h2 ]] || realm_hash >"$stamp"
  export KC_BOOTSTRAP_ADMIN_USERNAME=admin KC_BOOTSTRAP_ADMIN_PASSWORD=admin
  export JAVA_OPTS_KC_HEAP="${JAVA_OPTS_KC_HEAP:--Xms256m -Xmx768m}"
  say "Keycloak $version on http://$host:$port (management $mport)"
}
launch_dir=$kc_home
launch_cmd=(bin/kc.sh start-dev --http-host="$host" --http-port="$port" --http-management-port="$mport" --health-enabled=true
  --features=client-secret-rotation --import-realm)

start() {
  if is_ready; then
    if realm_changed; then say "WARNING: $realm_file changed since Keycloak imported it; stop and start it to re-import."; fi
    say "ready on http://$host:$port"
    return 0
  fi
  start_service
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  reset)
    stop
    rm -rf "$kc_home/data/h2" "$stamp"
    start
    ;;
  status)
    if is_ready; then say "ready on http://$host:$port"; else say "not ready"; exit 1; fi
    ;;
  *) die "usage: bash keycloak/start.sh [start|stop|reset|status]" ;;
esac
