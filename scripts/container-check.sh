#!/usr/bin/env bash
# Build the image and prove it (docs/contract.md §15; README "Deploy"). .ci/run calls this after the
# test suite; it needs root, podman, runc, mmdebstrap and network access to Debian's mirror and PyPI.
#
# No image registry is needed: the base is Debian bookworm made from Debian's own packages with
# mmdebstrap (cached under $SEADRAGON_IMAGE_CACHE for a week), imported with `podman import`. One
# layer is added to that base for this machine only: the host's CA bundle (a TLS-inspecting proxy may
# stand between it and PyPI) and the host's pip index settings, as PIP_CERT/SSL_CERT_FILE/PIP_*
# environment. The Dockerfile itself stays the standard one, given that base with --build-arg.
#
# With the bundled simulator run from the same image it proves: /ready turns 200; the admin logs in
# with the password given by environment; a key made through the admin API chats; the gateway runs as
# non-root; the key, the database and the secret survive the container being removed and recreated on
# the same volume; SIGTERM during a 4 s stream lets the stream complete and exits 0 within
# SHUTDOWN_GRACE. It prints the image size and the build time.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${SEADRAGON_IMAGE_CACHE:-/var/cache/seadragon}
GATEWAY_PORT=${CHECK_GATEWAY_PORT:-18080}
SIM_PORT=${CHECK_SIM_PORT:-18434}
GRACE=10             # SEADRAGON_SHUTDOWN_GRACE of the checked gateway
BASE_MAX_AGE_DAYS=7  # rebuild the cached base after this, for Debian's security updates
IMAGE=localhost/seadragon-gateway:check
BASE=localhost/seadragon-base:bookworm
BUILD_BASE=localhost/seadragon-base:bookworm-hostca
RUN=sdcheck-$$-$(date +%s)
PASSWORD="check-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
PODMAN=(podman --runtime runc)
# podman runs a HEALTHCHECK from a systemd timer, and systemd is not the service manager here: the
# image's HEALTHCHECK command is run by hand below (podman exec) instead.
RUN_OPTS=(--ulimit nofile=20000:20000 --ulimit nproc=4096:4096 --network host --no-healthcheck)
WORK=$(mktemp -d)
STARTED=$(date +%s.%N)

say() { printf 'container-check: %s\n' "$*"; }
fail() {
  printf 'container-check: FAILED: %s\n' "$*" >&2
  for name in "$RUN-gateway" "$RUN-sim"; do
    if "${PODMAN[@]}" container exists "$name" 2>/dev/null; then
      echo "--- last lines of $name ---" >&2
      "${PODMAN[@]}" logs --tail 30 "$name" >&2 2>&1 || true
    fi
  done
  exit 1
}
# Every image this script builds inherits the label seadragon.check from this machine's base layer
# (its value, the run, makes each run's base new, so each build is cold): those images are removed on
# exit, this run's and any an interrupted run left, and no other image is touched.
check_images() { "${PODMAN[@]}" images -a -q --no-trunc --filter label=seadragon.check 2>/dev/null | sort -u; }
cleanup() {
  "${PODMAN[@]}" rm -f -v -t 0 "$RUN-gateway" "$RUN-sim" >/dev/null 2>&1 || true
  "${PODMAN[@]}" volume rm -f "$RUN-data" >/dev/null 2>&1 || true
  for _ in 1 2 3; do  # children before parents: a parent goes in the next pass
    check_images | xargs -r "${PODMAN[@]}" rmi -f >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 130" INT TERM  # so that cleanup runs on a signal too
elapsed() { python3 -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.1f}')" "$1"; }
json() {  # json FIELD: read a JSON object on stdin, print one field
  python3 -c "import json, sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"
}

# --- the base: Debian bookworm from Debian's packages, cached --------------------------------------
debian_mirror() {  # the host's Debian mirror for SUFFIX ("" or "-security"), else Debian's own
  local suffix=$1 uri
  uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | grep -v '^[[:space:]]*#' | grep -oE '(https?|file)://[^ ]+/debian'"$suffix"'/?( |$)' | head -1 | tr -d ' ') || true
  echo "${uri:-http://deb.debian.org/debian$suffix}"
}
mkdir -p "$CACHE"
TARBALL=$CACHE/bookworm-minbase-python3.tar
if [ -z "$(find "$TARBALL" -mtime -"$BASE_MAX_AGE_DAYS" 2>/dev/null)" ]; then
  main=$(debian_mirror "")
  security=$(debian_mirror "-security")
  say "making the Debian bookworm base with mmdebstrap from $main"
  t0=$(date +%s.%N)
  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates bookworm \
    "$WORK/base.tar" "deb $main bookworm main" "deb $main bookworm-updates main" \
    "deb $security bookworm-security main" || fail "mmdebstrap could not make the base"
  mv "$WORK/base.tar" "$TARBALL"
  say "base made in $(elapsed "$t0") s"
