# Shared by keycloak/start.sh and s3proxy/start.sh, which source it after setting: `name` (for messages), `cache`,
# `pidfile`, `log`, `timeout` (seconds), and defining `say`, `die` and `is_ready`. A JVM service this script family
# starts runs in its own session (setsid), so stopping it stops its whole process group.

running_pid() {
  local pid
  [[ -f $pidfile ]] || return 1
  pid=$(cat "$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

stop() {
  local pid
  if ! pid=$(running_pid); then
    rm -f "$pidfile"
    if is_ready; then die "a $name answers but was not started by this script (no pid file in $cache)"; fi
    say "not running"
    return 0
  fi
  say "stopping (pid $pid)"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; say "stopped"; return 0; }
    sleep 0.5
  done
  say "did not stop within 30 s; killing"
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

# maven_fetch <group:artifact:version:type[:classifier] as Maven's dependency:copy takes it> <Maven Central path> <file>:
# with Maven, or straight from Maven Central when there is no mvn.
maven_fetch() {
  local artifact=$1 path=$2 file=$3
  if command -v mvn >/dev/null 2>&1; then
    mvn -B -q -Dstyle.color=never org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
      "-Dartifact=$artifact" "-DoutputDirectory=$(dirname "$file")"
  else
    curl -fSL --retry 3 -o "$file.part" "https://repo1.maven.org/maven2/$path"
    mv "$file.part" "$file"
  fi
  [[ -s $file ]] || die "download failed: $file is missing"
}

# wait_until_ready <pid>: until is_ready, or the process exits, or `timeout` passes (then it is stopped).
wait_until_ready() {
  local pid=$1 started=$SECONDS
  until is_ready; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$pidfile"
      say "$name exited during start-up; last lines of $log:"
      tail -n 40 "$log" >&2 || true
      exit 1
    fi
    if ((SECONDS - started >= timeout)); then
      say "not ready after ${timeout} s; last lines of $log:"
      tail -n 40 "$log" >&2 || true
      stop || true
      exit 1
    fi
    sleep 0.5
  done
  say "ready after $((SECONDS - started)) s"
}

# start_service: unless it answers already, under the start lock (one start.sh at a time per cache dir: parallel CI
# steps, two terminals): `prepare` (the caller's function: fetch, configure), then `launch_cmd` (an array) in
# `launch_dir`, in a session of its own, logging to `log`; then wait until it is ready.
start_service() {
  command -v curl >/dev/null 2>&1 || die "curl is required"
  command -v java >/dev/null 2>&1 || die "java (17 or newer) is required; $name runs on the JVM"
  mkdir -p "$cache"
  exec 9>"$cache/.lock"
  flock 9
  if is_ready; then say "ready"; return 0; fi

  local pid
  if pid=$(running_pid); then
    say "already starting (pid $pid); waiting"
  else
    prepare
    say "starting; log: $log"
    (
      exec 9>&- # do not hand the start lock to the service
      cd "$launch_dir"
      exec setsid nohup "${launch_cmd[@]}" </dev/null >"$log" 2>&1
    ) &
    pid=$!
    echo "$pid" >"$pidfile"
  fi
  wait_until_ready "$pid"
}
