#!/usr/bin/env bash
# `make docker-test`: build docker/Dockerfile with podman, run the demo inside the image, then start
# docker/compose.yaml as documented (podman-compose: secret, master, worker, nightly job) and read
# the job's tables back with delta-rs, on a machine without a Docker engine or registry access:
#   - the base image is built locally: debootstrap bookworm (minbase) + `podman import`;
#   - podman runs with runc and explicit ulimits (CONTAINERS_CONF below);
#   - pip and the jar download inside the build trust the host's CA bundle (mounted read-only);
#   - `--format docker` keeps the HEALTHCHECK (the OCI format drops it).
# Needs root (debootstrap, rootful podman) and the Debian packages podman, podman-compose, runc,
# debootstrap. `docker/podman-test.sh compose` runs only the compose part on a built image.
set -euo pipefail
cd "$(dirname "$0")/.."
work=.cache/docker
image=localhost/securepipe:0.1.0
base=localhost/securepipe-base:bookworm
mkdir -p "$work"
for tool in podman podman-compose runc debootstrap; do
  command -v "$tool" >/dev/null || { echo "docker-test: $tool is missing (apt-get install podman podman-compose runc debootstrap)" >&2; exit 1; }
done
part=${1:-all}
cat > "$work/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF="$PWD/$work/containers.conf"

if [ "$part" = all ]; then
if ! podman image exists "$base"; then
  [ -x "$work/rootfs/bin/bash" ] || debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian
  tar -C "$work/rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$base"
fi

ca=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
podman build --format docker --network host \
  -v "$ca:/run/host-ca.crt:ro" \
  --build-arg BASE_IMAGE="$base" \
  --build-arg PIP_CERT=/run/host-ca.crt --build-arg SSL_CERT_FILE=/run/host-ca.crt \
  -f docker/Dockerfile -t "$image" .

# The image's HEALTHCHECK command, run as the image runs it (non-root user, no network).
user=$(podman image inspect --format '{{.Config.User}}' "$image")
[ "${user%%:*}" != 0 ] && [ "${user%%:*}" != root ] || { echo "image runs as root" >&2; exit 1; }
podman image inspect --format '{{json .Config.Healthcheck.Test}}' "$image" > "$work/health.json"
mapfile -t check < <(python3 -c 'import json, sys
test = json.load(open(sys.argv[1]))
assert test[0] == "CMD", test
print("\n".join(test[1:]))' "$work/health.json")
echo "healthcheck: ${check[*]}"
podman run --rm --no-healthcheck --network none --entrypoint "${check[0]}" "$image" "${check[@]:1}"

# The demo (the image's default command) on a lakehouse volume: two nights and a re-run.
data="$work/data"
rm -rf "$data" && mkdir -p "$data" && chown 10001:10001 "$data"
podman run --rm --no-healthcheck --network none -v "$PWD/$data:/data" "$image"
.venv/bin/python - "$data" <<'PY'
import os, sys
from pathlib import Path
from deltalake import DeltaTable
lake = Path(sys.argv[1]) / "lakehouse"
for table in ("customers", "transactions"):
    dt = DeltaTable(str(lake / "tables" / table))
    print(f"{table}: version {dt.version()}, {dt.to_pyarrow_table().num_rows} rows published")
    assert dt.version() >= 2 and dt.to_pyarrow_table().num_rows > 0
assert (lake / "access" / "analyst" / "customers" / "_delta_log").is_dir()
print("docker-test: image built, healthcheck passed, demo published in the container")
sys.stdout.flush()
os._exit(0)  # delta-rs can abort the interpreter at exit (DESIGN.md)
PY
fi

# The compose stack as the README documents it, with podman-compose: the secret service, the
# master, the worker and the nightly job (exit code = the job's), on a project of its own.
project=securepipe-test
compose() { podman-compose -p "$project" -f docker/compose.yaml "$@"; }
cleanup() { compose down -v >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup
# podman-compose 1.0 (Debian bookworm) ignores health conditions and starts profiled services
# with --abort-on-container-exit: start the four services detached, then wait for the job (the
# services wait for the secret and the job for a live worker themselves, as with any compose).
RUN_DATE=2026-11-28 compose up -d --no-build spark-secret spark-master spark-worker nightly \
  > "$work/compose.log" 2>&1
set +e
code=$(timeout 1200 podman wait "${project}_nightly_1")
set -e
for service in spark-secret spark-master spark-worker nightly; do
  echo "--- $service" >> "$work/compose.log"
  podman logs "${project}_${service}_1" >> "$work/compose.log" 2>&1 || true
done
tail -n 30 "$work/compose.log"
[ "$code" = 0 ] || { echo "docker-test: the compose stack's nightly job exited ${code:-?}" >&2; exit 1; }
# The secret in its volume: the image's user, 0400; the tables read back with delta-rs.
secret=$(podman volume inspect --format '{{.Mountpoint}}' "${project}_spark-secret")
[ "$(stat -c '%u %a' "$secret/secret")" = "10001 400" ] || { echo "docker-test: secret is $(stat -c '%u %a' "$secret/secret")" >&2; exit 1; }
lake=$(podman volume inspect --format '{{.Mountpoint}}' "${project}_lakehouse")
.venv/bin/python - "$lake" <<'PY'
import os, sys
from pathlib import Path
from deltalake import DeltaTable
lake = Path(sys.argv[1]) / "lakehouse"
for table in ("customers", "transactions"):
    dt = DeltaTable(str(lake / "tables" / table))
    rows = dt.to_pyarrow_table(columns=["run_date"]).num_rows
    print(f"compose: {table} version {dt.version()}, {rows} rows published")
    assert rows > 0
assert (lake / "access" / "analyst" / "customers" / "_delta_log").is_dir()
print("docker-test: the compose stack ran the nightly job on its cluster; tables read back")
sys.stdout.flush()
os._exit(0)
PY