fi
digest=$(sha256sum "$TARBALL" | cut -c1-16)
if [ "$("${PODMAN[@]}" image inspect --format '{{index .Labels "seadragon.base"}}' "$BASE" 2>/dev/null)" != "$digest" ]; then
  "${PODMAN[@]}" rmi "$BASE" >/dev/null 2>&1 || true  # last week's base
  "${PODMAN[@]}" import --quiet --change "LABEL seadragon.base=$digest" --change 'CMD ["/bin/bash"]' \
    "$TARBALL" "$BASE" >/dev/null || fail "podman import failed"
fi

# --- this machine's layer: its CA bundle and pip index settings -------------------------------------
mkdir -p "$WORK/hostca"
cp /etc/ssl/certs/ca-certificates.crt "$WORK/hostca/host-ca.crt"
# Only index settings a container can reach (http/https): a file:// index is this host's own disk.
pip_env=$( (python3 -m pip config list 2>/dev/null || true) | python3 -c '
import os, re, shlex, sys
found = {}
for line in sys.stdin:
    name, _, value = line.strip().partition("=")
    key = name.rsplit(".", 1)[-1]
    if key in ("index-url", "extra-index-url", "trusted-host"):
        found[key] = value.strip("\x27\"")
for key in ("index-url", "extra-index-url", "trusted-host"):
    found[key] = os.environ.get("PIP_" + key.upper().replace("-", "_"), found.get(key, ""))
for key, value in found.items():
    kept = [v for v in value.split() if key == "trusted-host" or re.match(r"https?://", v)]
    if kept:
        print(" PIP_%s=%s" % (key.upper().replace("-", "_"), shlex.quote(" ".join(kept))), end="")
')
cat > "$WORK/hostca/Containerfile" <<EOF
FROM $BASE
LABEL seadragon.check=$RUN
COPY host-ca.crt /usr/local/share/seadragon/host-ca.crt
ENV PIP_CERT=/usr/local/share/seadragon/host-ca.crt SSL_CERT_FILE=/usr/local/share/seadragon/host-ca.crt$pip_env
EOF
"${PODMAN[@]}" build --quiet --network host -t "$BUILD_BASE" "$WORK/hostca" >/dev/null \
  || fail "could not add the host's CA layer"

# --- the image ----------------------------------------------------------------------------------------
say "building $IMAGE on $BUILD_BASE"
t0=$(date +%s.%N)
build_started=$t0
build() {  # build TAG CONTEXT [OPTIONS]: the Dockerfile on this machine's base
  "${PODMAN[@]}" build --format docker --network host --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 \
    --build-arg BASE_IMAGE="$BUILD_BASE" -t "$1" -f "$2/Dockerfile" "${@:3}" "$2" >"$WORK/build.log" 2>&1 \
    || { tail -40 "$WORK/build.log" >&2; fail "podman build failed"; }
}
build "$IMAGE" .  # cold: on this run's own base layer nothing is cached, every dependency is downloaded
build_time=$(elapsed "$t0")
size=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE")
base_size=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$BUILD_BASE")
say "built in $build_time s; image size $((size / 1000000)) MB ($((size / 1048576)) MiB), of which the base $((base_size / 1000000)) MB"

# --- the simulator and the gateway, from the same image -----------------------------------------------
wait_for() {  # wait_for SECONDS URL [STATUS]: until URL answers STATUS (200)
  local deadline=$(($(date +%s) + $1)) code
  while :; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$2" || true)
    [ "$code" = "${3:-200}" ] && return 0
    [ "$(date +%s)" -ge "$deadline" ] && return 1
    sleep 0.3
  done
}
start_gateway() {
  # Locked down as deploy/compose.yaml runs it: a read-only root, no capabilities, no privilege gain.
  "${PODMAN[@]}" run -d --name "$RUN-gateway" "${RUN_OPTS[@]}" -v "$RUN-data:/data" \
    --read-only --read-only-tmpfs=false --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges \
    -e SEADRAGON_PORT="$GATEWAY_PORT" -e SEADRAGON_OLLAMA_URLS="http://127.0.0.1:$SIM_PORT" \
    -e SEADRAGON_ADMIN_PASSWORD="$PASSWORD" -e SEADRAGON_SHUTDOWN_GRACE="$GRACE" "$IMAGE" >/dev/null \
    || fail "the gateway's container did not start"
}
GW=http://127.0.0.1:$GATEWAY_PORT
for port in "$GATEWAY_PORT" "$SIM_PORT"; do
  curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/" && fail "port $port is taken (set CHECK_GATEWAY_PORT / CHECK_SIM_PORT)"
done
"${PODMAN[@]}" run -d --name "$RUN-sim" "${RUN_OPTS[@]}" "$IMAGE" simulator --port "$SIM_PORT" >/dev/null \
  || fail "the simulator's container did not start"
wait_for 60 "http://127.0.0.1:$SIM_PORT/api/tags" || fail "the simulator (IMAGE simulator) did not answer"
say "IMAGE simulator answers on :$SIM_PORT"

"${PODMAN[@]}" volume create "$RUN-data" >/dev/null
# What compose.scale.yaml's one-shot `migrate` service runs (IMAGE COMMAND): migrations, first admin.
created=$("${PODMAN[@]}" run --rm "${RUN_OPTS[@]}" -v "$RUN-data:/data" -e SEADRAGON_ADMIN_PASSWORD="$PASSWORD" \
  "$IMAGE" python3 -m common.bootstrap 2>&1 | tail -1)
[ "$created" = '{"created": ["admin", null]}' ] || fail "IMAGE python3 -m common.bootstrap printed: $created"
say "IMAGE python3 -m common.bootstrap migrated the volume's database and made the admin: $created"
start_gateway
wait_for 90 "$GW/ready" || fail "/ready did not turn 200"
say "/ready is 200: $(curl -s --max-time 5 "$GW/ready"); cold build to /ready: $(elapsed "$build_started") s"
"${PODMAN[@]}" image inspect "$IMAGE" >"$WORK/image.json"
mapfile -d '' -t healthcheck < <(python3 -c '
import json, sys
test = json.load(open(sys.argv[1]))[0]["Healthcheck"]["Test"]
sys.stdout.write("\0".join(test[1:]) + "\0")' "$WORK/image.json")
"${PODMAN[@]}" exec "$RUN-gateway" "${healthcheck[@]}" || fail "the image's HEALTHCHECK command failed"
say "the image's HEALTHCHECK command (${healthcheck[0]} ... /ready) passes"

uid=$("${PODMAN[@]}" exec "$RUN-gateway" awk '/^Uid:/ {print $2}' /proc/1/status)
[ -n "$uid" ] && [ "$uid" != 0 ] || fail "the gateway runs as uid '$uid'"
say "the gateway (PID 1 in its container) runs as uid $uid, not root"

token=$(curl -sf --max-time 20 -X POST "$GW/auth/token" -H 'Content-Type: application/json' \
  -d "{\"username\": \"admin\", \"password\": \"$PASSWORD\"}" | json access_token) \
  || fail "the admin could not log in with SEADRAGON_ADMIN_PASSWORD"
say "the admin logged in with the password given by environment"
key=$(curl -sf --max-time 20 -X POST "$GW/api/admin/apikeys" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' -d '{"name": "container-check", "priority": 5}' | json key) \
  || fail "POST /api/admin/apikeys failed"
say "an API key was made through the admin API"
chat() {  # chat: one non-streamed /api/chat with the key; prints the answer
  curl -sf --max-time 30 "$GW/api/chat" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    -d '{"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": false}' \
    | python3 -c "import json, sys; m = json.load(sys.stdin); assert m['done'], m; print(m['message']['content'][:60])"
}
answer=$(chat) || fail "the key did not chat"
say "the key chats: \"$answer...\""
secret_before=$("${PODMAN[@]}" exec "$RUN-gateway" sha256sum /data/secret_key | cut -c1-16)
modes=$("${PODMAN[@]}" exec "$RUN-gateway" stat -c '%n %a %U' /data/secret_key /data/seadragon.db | tr '\n' ';')
say "state on the volume: $modes"

"${PODMAN[@]}" stop -t 30 "$RUN-gateway" >/dev/null
"${PODMAN[@]}" rm -v "$RUN-gateway" >/dev/null
start_gateway
wait_for 90 "$GW/ready" || fail "/ready did not turn 200 in the recreated container"
answer=$(chat) || fail "the key did not chat after the container was recreated on the same volume"
secret_after=$("${PODMAN[@]}" exec "$RUN-gateway" sha256sum /data/secret_key | cut -c1-16)
[ "$secret_before" = "$secret_after" ] || fail "the secret key changed with the container"
curl -sf --max-time 10 -o /dev/null "$GW/api/admin/apikeys" -H "Authorization: Bearer $token" \
  || fail "the admin's access token did not survive the container"
say "removed and recreated on the same volume: the key still chats, the admin's token and the secret key survive"

# --- SIGTERM during a 4 s stream -----------------------------------------------------------------------
curl -sN --max-time 60 "$GW/api/chat" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
  -H 'X-Sim-Tokens: 40' -H 'X-Sim-Delay: 0.1' \
  -d '{"model": "llama3.2", "messages": [{"role": "user", "content": "a long one"}], "stream": true}' \
  >"$WORK/stream.ndjson" &
stream=$!
deadline=$(($(date +%s) + 20))
until [ -s "$WORK/stream.ndjson" ]; do
  [ "$(date +%s)" -ge "$deadline" ] && fail "the stream did not start"
  sleep 0.1
done
sleep 0.5
t0=$(date +%s.%N)
"${PODMAN[@]}" kill --signal TERM "$RUN-gateway" >/dev/null
code=$(timeout $((GRACE + 10)) "${PODMAN[@]}" wait "$RUN-gateway") || fail "the gateway did not exit within SHUTDOWN_GRACE"
took=$(elapsed "$t0")
wait "$stream" || fail "the stream's client failed (curl exit $?)"
python3 - "$WORK/stream.ndjson" <<'PY' || fail "the stream did not complete"
import json, sys
lines = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
assert lines and lines[-1].get("done") is True and "error" not in lines[-1], lines[-1:]
assert len(lines) == 41, len(lines)  # 40 tokens, then the final line
PY
[ "$code" = 0 ] || fail "the gateway exited with status $code after SIGTERM"
python3 -c "import sys; sys.exit(float(sys.argv[1]) > float(sys.argv[2]))" "$took" "$GRACE" \
  || fail "the gateway took $took s to exit, more than SHUTDOWN_GRACE ($GRACE s)"
say "SIGTERM during a 4 s stream: the stream completed (40 tokens and done), exit status 0 after $took s (SHUTDOWN_GRACE $GRACE s)"

# --- a code change rebuilds the code's layers only ------------------------------------------------------
# An edited copy of the context is built again: the dependencies must come from the cache.
mkdir "$WORK/edited"
git ls-files -z --cached --others --exclude-standard | xargs -0 tar -cf - | tar -xf - -C "$WORK/edited"
echo "# edited by the container check" >>"$WORK/edited/proxy_app/monitor.py"
t1=$(date +%s.%N)
build "$IMAGE-edited" "$WORK/edited"
cached() {  # cached PATTERN: the edited build took the step matching PATTERN from the cache
  grep -A1 -E "^(\[[0-9]+/[0-9]+\] )?STEP [0-9]+/[0-9]+: $1" "$WORK/build.log" | grep -q -- '--> Using cache'
}
cached "RUN python3 -m venv" && cached "COPY --from=venv" || fail "a code change reinstalled the dependencies"
cached "COPY proxy_app" && fail "the edited code was not built into the image"
say "after a code change the image builds again in $(elapsed "$t1") s, the dependencies' layer reused"

say "OK: image $((size / 1000000)) MB, built in $build_time s; the whole check took $(elapsed "$STARTED") s"
