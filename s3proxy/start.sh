#!/usr/bin/env bash
# A real S3 server (S3Proxy on its filesystem backend) for development, tests and CI, without Docker.
#
#   bash s3proxy/start.sh          start (fetching S3Proxy from Maven Central the first time); idempotent
#   bash s3proxy/start.sh stop     stop the S3Proxy this script started
#   bash s3proxy/start.sh status   print whether it answers
#
# Environment: S3PROXY_VERSION (2.6.0), S3PROXY_CACHE_DIR (~/.cache/iot-support/s3proxy), S3PROXY_PORT (8280),
# S3PROXY_START_TIMEOUT (60 s). It answers on http://127.0.0.1:$S3PROXY_PORT with path-style addressing, access key
# `iot-test` and secret `iot-test-secret` (test/support/s3.ts uses the same); the buckets live under
# $S3PROXY_CACHE_DIR/data and each test creates its own.
set -euo pipefail

version=${S3PROXY_VERSION:-2.6.0}
cache=${S3PROXY_CACHE_DIR:-$HOME/.cache/iot-support/s3proxy}
host=127.0.0.1
port=${S3PROXY_PORT:-8280}
timeout=${S3PROXY_START_TIMEOUT:-60}
jar=$cache/s3proxy-$version-jar-with-dependencies.jar
pidfile=$cache/s3proxy.pid
log=$cache/s3proxy.log
conf=$cache/s3proxy.conf
endpoint=http://$host:$port

name=S3Proxy
say() { echo "s3proxy: $*" >&2; }
die() { say "$*"; exit 1; }
# shellcheck source=../scripts/jvm-service.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../scripts/jvm-service.sh"

# Any HTTP answer means it listens: an anonymous request gets 403 (or 400), never a refused connection.
is_ready() {
  local status
  status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$endpoint/" 2>/dev/null) || return 1
  [[ $status != 000 ]]
}

# The runnable jar, with Maven (or straight from Maven Central when there is no mvn).
fetch() {
  [[ -s $jar ]] && unzip -tqq "$jar" >/dev/null 2>&1 && return 0
  rm -f "$jar"
  say "downloading org.gaul:s3proxy:$version (jar-with-dependencies, about 30 MB)"
  maven_fetch "org.gaul:s3proxy:$version:jar:jar-with-dependencies" \
    "org/gaul/s3proxy/$version/s3proxy-$version-jar-with-dependencies.jar" "$jar"
}

prepare() {
  mkdir -p "$cache/data"
  fetch
  cat >"$conf" <<CONF
s3proxy.endpoint=$endpoint
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity=iot-test
s3proxy.credential=iot-test-secret
jclouds.provider=filesystem
jclouds.filesystem.basedir=$cache/data
CONF
  say "S3Proxy $version on $endpoint"
}
launch_dir=$cache
launch_cmd=(java -Xmx256m -jar "$jar" --properties "$conf")

start() {
  if is_ready; then say "ready on $endpoint"; return 0; fi
  start_service
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status)
    if is_ready; then say "ready on $endpoint"; else say "not ready"; exit 1; fi
    ;;
  *) die "usage: bash s3proxy/start.sh [start|stop|status]" ;;
esac
